"""End to end on the real Kafka: the whole demo flow, no plaintext at rest in Kafka,
and an overdue urgent handover escalating through router, tracker and status topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.kafka import KafkaClients, Record, TopicReader
from broker import topics
from broker.dev.demo import DemoConfig, run_demo
from broker.router import Router
from broker.settings import TrackerSettings
from broker.tracker import Tracker
from schemas import HandoverState, Priority, ServiceRole, StatusEvent, TopicNames
from tests._fed import LiveFederation, settings_for, unique_prefix
from tests._kafka import kafka_kwargs
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _strings_of(referral: dict[str, object]) -> list[bytes]:
    """Distinctive plaintext of an opened referral: its reference, URLs and hashes."""
    out = [str(referral["reporter"]["reference"]).encode()]  # type: ignore[index]
    for url in referral["urls"]:  # type: ignore[attr-defined]
        out.append(url["url"].encode())
    for item in referral.get("items", []):  # type: ignore[attr-defined]
        out.extend(h["value"].encode() for h in item["hashes"])
    return out


@pytest.mark.timeout(400)
async def test_demo_flow_delivers_every_referral_and_leaves_no_plaintext_in_kafka(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """40 synthetic referrals from four hotlines (urgent, orphan, standing copies),
    plus a duplicate and a tampered envelope: every valid handover is received with
    a signed receipt, exactly the two hostile envelopes are dead-lettered, every
    opened referral lands in its recipient's inbox folder — and none of their
    references, URLs or hashes appear anywhere in Kafka's data directory."""
    config = DemoConfig(
        kafka=kafka.settings, folder=tmp_path / "demo", referrals=40, seed=7, timeout_s=120
    )
    report = await run_demo(config)
    assert report.industry_sent == 20  # the industry reporter's batch over HTTP
    assert report.industry_accepted == report.industry_sent
    assert report.valid == 40 + report.industry_sent
    assert report.received_handovers == report.expected_handovers
    assert report.expected_handovers >= 40
    assert dict(report.dead_letters) == {"duplicate_message": 1, "bad_signature": 1}
    assert report.repeats >= 1  # the seed repeats URLs across hotlines
    assert report.notices["already_referred"] == report.repeats
    assert report.notices["referred_again"] == report.repeats
    assert report.hosting_filled >= 1
    assert report.ok

    documents = [
        json.loads(f.read_text())
        for f in (config.folder / "inbox").rglob("*.json")
        if f.parent.name != "notices"
    ]
    referrals = [d for d in documents if d["message_type"] == "referral"]
    receipts = [d for d in documents if d["message_type"] == "receipt"]
    assert len(referrals) == report.expected_handovers
    assert len(receipts) == report.expected_handovers  # each handover answered once
    secrets: list[bytes] = []
    for document in referrals:
        secrets.extend(_strings_of(document["referral"]))
    assert len(secrets) >= 40 * 3

    if kafka.launcher is None:
        pytest.skip("Kafka's data directory is not local (CRB_KAFKA_BOOTSTRAP): cannot scan it")
    # Offset and time indexes are preallocated (10 MiB of zeros each) and hold offsets,
    # never record bytes: every other file — segments, snapshots, checkpoints — is read.
    blob = b"".join(
        p.read_bytes()
        for p in kafka.launcher.iter_data_files()
        if p.suffix not in (".index", ".timeindex")
    )
    # Positive control: the scan reads real segments (clear message ids are in headers).
    assert report.prefix.encode() in blob
    leaked = [s for s in secrets if s in blob]
    assert leaked == []


@pytest.mark.timeout(200)
async def test_overdue_urgent_handover_escalates_to_the_fallback(kafka: KafkaEndpoint) -> None:
    """An urgent referral to NL whose recipients never answer: the tracker raises it
    overdue after the urgent SLA, escalates it to the routing rules' escalation
    recipient, then marks it failed — each as an event on the status topic."""
    fed = LiveFederation()
    prefix = unique_prefix()
    settings = settings_for(kafka.bootstrap, prefix)
    settings = settings.model_copy(
        update={
            "tracker": TrackerSettings(
                group_id=f"{prefix}-tracker",
                receipt_sla_urgent=timedelta(seconds=2),
                escalate_after=1.0,
                fail_after=1.0,
            )
        }
    )
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    names = TopicNames(prefix)
    stop = asyncio.Event()
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    tracker = Tracker(
        settings,
        fed.directory(),
        directory=fed.directory(),
        signer=fed.signer(ServiceRole.TRACKER),
    )
    tasks = [asyncio.create_task(router.run(stop)), asyncio.create_task(tracker.run(stop))]
    try:
        urgent = fed.referral(priority=Priority.URGENT)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), acks="all")
        await producer.start()
        await producer.send_and_wait(names.outbox("de.hotline"), urgent, key=b"k")
        await producer.stop()
        events: list[StatusEvent] = []
        states: dict[str, set[str]] = {}

        def take(r: Record) -> None:
            e = StatusEvent.model_validate_json(r.value or b"")
            events.append(e)
            states.setdefault(e.recipient or "-", set()).add(e.state.value)

        async with TopicReader(KafkaClients(settings.kafka), names.status) as status:

            async def every_handover_failed() -> bool:
                await status.read_to_end(take)  # what was added since the last check
                return bool(states) and all("failed" in s for s in states.values())

            await wait_until(
                every_handover_failed,
                what="a failed event on the status topic for every handover",
                timeout_s=120,
                interval_s=0.2,
            )
        escalations = [e for e in events if e.state is HandoverState.ESCALATED]
    finally:
        stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 30)
    assert set(states) == {"nl.hotline", "nl.police24"}
    for seen in states.values():
        assert {"routed", "overdue", "escalated", "failed"} <= seen
    assert {e.escalated_to for e in escalations} == {"int.coordinator"}
