"""Adapters against a real Kafka with the router running in-process: drop folder ->
router -> receiving adapter -> receipt; a receiver killed before it committed;
quarantine; a case decision flowing back to the sender."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from uuid import UUID

import pytest

from adapters import (
    Delivery,
    DropFolder,
    FileState,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    ReceiverStats,
    Sender,
    StateStore,
    parse_submission,
)
from adapters.kafka import KafkaClients
from broker import topics
from broker.settings import Settings
from keys import open as open_envelope
from keys import parse
from schemas import Accepted, CaseAck, Moved, Receipt, TopicNames
from tests._fed import LiveFederation, make_referral, now, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import drain
from tests.integration.test_router import _produce, running_router

pytestmark = pytest.mark.kafka


def _outbox(settings: Settings, participant: str) -> Outbox:
    names = TopicNames(settings.topics.prefix)
    return Outbox.of(KafkaClients(settings.kafka), names, participant, settings.adapter)


async def _setup(kafka: KafkaEndpoint) -> tuple[Settings, LiveFederation, TopicNames]:
    fed = LiveFederation()
    settings = settings_for(kafka.bootstrap, unique_prefix())
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    return settings, fed, TopicNames(settings.topics.prefix)


def _identity(fed: LiveFederation, pid: str) -> Identity:
    return Identity(pid, fed.signing[pid], (fed.opening[pid],), fed.directory())


class CountingSink:
    """A FolderSink that counts hand-overs (to tell 'delivered once' from 'one file')."""

    def __init__(self, folder: Path) -> None:
        self.inner = FolderSink(folder)
        self.calls: list[UUID] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.calls.append(delivery.message_id)
        await self.inner.deliver(delivery)


class Crash(Exception):
    """Stands for the adapter process being killed at a given point."""


async def _receive(
    settings: Settings,
    fed: LiveFederation,
    pid: str,
    sink: CountingSink,
    state: Path,
    *,
    crash_at: str = "",
) -> ReceiverStats:
    """Run one receiver instance until its inbox is drained (or it 'crashes')."""

    def hook(stage: str, _mid: UUID) -> None:
        if stage == crash_at:
            raise Crash(stage)

    with StateStore(state) as store:
        async with Outbox.of(
            KafkaClients(settings.kafka), TopicNames(settings.topics.prefix), pid, settings.adapter
        ) as outbox:
            receiver = Receiver(
                KafkaClients(settings.kafka),
                TopicNames(settings.topics.prefix),
                settings.adapter,
                Sender(_identity(fed, pid), outbox),
                sink,
                store,
                hook=hook,
            )
            return await asyncio.wait_for(receiver.run(asyncio.Event(), drain=True), 90)


def _open_all(fed: LiveFederation, pid: str, records: list) -> list:  # type: ignore[type-arg]
    return [
        open_envelope(
            r.value,
            recipient=pid,
            opening_keys=[fed.opening[pid]],
            directory=fed.directory(),
            now=now(),
        )
        for r in records
    ]


async def test_drop_folder_to_inbox_folder_with_a_matching_receipt(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """A referral file dropped at de.hotline reaches nl.hotline's inbox folder as one
    file; de.hotline's inbox then holds one signed receipt whose envelope_sha256 is the
    SHA-256 of the exact bytes nl.hotline consumed."""
    settings, fed, names = await _setup(kafka)
    (tmp_path / "drop" / "incoming").mkdir(parents=True)
    (tmp_path / "drop" / "incoming" / "case.json").write_bytes(
        make_referral().model_dump_json().encode()
    )
    async with running_router(settings, fed):
        async with _outbox(settings, "de.hotline") as outbox:
            drop = DropFolder(tmp_path / "drop", Sender(_identity(fed, "de.hotline"), outbox))
            (result,) = await drop.run_once()
        assert FileState.SENT == result.state
        (forwarded,) = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1)
        sink = CountingSink(tmp_path / "nl-inbox")
        stats = await _receive(settings, fed, "nl.hotline", sink, tmp_path / "nl-state")
        receipts = await drain(kafka.bootstrap, names.inbox("de.hotline"), expect=1)
    assert (1, 0, 0) == (stats.delivered, stats.duplicates, stats.quarantined)
    (message_id,) = result.message_ids
    assert [f"{message_id}.json"] == [p.name for p in (tmp_path / "nl-inbox").iterdir()]
    doc = json.loads((tmp_path / "nl-inbox" / f"{message_id}.json").read_bytes())
    assert "de.hotline" == doc["sender"]
    (opened,) = _open_all(fed, "de.hotline", receipts)
    assert isinstance(opened.message, Receipt)
    assert hashlib.sha256(forwarded.value).hexdigest() == opened.message.envelope_sha256
    assert message_id == opened.message.original_message_id == opened.header.in_reply_to


@pytest.mark.parametrize(
    ("crash_at", "sink_calls"),
    [
        ("recorded", 1),  # delivered and recorded, killed before the receipt
        ("receipt_sent", 1),  # receipt acknowledged by Kafka, killed before the commit
        ("delivered", 2),  # killed between the sink's handover and the record: the
        # sink sees it again (at-least-once), the folder still holds one file
    ],
)
async def test_receiver_killed_before_commit_delivers_once_with_one_receipt(
    kafka: KafkaEndpoint, tmp_path: Path, crash_at: str, sink_calls: int
) -> None:
    """A receiver killed after delivering but before committing: a new instance (same
    state folder, same group) gets the record again from Kafka, and the result is one
    inbox file and exactly one receipt in the sender's inbox; the offset is then
    committed (a third run finds nothing)."""
    settings, fed, names = await _setup(kafka)
    envelope = fed.referral()
    sink = CountingSink(tmp_path / "inbox")
    state = tmp_path / "state"
    async with running_router(settings, fed):
        await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), envelope)])
        await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1)
        with pytest.raises(Crash):
            await _receive(settings, fed, "nl.hotline", sink, state, crash_at=crash_at)
        again = await _receive(settings, fed, "nl.hotline", sink, state)
        assert 1 == again.delivered + again.duplicates
        after = await _receive(settings, fed, "nl.hotline", sink, state)
        receipts = await drain(kafka.bootstrap, names.inbox("de.hotline"), idle_s=3.0)
    assert (0, 0) == (after.delivered, after.duplicates)
    assert sink_calls == len(sink.calls)
    assert 1 == len(list((tmp_path / "inbox").iterdir()))
    assert 1 == len(receipts)
    (opened,) = _open_all(fed, "de.hotline", receipts)
    assert parse(envelope).header.message_id == opened.header.in_reply_to


async def test_unopenable_inbox_records_are_quarantined_and_committed(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """Records in nl.hotline's inbox that are not for it, tampered, or garbage are
    quarantined with their reason and their offsets committed (not retried); the valid
    one behind them is delivered."""
    settings, fed, names = await _setup(kafka)
    tampered = bytearray(fed.referral())
    tampered[-100] ^= 1
    valid = fed.referral()
    inbox = names.inbox("nl.hotline")
    # Written straight to the inbox, as a faulty or hostile writer would.
    await _produce(
        kafka.bootstrap,
        [
            (inbox, fed.referral(jurisdiction="FR")),  # sealed for the coordinator
            (inbox, bytes(tampered)),
            (inbox, b"garbage"),
            (inbox, valid),
        ],
    )
    sink = CountingSink(tmp_path / "inbox")
    async with _outbox(settings, "nl.hotline"):
        stats = await _receive(settings, fed, "nl.hotline", sink, tmp_path / "state")
        rerun = await _receive(settings, fed, "nl.hotline", sink, tmp_path / "state")
    assert (1, 3) == (stats.delivered, stats.quarantined)
    assert {"not_a_recipient": 1, "bad_signature": 1, "malformed": 1} == stats.reasons
    assert (0, 0, 0) == (rerun.delivered, rerun.duplicates, rerun.quarantined)
    with StateStore(tmp_path / "state") as store:
        assert 3 == len(store.quarantined())
    assert [parse(valid).header.message_id] == sink.calls


async def test_case_decisions_flow_back_to_the_sender(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """nl.hotline accepts a referral under its own reference, then moves another to DE:
    de.hotline's adapter receives both receipts, the Accepted decision with the reference,
    the Moved decision, and the moved referral itself (same case, new id)."""
    settings, fed, names = await _setup(kafka)
    async with running_router(settings, fed):
        async with _outbox(settings, "de.hotline") as outbox:
            de = Sender(_identity(fed, "de.hotline"), outbox)
            first = await de.send_referral(
                parse_submission(make_referral().model_dump_json().encode())
            )
            second = await de.send_referral(
                parse_submission(make_referral().model_dump_json().encode())
            )
        await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=2)
        nl_sink = CountingSink(tmp_path / "nl-inbox")
        await _receive(settings, fed, "nl.hotline", nl_sink, tmp_path / "nl-state")
        with StateStore(tmp_path / "nl-state") as store:
            original_1, original_2 = store.received(first), store.received(second)
        async with _outbox(settings, "nl.hotline") as outbox:
            nl = Sender(_identity(fed, "nl.hotline"), outbox)
            accept_id = await nl.send(
                nl.seal_case_ack(original_1, Accepted(receiver_reference="NL-2026-0042"))
            )
            doc = json.loads((tmp_path / "nl-inbox" / f"{second}.json").read_bytes())
            from schemas import Referral

            forwarded, moved_ack = nl.seal_move(
                original_2, Referral.model_validate(doc["referral"]), to_jurisdiction="DE"
            )
            await nl.send(forwarded)
            await nl.send(moved_ack)
        # 2 receipts + accepted + moved ack + the moved referral
        await drain(kafka.bootstrap, names.inbox("de.hotline"), expect=5)
        de_sink = CountingSink(tmp_path / "de-inbox")
        stats = await _receive(settings, fed, "de.hotline", de_sink, tmp_path / "de-state")
    assert 5 == stats.delivered
    docs = [json.loads(p.read_bytes()) for p in (tmp_path / "de-inbox").iterdir()]
    by_type: dict[str, list[dict[str, object]]] = {}
    for d in docs:
        by_type.setdefault(str(d["message_type"]), []).append(d)
    assert {"receipt": 2, "case_ack": 2, "referral": 1} == {k: len(v) for k, v in by_type.items()}
    acks = {d["message_id"]: CaseAck.model_validate(d["case_ack"]) for d in by_type["case_ack"]}
    accepted = acks[str(accept_id)]
    assert isinstance(accepted.decision, Accepted)
    assert ("NL-2026-0042", first) == (
        accepted.decision.receiver_reference,
        accepted.original_message_id,
    )
    moved = acks[str(moved_ack.message_id)].decision
    assert isinstance(moved, Moved)
    (moved_referral,) = by_type["referral"]
    assert str(moved.forwarded_message_id) == moved_referral["message_id"]
    assert str(original_2.case_id) == moved_referral["case_id"]
    assert "nl.hotline" == moved_referral["sender"]
