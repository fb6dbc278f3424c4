"""Escalation that delivers, without Kafka: routing, the router's admission, the
tracker's notice, the sender's kept copy and its re-seal. Against Kafka:
tests/integration/test_escalation_flow.py."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from adapters import Outcome, PendingReferral, Receiver, StateStore, Submission
from adapters.kafka import OutRecord, Record, sign
from broker.audit import Verdict
from broker.router import SeenMessage, decide
from broker.tracker._escalation import escalation_notice_id, escalation_notices
from keys import (
    ESCALATION_CONTEXT,
    NOTICE_CONTEXT,
    Draft,
    Limits,
    OpeningKey,
    PendingCopyError,
    open_for_self,
    parse,
    seal,
    seal_for_self,
)
from keys.testing import Federation
from schemas import (
    EnvelopeHeader,
    EscalationNotice,
    HandoverState,
    MessageType,
    Reason,
    RoutingError,
    RoutingRequest,
    ServiceRole,
    StatusEvent,
    resolve,
    uuid7,
)
from tests._fed import LiveFederation, make_referral, now
from tests.unit._adapter_kit import NAMES, FakeKafka, sender, settings
from tests.unit._federation import NOW, draft, federation, referral
from tests.unit._schema_fixtures import header_data

# --- the contract -------------------------------------------------------------------


def _request(**over: object) -> RoutingRequest:
    base: dict[str, object] = {
        "sender": "de.hotline",
        "jurisdiction": "NL",
        "category": "csam",
        "priority": "urgent",
        "escalation_of": uuid7(NOW),
    }
    return RoutingRequest.model_validate({**base, **over})


def test_an_escalation_goes_to_the_escalation_recipient_alone() -> None:
    fed = federation()
    assert resolve(_request(), fed.directory()).recipients == ("int.coordinator",)
    assert resolve(_request(escalation_of=None), fed.directory()).recipients != ("int.coordinator",)


def test_no_escalation_recipient_to_take_it_is_no_recipient() -> None:
    fed = federation()
    with pytest.raises(RoutingError) as refused:
        resolve(_request(sender="int.coordinator"), fed.directory())  # itself
    assert refused.value.reason is Reason.NO_RECIPIENT


def test_only_a_referral_escalates_and_never_itself() -> None:
    mid = str(uuid7(NOW))
    with pytest.raises(ValidationError, match="only a referral escalates"):
        EnvelopeHeader.model_validate(
            header_data(
                message_type="receipt",
                recipients=["nl.hotline"],
                in_reply_to=str(uuid7(NOW)),
                escalation_of=mid,
            )
        )
    with pytest.raises(ValidationError, match="cannot escalate itself"):
        EnvelopeHeader.model_validate(header_data(message_id=mid, escalation_of=mid))


# --- the router's admission --------------------------------------------------------


def _escalation(fed: Federation, original: UUID, sender: str = "de.hotline") -> bytes:
    d = dataclasses.replace(
        draft(sender), message_id=uuid7(NOW), escalation_of=original, recipients=()
    )
    return seal(
        d, referral(), signing_key=fed.members[sender].signing, directory=fed.directory(), now=NOW
    )


def _seen(sender: str) -> SeenMessage:
    return SeenMessage(sender, ("nl.hotline",), MessageType.REFERRAL, NOW - timedelta(minutes=9))


@pytest.mark.parametrize(
    ("seen_sender", "reason"),
    [(None, Reason.UNKNOWN_ORIGINAL), ("nl.police", Reason.UNAUTHORISED)],
)
def test_the_router_admits_only_an_escalation_of_the_senders_own_forwarded_referral(
    seen_sender: str | None, reason: Reason
) -> None:
    fed = federation()
    original = uuid7(NOW - timedelta(minutes=10))
    seen = {} if seen_sender is None else {original: _seen(seen_sender)}
    record = Record(NAMES.outbox("de.hotline"), 0, 1, b"case", _escalation(fed, original))
    d = decide(record, now=NOW, directory=fed.directory(), names=NAMES, seen=seen, limits=Limits())
    assert d.verdict is Verdict.REJECTED
    assert d.audit.reason == reason.value


def test_an_admitted_escalation_is_forwarded_and_says_what_it_escalates() -> None:
    fed = federation()
    original = uuid7(NOW - timedelta(minutes=10))
    record = Record(NAMES.outbox("de.hotline"), 0, 1, b"case", _escalation(fed, original))
    d = decide(
        record,
        now=NOW,
        directory=fed.directory(),
        names=NAMES,
        seen={original: _seen("de.hotline")},
        limits=Limits(),
    )
    assert d.verdict is Verdict.FORWARDED
    assert [f.topic for f in d.forwards] == [NAMES.inbox("int.coordinator")]
    (event,) = [StatusEvent.model_validate_json(s.value or b"") for s in d.status]
    assert (event.state, event.recipient, event.escalation_of) == (
        HandoverState.ROUTED,
        "int.coordinator",
        original,
    )


# --- the tracker's notice ------------------------------------------------------------


def _escalated(mid: UUID, recipient: str, to: str = "int.coordinator") -> StatusEvent:
    return StatusEvent(
        message_id=mid,
        case_id=mid,
        sender="de.hotline",
        recipient=recipient,
        state=HandoverState.ESCALATED,
        at=NOW,
        reason=Reason.RECEIPT_OVERDUE,
        escalated_to=to,
    )


def test_one_notice_per_escalated_message_to_its_sender() -> None:
    a, b = uuid7(NOW), uuid7(NOW + timedelta(seconds=1))
    overdue = StatusEvent(
        message_id=b, case_id=b, sender="de.hotline", recipient="nl.hotline",
        state=HandoverState.OVERDUE, at=NOW, reason=Reason.RECEIPT_OVERDUE,
    )  # fmt: skip
    notices = escalation_notices(
        [_escalated(a, "nl.police24"), _escalated(a, "nl.hotline"), overdue], NOW
    )
    (n,) = notices
    assert (n.to, n.message_id, n.escalate_to) == ("de.hotline", a, "int.coordinator")
    assert n.overdue == ("nl.hotline", "nl.police24")
    assert n.notice_id == escalation_notice_id(a, "int.coordinator")
    assert escalation_notices([overdue], NOW) == []


# --- the sender's kept copy ----------------------------------------------------------


def test_a_copy_sealed_for_oneself_opens_only_with_its_key_and_context() -> None:
    mine, other = OpeningKey.generate(), OpeningKey.generate()
    blob = seal_for_self(b"the referral", mine.sealing_key, context=b"m1")
    assert b"the referral" not in blob
    assert open_for_self(blob, [other, mine], context=b"m1") == b"the referral"
    for keys, context in (([mine], b"m2"), ([other], b"m1")):
        with pytest.raises(PendingCopyError):
            open_for_self(blob, keys, context=context)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(PendingCopyError):
        open_for_self(tampered, [mine], context=b"m1")


def test_a_kept_copy_lives_until_every_recipient_answered(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        mid = uuid7(NOW)
        p = PendingReferral(mid, mid, "NL", referral().urgency.priority,
                            ("nl.hotline", "nl.police"), b"blob", NOW)  # fmt: skip
        store.keep_pending(p)
        store.mark_pending_sent(mid, at=NOW)
        store.mark_answered(mid, "nl.hotline")
        kept = store.pending(mid)
        assert kept is not None
        assert kept.answered == ("nl.hotline",)
        assert kept.sent_at == NOW
        store.mark_answered(mid, "nl.hotline")  # the same receipt again
        store.mark_answered(mid, "nl.police")
        assert store.pending(mid) is None


# --- the sender's adapter re-seals on the tracker's word ---------------------------------


def _notice_record(
    fed: LiveFederation, n: EscalationNotice, *, context: bytes = ESCALATION_CONTEXT
) -> Record:
    out = OutRecord(
        NAMES.inbox(n.to), str(n.case_id).encode(), n.model_dump_json().encode(),
        (("crb-record", b"escalation"),),
    )  # fmt: skip
    signed = sign(out, fed.signer(ServiceRole.TRACKER), context)
    ts = int(now().timestamp() * 1000)
    return Record(signed.topic, 0, 0, signed.key, signed.value, tuple(signed.headers), ts)


async def test_the_sender_reseals_to_the_escalation_recipient_once(tmp_path: Path) -> None:
    fed, kafka = LiveFederation(), FakeKafka()
    store = StateStore(tmp_path / "state")
    de = sender(fed, "de.hotline", kafka)
    de.pending = store
    sealed = de.seal_referral(Submission(make_referral(), "NL"))
    await de.send(sealed)
    assert kafka.sent  # the original went out
    kept = store.pending(sealed.message_id)
    assert kept is not None
    assert kept.sent_at is not None
    sink_dir = tmp_path / "inbox"
    from adapters import FolderSink

    receiver = Receiver(kafka, NAMES, settings(), de, FolderSink(sink_dir), store)
    notice = EscalationNotice(
        notice_id=escalation_notice_id(sealed.message_id, "int.coordinator"),
        to="de.hotline", at=now(), message_id=sealed.message_id, case_id=sealed.case_id,
        escalate_to="int.coordinator", overdue=("nl.hotline",),
    )  # fmt: skip
    assert await receiver.handle(_notice_record(fed, notice)) is Outcome.NOTICE
    escalation = parse(kafka.sent[-1].value).header
    assert escalation.escalation_of == sealed.message_id
    assert escalation.case_id == sealed.case_id
    assert escalation.recipients == ("int.coordinator",)
    assert escalation.message_type is MessageType.REFERRAL
    count = len(kafka.sent)
    assert await receiver.handle(_notice_record(fed, notice)) is Outcome.NOTICE
    assert len(kafka.sent) == count  # escalated once
    assert receiver.stats.escalations == 1
    forged = _notice_record(fed, notice, context=NOTICE_CONTEXT)
    forged = Record(
        forged.topic, 0, 9, forged.key, forged.value, forged.headers, forged.timestamp_ms
    )
    assert await receiver.handle(forged) is Outcome.QUARANTINED
    store.close()


def test_the_escalation_is_sealed_with_the_same_id_again(tmp_path: Path) -> None:
    """A crash between sealing and recording: sealing again gives the same id, so
    the router refuses a second copy as a duplicate."""
    fed, kafka = LiveFederation(), FakeKafka()
    with StateStore(tmp_path) as store:
        de = sender(fed, "de.hotline", kafka)
        de.pending = store
        sealed = de.seal_referral(Submission(make_referral(), "NL"))
        kept = store.pending(sealed.message_id)
        assert kept is not None
        first = de.seal_escalation(kept, "int.coordinator")
        second = de.seal_escalation(kept, "int.coordinator")
        assert first.message_id == second.message_id
        assert first.envelope != second.envelope


def test_draft_carries_the_escalation(tmp_path: Path) -> None:
    d = Draft.for_referral(
        referral(), sender="de.hotline", jurisdiction="NL", case_id=uuid7(NOW),
        escalation_of=uuid7(NOW),
    )  # fmt: skip
    assert d.escalation_of is not None


def test_records_of_bare_ids_and_old_copies_are_forgotten(tmp_path: Path) -> None:
    """forget_records keeps a referral with content, or whose receipt is not done;
    forget_pending drops copies kept too long."""
    from adapters import ReceivedMessage

    with StateStore(tmp_path) as store:
        old = NOW - timedelta(days=100)

        def received(message_type: MessageType) -> ReceivedMessage:
            mid = uuid7(old)
            reply = message_type is not MessageType.REFERRAL
            return ReceivedMessage(
                mid, message_type, "de.hotline", "nl.hotline", mid, "NL",
                referral().incident.type, referral().urgency.priority, referral().handling.code,
                "ab" * 32, in_reply_to=uuid7(old) if reply else None,
            )  # fmt: skip

        purged, unanswered, content, receipt = (
            received(MessageType.REFERRAL),
            received(MessageType.REFERRAL),
            received(MessageType.REFERRAL),
            received(MessageType.RECEIPT),
        )
        for m in (purged, unanswered, content, receipt):
            store.record_delivered(m, at=old)
        for m in (purged, content):
            store.mark_receipt_sent(m.message_id, uuid7(old), at=old)
        store.mark_purged([purged.message_id, unanswered.message_id], at=old)
        assert store.forget_records(NOW - timedelta(days=90)) == 2
        gone = {m.message_id for m in (purged, receipt)}
        assert {m.message_id for m in (purged, unanswered, content, receipt)
                if store.get(m.message_id) is None} == gone  # fmt: skip
        mid = uuid7(old)
        store.keep_pending(PendingReferral(mid, mid, "NL", referral().urgency.priority,
                                           ("nl.hotline",), b"x", old))  # fmt: skip
        assert store.forget_pending(NOW - timedelta(days=30)) == 1
        assert store.pending(mid) is None
