"""The router's memory and batch policy, pure: no Kafka, time passed in.

Every memory behaviour holds for both places forwarded messages are kept: in RAM
and in the router's local SQLite snapshot (``new_memory`` is parametrised).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

from adapters.kafka import Record
from broker.audit import AuditEntry, AuditRecord, Verdict, chain_id, chain_next
from broker.router import (
    BatchView,
    RouterMemory,
    SeenMessage,
    decide_batch,
)
from broker.router._store import RouterSnapshot
from keys import Limits, parse
from schemas import MessageType, Reason, TopicNames, uuid7
from tests.unit._federation import NOW, federation, referral

FED = federation()
DIRECTORY = FED.directory()
NAMES = TopicNames("crb")
TOPIC = NAMES.outbox("de.hotline")


NewMemory = Callable[[timedelta], RouterMemory]


@pytest.fixture(params=["ram", "sqlite"])
def new_memory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewMemory]:
    """Makes a RouterMemory keeping forwarded messages in RAM or in a snapshot file."""
    opened: list[RouterSnapshot] = []

    def make(keep: timedelta) -> RouterMemory:
        if request.param == "ram":
            return RouterMemory(keep)
        snapshot = RouterSnapshot.open(tmp_path / f"memory{len(opened)}.sqlite", "crb.audit")
        assert snapshot is not None
        opened.append(snapshot)
        return RouterMemory(keep, snapshot.seen)

    yield make
    for snapshot in opened:
        snapshot.close()


def _envelope() -> bytes:
    return FED.seal_referral("de.hotline", referral(), jurisdiction="NL", now=NOW)


def _records(*values: bytes, first: int = 0) -> list[Record]:
    return [Record(TOPIC, 0, first + i, None, v) for i, v in enumerate(values)]


def _batch(records: list[Record], memory: RouterMemory) -> list[tuple[int, Reason | None]]:
    batch = decide_batch(
        records,
        head=memory.heads.get(chain_id(TOPIC, 0)),
        seen=memory.seen,
        now=NOW,
        directory=DIRECTORY,
        names=NAMES,
        limits=Limits(),
    )
    for _, _, audit in batch.decided:
        memory.apply(audit)
    return [(rec.offset, decision.reason) for rec, decision, _ in batch.decided]


def test_records_at_or_below_the_chain_head_are_skipped(new_memory: NewMemory) -> None:
    """A redelivery after a crash re-reads committed records: those the chain head
    covers are not decided again; the rest continue the chain."""
    memory = new_memory(timedelta(days=90))
    a, b, c = _envelope(), _envelope(), _envelope()
    assert [(0, None), (1, None)] == _batch(_records(a, b), memory)
    assert [(2, None)] == _batch(_records(a, b, c), memory)
    head = memory.heads[chain_id(TOPIC, 0)]
    assert (2, 2) == (head.seq, head.source_offset)


def test_a_message_forwarded_earlier_in_the_batch_counts_as_seen(new_memory: NewMemory) -> None:
    """The same envelope twice in one batch: forwarded once, then a duplicate —
    without copying the memory."""
    memory = new_memory(timedelta(days=90))
    env = _envelope()
    assert [(0, None), (1, Reason.DUPLICATE_MESSAGE)] == _batch(_records(env, env), memory)
    assert 1 == len(memory)


def test_needs_catch_up_only_for_refusals_another_router_could_explain(
    new_memory: NewMemory,
) -> None:
    """unknown_original and duplicate_message might be news another router instance
    wrote a moment ago: the shell reads the audit topic and decides again."""
    memory = new_memory(timedelta(days=90))
    env = _envelope()
    _batch(_records(env), memory)
    fresh = decide_batch(
        _records(_envelope(), first=1), head=memory.heads[chain_id(TOPIC, 0)],
        seen=memory.seen, now=NOW, directory=DIRECTORY, names=NAMES, limits=Limits(),
    )  # fmt: skip
    assert not fresh.needs_catch_up
    again = decide_batch(
        _records(env, first=1), head=memory.heads[chain_id(TOPIC, 0)],
        seen=memory.seen, now=NOW, directory=DIRECTORY, names=NAMES, limits=Limits(),
    )  # fmt: skip
    assert again.needs_catch_up


def _audit(message_id: UUID, seq: int, at_minutes: int) -> AuditRecord:
    entry = AuditEntry(
        verdict=Verdict.FORWARDED,
        source_topic=TOPIC,
        source_partition=0,
        source_offset=seq,
        envelope_sha256="0" * 64,
        message_id=str(message_id),
        message_type="referral",
        sender="de.hotline",
        recipients=("nl.hotline",),
        decided_at=NOW + timedelta(minutes=at_minutes),
    )
    record = chain_next(None, entry)
    return record.model_copy(update={"seq": seq})


def test_forgetting_drops_exactly_what_left_the_window(new_memory: NewMemory) -> None:
    """prune() forgets messages forwarded longer than ``keep`` ago — by when they were
    forwarded — and keeps the rest; each forgotten message is one heap pop."""
    memory = new_memory(timedelta(minutes=30))
    ids = [uuid7(NOW + timedelta(minutes=m)) for m in range(4)]
    for i, mid in enumerate(ids):
        memory.apply(_audit(mid, i, at_minutes=i * 20))  # at 0, 20, 40, 60 minutes
    assert 0 == memory.prune(NOW + timedelta(minutes=29))
    assert 2 == memory.prune(NOW + timedelta(minutes=51))
    assert set(ids[2:]) == set(memory.seen)
    assert 2 == memory.prune(NOW + timedelta(days=1))
    assert 0 == len(memory)


def test_seen_is_dated_by_forwarding_both_when_decided_and_when_rebuilt(
    new_memory: NewMemory,
) -> None:
    """The same fact computed once: a message remembered by the decision and the same
    message rebuilt from its audit record carry the same forwarded_at."""
    live = new_memory(timedelta(days=90))
    batch = decide_batch(
        _records(_envelope()), head=None, seen=live.seen, now=NOW + timedelta(minutes=3),
        directory=DIRECTORY, names=NAMES, limits=Limits(),
    )  # fmt: skip
    (_, decision, audit) = batch.decided[0]
    assert decision.remember is not None
    remembered = decision.remember[1]
    rebuilt = new_memory(timedelta(days=90))
    rebuilt.apply(audit)
    assert remembered == rebuilt.seen[decision.remember[0]]
    assert NOW + timedelta(minutes=3) == remembered.forwarded_at


def test_batch_view_overlays_without_copying() -> None:
    """The view sees committed messages and the batch's own; adding to it never
    touches the committed memory."""
    committed = {uuid7(NOW): SeenMessage("de.hotline", ("nl.hotline",), MessageType.REFERRAL, NOW)}
    view = BatchView(committed)
    new_id = uuid7(NOW)
    view.add(new_id, SeenMessage("nl.hotline", ("de.hotline",), MessageType.RECEIPT, NOW))
    assert new_id in view
    assert next(iter(committed)) in view
    assert 2 == len(view) == len(list(view))
    assert new_id not in committed
    assert parse(_envelope()).header.message_id not in view
