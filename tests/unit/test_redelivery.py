"""Authorised redelivery without Kafka: the router forwards a message id again only
for the sender's own new sealing of it, never the same bytes twice, not too soon,
not too often — and remembers that across a rebuild from the audit topic."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from adapters import FolderSink, Receiver, StateStore, Submission
from adapters.kafka import Record
from broker.audit import Verdict, chain_next
from broker.router import SeenMessage, decide
from broker.router._core import MAX_FORWARDS
from broker.router._memory import RouterMemory
from broker.router._store import RouterSnapshot
from keys import Draft, Limits, parse, seal
from keys.testing import Federation
from schemas import HandoverState, Reason, StatusEvent, TopicNames, uuid7
from tests._fed import LiveFederation, make_referral, now
from tests.unit._adapter_kit import FakeKafka, sender, settings
from tests.unit._federation import NOW, draft, federation, referral

NAMES = TopicNames("crb")
GAP = timedelta(minutes=1)


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


def _sealed(fed: Federation, d: Draft, *, at: timedelta = timedelta(0)) -> bytes:
    return seal(
        d, referral(), signing_key=fed.members[d.sender].signing, directory=fed.directory(),
        now=NOW + at,
    )  # fmt: skip


def _decide(
    fed: Federation, value: bytes, seen: dict[UUID, SeenMessage], at: timedelta, offset: int = 1
) -> tuple[Verdict, str | None, list[StatusEvent], SeenMessage | None]:
    d = decide(
        Record(NAMES.outbox("de.hotline"), 0, offset, b"case", value),
        now=NOW + at, directory=fed.directory(), names=NAMES, seen=seen, limits=Limits(),
        redelivery_min=GAP,
    )  # fmt: skip
    events = [StatusEvent.model_validate_json(s.value or b"") for s in d.status]
    remember = d.remember[1] if d.remember else None
    return d.verdict, d.audit.reason, events, remember


def test_the_senders_new_sealing_of_the_same_id_is_redelivered(fed: Federation) -> None:
    d = draft(message_id=uuid7(NOW))
    first = _sealed(fed, d)
    mid = d.message_id
    assert mid is not None
    verdict, _, events, seen = _decide(fed, first, {}, timedelta(0))
    assert verdict is Verdict.FORWARDED
    assert seen is not None
    assert {e.state for e in events} == {HandoverState.ROUTED}
    again = _sealed(fed, d, at=2 * GAP)  # the same id, sealed again: other bytes
    verdict, _, events, later = _decide(fed, again, {mid: seen}, 2 * GAP)
    assert verdict is Verdict.FORWARDED
    assert {e.state for e in events} == {HandoverState.REDELIVERED}
    assert {e.recipient for e in events} == set(seen.recipients)
    assert later is not None
    assert len(later.digests) == 2


def test_the_same_bytes_too_soon_or_too_often_are_duplicates(fed: Federation) -> None:
    d = draft(message_id=uuid7(NOW))
    first = _sealed(fed, d)
    mid = d.message_id
    assert mid is not None
    _, _, _, seen = _decide(fed, first, {}, timedelta(0))
    assert seen is not None
    # The same bytes again (a crash-resend, a replay), even much later:
    assert _decide(fed, first, {mid: seen}, 10 * GAP)[1] == Reason.DUPLICATE_MESSAGE.value
    # Sealed again, but sooner than the least gap:
    soon = _sealed(fed, d, at=GAP / 2)
    assert _decide(fed, soon, {mid: seen}, GAP / 2)[1] == Reason.DUPLICATE_MESSAGE.value
    # At most MAX_FORWARDS forwards in all:
    current = seen
    for i in range(1, MAX_FORWARDS):
        verdict, _, _, nxt = _decide(fed, _sealed(fed, d, at=i * GAP), {mid: current}, i * GAP)
        assert verdict is Verdict.FORWARDED
        assert nxt is not None
        current = nxt
    last = _sealed(fed, d, at=MAX_FORWARDS * GAP)
    at = MAX_FORWARDS * GAP
    assert _decide(fed, last, {mid: current}, at)[1] == Reason.DUPLICATE_MESSAGE.value


def test_memory_rebuilt_from_the_audit_knows_every_forwarded_digest(
    fed: Federation, tmp_path: Path
) -> None:
    d = draft(message_id=uuid7(NOW))
    mid = d.message_id
    assert mid is not None
    head = None
    records = []
    seen: dict[UUID, SeenMessage] = {}
    for i, at in enumerate((timedelta(0), 2 * GAP)):
        value = _sealed(fed, d, at=at)
        decision = decide(
            Record(NAMES.outbox("de.hotline"), 0, i, b"case", value), now=NOW + at,
            directory=fed.directory(), names=NAMES, seen=seen, limits=Limits(),
            redelivery_min=GAP,
        )  # fmt: skip
        assert decision.remember is not None
        seen[mid] = decision.remember[1]
        head = chain_next(head, decision.audit)
        records.append(head)
    snapshot = RouterSnapshot.open(tmp_path / "memory.sqlite", "crb.audit")
    assert snapshot is not None
    memory = RouterMemory(timedelta(days=1), snapshot.seen)
    memory.apply_all(records[:1])
    memory.apply_all(records[1:])  # one at a time: the second merges into the first
    rebuilt = memory.seen[mid]
    assert rebuilt.digests == seen[mid].digests
    assert len(rebuilt.digests) == 2
    snapshot.close()
    reopened = RouterSnapshot.open(tmp_path / "memory.sqlite", "crb.audit")
    assert reopened is not None
    assert reopened.seen[mid].digests == seen[mid].digests
    reopened.close()


# --- the sender's side: what goes unanswered is sent again ------------------------------


class Clock:
    def __init__(self) -> None:
        self.at = now()

    def __call__(self) -> datetime:
        return self.at


async def test_an_unanswered_referral_is_sent_again_under_its_id(tmp_path: Path) -> None:
    fed, kafka, clock = LiveFederation(), FakeKafka(), Clock()
    cfg = settings(redeliver_after_routine=timedelta(hours=1), redeliver_max=2)
    with StateStore(tmp_path) as store:
        de = sender(fed, "de.hotline", kafka, clock=clock, cfg=cfg)
        de.pending = store
        receiver = Receiver(kafka, NAMES, cfg, de, FolderSink(tmp_path / "in"), store, clock=clock)
        sealed = de.seal_referral(Submission(make_referral(), "NL"))
        await de.send(sealed)
        assert await receiver.redeliver_due() == 0  # not yet
        clock.at += timedelta(hours=1)
        assert await receiver.redeliver_due() == 1
        again = kafka.sent[-1].value
        assert parse(again).header.message_id == sealed.message_id
        assert again != sealed.envelope  # sealed again: other bytes, the router's test
        clock.at += timedelta(hours=1)
        assert await receiver.redeliver_due() == 0  # the second attempt waits twice as long
        clock.at += timedelta(hours=1)
        assert await receiver.redeliver_due() == 1
        clock.at += timedelta(days=30)
        assert await receiver.redeliver_due() == 0  # redeliver_max reached
        kept = store.pending(sealed.message_id)
        assert kept is not None
        assert kept.attempts == 2
        for r in kept.recipients:
            store.mark_answered(sealed.message_id, r)
        assert store.pending(sealed.message_id) is None
        assert receiver.stats.redeliveries == 2
