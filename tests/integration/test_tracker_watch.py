"""The tracker's watch on the real, secured Kafka, logged in as the tracker: the
health strip sees the brokers, the directory, an inbox nobody collects; alerts for
an urgent handover past its SLA, keys about to expire and the silent participant
reach a webhook (a test receiver on loopback) once each, and resolve once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from adapters import DirectoryFollower
from adapters.kafka import TRACKER, OutRecord, sign
from broker.settings import TrackerSettings
from broker.tracker import Tracker, serve
from keys import STATUS_CONTEXT, LiveDirectory
from keys.testing import Federation
from schemas import (
    HandoverState,
    Priority,
    ServiceRole,
    StatusEvent,
    utcnow,
    uuid7,
)
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import free_port, running, wait_until
from tests.integration._secured import HOTLINE_MEMBERS, HOTLINE_RULES, Cluster

pytestmark = [pytest.mark.kafka]

MEMBERS, RULES = HOTLINE_MEMBERS, HOTLINE_RULES


@pytest.mark.timeout(180)
async def test_the_watch_sees_the_system_and_alerts_a_webhook_once(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    now = utcnow()
    # Keys that end in 20 days: every one of them is "expiring within 30 days".
    fed = Federation(MEMBERS, not_before=now - timedelta(days=5),
                     not_after=now + timedelta(days=20), rules=RULES)  # fmt: skip
    c = Cluster(kafka, tmp_path, fed)
    received: list[dict[str, Any]] = []
    hook = FastAPI()

    @hook.post("/alerts")
    async def alerts(request: Request) -> dict[str, str]:
        received.extend((await request.json())["notices"])
        return {"ok": "yes"}

    port = free_port()
    prefix = c.settings.topics.prefix
    section = TrackerSettings(
        group_id=f"{prefix}-tracker", poll_timeout_ms=100, alert_interval_s=0.3,
        alert_webhook=f"http://127.0.0.1:{port}/alerts", silent_after=timedelta(seconds=1),
        receipt_sla_urgent=timedelta(seconds=1), escalate_after=1000.0,
    )  # fmt: skip
    c.settings = c.settings.model_copy(update={"tracker": section})
    directory = fed.directory()
    await c.provision(directory)
    clients = c.clients(TRACKER)
    live = LiveDirectory(directory, root=fed.root.verify_key)
    follower = DirectoryFollower(clients, c.names.directory, live)
    tracker = Tracker(
        c.settings_as(TRACKER), directory, clients=clients, directory=live,
        signer=fed.signer(ServiceRole.TRACKER), follower=follower,
    )  # fmt: skip

    def run_tracker(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return follower.alongside(tracker.run(stop))

    urgent = StatusEvent(
        message_id=uuid7(now, rng=os.urandom), case_id=uuid7(now, rng=os.urandom),
        sender="de.hotline", recipient="nl.hotline", state=HandoverState.ROUTED, at=now,
        priority=Priority.URGENT, jurisdiction="NL",
    )  # fmt: skip
    routed = sign(
        OutRecord(c.names.status, urgent.key().encode(), urgent.model_dump_json().encode()),
        fed.signer(ServiceRole.ROUTER),
        STATUS_CONTEXT,
    )
    stop_hook = asyncio.Event()
    receiver = asyncio.create_task(serve(hook, "127.0.0.1", port, stop_hook))
    producer = c.admin.producer()
    await producer.start()
    try:
        # Something in nl.hotline's inbox that no adapter collects, written in a
        # transaction as the router writes inboxes.
        writer = c.admin.transactional_producer(f"{prefix}-test-inbox")
        await writer.start()
        try:
            await writer.commit([OutRecord(c.names.inbox("nl.hotline"), b"k", b"sealed")])
        finally:
            await writer.stop()
        await producer.send_and_wait(routed)
        async with running(run_tracker, tracker.ready, "tracker"):

            def fired(kind: str, subject: str | None = None) -> bool:
                return any(
                    n["kind"] == kind and n["status"] == "firing"
                    and (subject is None or n["subject"] == subject)
                    for n in received
                )  # fmt: skip

            await wait_until(lambda: fired("urgent_overdue"), what="urgent overdue alerted")
            await wait_until(
                lambda: fired("participant_silent", "nl.hotline"), what="silent nl.hotline"
            )
            await wait_until(lambda: fired("key_expiring"), what="expiring keys alerted")
            strip = tracker.watch.strip
            assert strip is not None
            assert strip.brokers is not None
            assert strip.brokers >= 1
            assert directory.version == strip.directory_version
            assert 0 == strip.router_lag
            assert ("nl.hotline", 1) in [(p, n) for p, n, _ in strip.inbox_backlog]
            assert {"de.hotline", "nl.hotline", "int.coordinator", "router", "tracker"} <= {
                owner for owner, _, _ in strip.keys_expiring
            }
            assert [] == list(strip.errors)
            assert strip.router_stalled_s is None, "no lag, no standstill"
            before = len(received)
            await wait_until(lambda: tracker.watch.alerting.standing is not None, what="x")
            # Standing alerts are not repeated: a few more looks send nothing new.
            looks = tracker.health.lag_records
            await wait_until(lambda: tracker.watch.strip is not strip, what="another look around")
            assert before == len(received), (looks, received[before:])
            # The receipt arrives: the urgent alert resolves, once.
            receipt = urgent.model_copy(
                update={"state": HandoverState.RECEIVED, "at": utcnow(), "priority": None}
            )
            await producer.send_and_wait(
                sign(
                    OutRecord(
                        c.names.status, receipt.key().encode(), receipt.model_dump_json().encode()
                    ),
                    fed.signer(ServiceRole.ROUTER),
                    STATUS_CONTEXT,
                )
            )
            await wait_until(
                lambda: any(n["kind"] == "urgent_overdue" and n["status"] == "resolved"
                            for n in received),
                what="urgent overdue resolved",
            )  # fmt: skip
    finally:
        await producer.stop()
        stop_hook.set()
        await receiver
    kinds = [(n["kind"], n["subject"], n["status"]) for n in received]
    assert len(kinds) == len(set(kinds)), "each alert fired (and resolved) once"
