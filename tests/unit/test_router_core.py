"""The router's pure decision core: every check, in order, without Kafka."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from uuid import UUID

import pytest

from adapters.kafka import Record
from broker.audit import Verdict
from broker.router import RoutingDecision, SeenMessage, decide
from keys import Draft, Limits, seal, set_status
from keys.testing import Federation
from schemas import (
    CaseAck,
    Closed,
    DecisionKind,
    Directory,
    HandlingCode,
    MessageType,
    ParticipantStatus,
    Priority,
    Reason,
    Receipt,
    StatusEvent,
    TopicNames,
    resolve,
    uuid7,
)
from tests.unit._federation import NOW, Frame, draft, federation, referral

NAMES = TopicNames("crb")
LIMITS = Limits()


@pytest.fixture(scope="module")
def fed() -> Federation:
    return federation()


def _sealed(
    fed: Federation, d: Draft | None = None, *, directory: Directory | None = None
) -> bytes:
    d = d or draft()
    return seal(
        d,
        referral(),
        signing_key=fed.members[d.sender].signing,
        directory=directory or fed.directory(),
        now=NOW,
    )


def _record(value: bytes | None, sender: str = "de.hotline", offset: int = 7) -> Record:
    return Record(NAMES.outbox(sender), 0, offset, b"case", value)


def _decide(
    fed: Federation,
    record: Record,
    *,
    seen: dict[UUID, SeenMessage] | None = None,
    directory: Directory | None = None,
    now_shift: timedelta = timedelta(0),
    limits: Limits = LIMITS,
) -> RoutingDecision:
    return decide(
        record,
        now=NOW + now_shift,
        directory=directory or fed.directory(),
        names=NAMES,
        seen=seen or {},
        limits=limits,
    )


def test_valid_referral_is_forwarded_to_every_resolved_inbox(fed: Federation) -> None:
    """A valid referral goes to each recipient resolve() names, keyed by case id,
    byte-identical, with one ROUTED status event per recipient and a forwarded audit."""
    env = _sealed(fed)
    decision = _decide(fed, _record(env))
    header = decision.header
    assert header is not None
    expected = resolve(header, fed.directory()).recipients
    assert decision.verdict is Verdict.FORWARDED
    assert [f.topic for f in decision.forwards] == [NAMES.inbox(r) for r in expected]
    assert all(f.value == env for f in decision.forwards)
    assert all(f.key == str(header.case_id).encode() for f in decision.forwards)
    assert len(decision.status) == len(expected)
    assert decision.dead_letter is None
    assert decision.audit.recipients == expected
    assert decision.remember is not None
    assert decision.remember[0] == header.message_id


def test_orphan_jurisdiction_goes_to_the_coordinator(fed: Federation) -> None:
    """A case for a jurisdiction with no receiver is forwarded to the coordinator,
    and the audit says it took the orphan path."""
    d = draft()
    d = Draft(
        sender=d.sender,
        case_id=d.case_id,
        jurisdiction="FR",
        category=d.category,
        priority=d.priority,
        handling_code=d.handling_code,
    )
    decision = _decide(fed, _record(_sealed(fed, d)))
    assert decision.verdict is Verdict.FORWARDED
    assert [f.topic for f in decision.forwards] == [NAMES.inbox("int.coordinator")]
    assert decision.audit.orphan is True


def _assert_rejected(decision: RoutingDecision, reason: Reason, original: bytes) -> None:
    assert decision.verdict is Verdict.REJECTED
    assert decision.reason is reason
    assert decision.forwards == ()
    assert decision.dead_letter is not None
    assert decision.dead_letter.topic == NAMES.dlq
    assert decision.dead_letter.value == original
    headers = dict(decision.dead_letter.headers)
    assert headers["crb-reason"] == reason.value.encode()
    assert headers["crb-source-topic"].startswith(b"crb.outbox.")
    assert headers["crb-source-offset"] == b"7"
    assert decision.audit.verdict is Verdict.REJECTED
    assert decision.audit.reason == reason.value


def test_oversize_is_refused_before_parsing(fed: Federation) -> None:
    """An envelope over the size limit is dead-lettered as too_large."""
    env = _sealed(fed)
    decision = _decide(fed, _record(env), limits=Limits(max_size=len(env) - 1))
    _assert_rejected(decision, Reason.TOO_LARGE, env)


@pytest.mark.parametrize("garbage", [b"", b"{}", b"CRBE\x01\x00\x00", b"\xff" * 300])
def test_garbage_is_malformed(fed: Federation, garbage: bytes) -> None:
    """Empty, JSON, truncated and random bytes are all malformed, with original bytes kept."""
    _assert_rejected(_decide(fed, _record(garbage)), Reason.MALFORMED, garbage)


def test_null_value_is_malformed(fed: Federation) -> None:
    """A tombstone (null value) in an outbox is dead-lettered, not dropped."""
    _assert_rejected(_decide(fed, _record(None)), Reason.MALFORMED, b"")


def test_unknown_sender(fed: Federation) -> None:
    """A sender absent from the directory the router holds is refused."""
    env = _sealed(fed)
    without = fed.directory(without=["de.hotline"])
    _assert_rejected(_decide(fed, _record(env), directory=without), Reason.UNKNOWN_SENDER, env)


def test_suspended_sender(fed: Federation) -> None:
    """A suspended participant's messages are refused as sender_suspended."""
    env = _sealed(fed)
    suspended = set_status(fed.directory(), "de.hotline", ParticipantStatus.SUSPENDED, now=NOW)
    _assert_rejected(_decide(fed, _record(env), directory=suspended), Reason.SENDER_SUSPENDED, env)


def test_envelope_in_someone_elses_outbox(fed: Federation) -> None:
    """A valid envelope of de.hotline found in nl.hotline's outbox is refused (wrong_outbox)."""
    env = _sealed(fed)
    _assert_rejected(_decide(fed, _record(env, sender="nl.hotline")), Reason.WRONG_OUTBOX, env)


def test_tampered_ciphertext_fails_the_signature(fed: Federation) -> None:
    """One flipped ciphertext byte: bad_signature, nothing forwarded."""
    frame = Frame.parse(_sealed(fed))
    frame.ciphertext = bytes([frame.ciphertext[0] ^ 1]) + frame.ciphertext[1:]
    env = bytes(frame)
    _assert_rejected(_decide(fed, _record(env)), Reason.BAD_SIGNATURE, env)


def test_stale_and_future_messages(fed: Federation) -> None:
    """Older than the freshness window: stale; from the future beyond skew: future_dated."""
    env = _sealed(fed)
    _assert_rejected(_decide(fed, _record(env), now_shift=timedelta(days=2)), Reason.STALE, env)
    _assert_rejected(
        _decide(fed, _record(env), now_shift=-timedelta(hours=1)), Reason.FUTURE_DATED, env
    )


def test_duplicate_message_id_is_not_forwarded_again(fed: Federation) -> None:
    """The same message id a second time goes to the dead-letter topic as a duplicate."""
    env = _sealed(fed)
    first = _decide(fed, _record(env))
    assert first.remember is not None
    seen = {first.remember[0]: first.remember[1]}
    _assert_rejected(_decide(fed, _record(env), seen=seen), Reason.DUPLICATE_MESSAGE, env)


def test_declared_recipients_must_equal_the_resolved_ones(fed: Federation) -> None:
    """A sender that encrypts to fewer (or other) recipients than the rules say is refused."""
    d = draft()
    d = Draft(
        sender=d.sender,
        case_id=d.case_id,
        jurisdiction=d.jurisdiction,
        category=d.category,
        priority=d.priority,
        handling_code=d.handling_code,
        recipients=("int.coordinator",),
    )
    env = _sealed(fed, d)
    _assert_rejected(_decide(fed, _record(env)), Reason.RECIPIENT_MISMATCH, env)


def _reply(fed: Federation, original_id: UUID, case_id: UUID, sender: str, to: str) -> bytes:
    d = Draft(
        message_type=MessageType.RECEIPT,
        sender=sender,
        case_id=case_id,
        jurisdiction="NL",
        category=draft().category,
        priority=Priority.ROUTINE,
        handling_code=HandlingCode.H0,
        recipients=(to,),
        in_reply_to=original_id,
    )
    payload = Receipt(
        original_message_id=original_id,
        case_id=case_id,
        received_at=NOW,
        envelope_sha256="ab" * 32,
    )
    return seal(
        d, payload, signing_key=fed.members[sender].signing, directory=fed.directory(), now=NOW
    )


def test_receipt_travels_back_to_the_original_sender(fed: Federation) -> None:
    """A recipient's receipt for a forwarded referral goes to the original sender's inbox."""
    original = _decide(fed, _record(_sealed(fed)))
    assert original.remember is not None
    assert original.header is not None
    seen = {original.remember[0]: original.remember[1]}
    receipt = _reply(
        fed, original.header.message_id, original.header.case_id, "nl.hotline", "de.hotline"
    )
    decision = _decide(fed, _record(receipt, sender="nl.hotline"), seen=seen)
    assert decision.verdict is Verdict.FORWARDED
    assert [f.topic for f in decision.forwards] == [NAMES.inbox("de.hotline")]
    # The original handover (de.hotline -> nl.hotline) moves to received.
    (event,) = [StatusEvent.model_validate_json(s.value or b"") for s in decision.status]
    assert (event.message_id, event.sender, event.recipient, event.state.value) == (
        original.header.message_id,
        "de.hotline",
        "nl.hotline",
        "received",
    )
    # The evidence: which receipt moved it, and the digest of the bytes verified.
    assert decision.header is not None
    assert decision.header.message_id == event.reply_id
    assert hashlib.sha256(receipt).hexdigest() == event.reply_sha256


def test_reply_to_an_unknown_message_is_refused(fed: Federation) -> None:
    """A receipt for a message the router never forwarded: unknown_original."""
    env = _reply(fed, uuid7(NOW), uuid7(NOW), "nl.hotline", "de.hotline")
    decision = _decide(fed, _record(env, sender="nl.hotline"))
    _assert_rejected(decision, Reason.UNKNOWN_ORIGINAL, env)


def test_reply_from_a_non_recipient_is_unauthorised(fed: Federation) -> None:
    """Only a recipient of the original may answer it; the coordinator was not one."""
    original = _decide(fed, _record(_sealed(fed)))
    assert original.remember is not None
    assert original.header is not None
    assert "int.coordinator" not in original.audit.recipients
    seen = {original.remember[0]: original.remember[1]}
    env = _reply(
        fed, original.header.message_id, original.header.case_id, "int.coordinator", "de.hotline"
    )
    decision = _decide(fed, _record(env, sender="int.coordinator"), seen=seen)
    _assert_rejected(decision, Reason.UNAUTHORISED, env)


def test_case_ack_payload_model_is_sealable(fed: Federation) -> None:
    """Case decisions use the same reply path (a closed case ack is forwarded back)."""
    original = _decide(fed, _record(_sealed(fed)))
    assert original.remember is not None
    assert original.header is not None
    h = original.header
    d = Draft(
        message_type=MessageType.CASE_ACK,
        sender="nl.hotline",
        case_id=h.case_id,
        jurisdiction="NL",
        category=h.category,
        priority=h.priority,
        handling_code=h.handling_code,
        recipients=("de.hotline",),
        in_reply_to=h.message_id,
        decision=DecisionKind.CLOSED,
    )
    ack = CaseAck(
        original_message_id=h.message_id, case_id=h.case_id, decided_at=NOW, decision=Closed()
    )
    env = seal(
        d,
        ack,
        signing_key=fed.members["nl.hotline"].signing,
        directory=fed.directory(),
        now=NOW,
    )
    seen = {original.remember[0]: original.remember[1]}
    decision = _decide(fed, _record(env, sender="nl.hotline"), seen=seen)
    assert decision.verdict is Verdict.FORWARDED
    assert [f.topic for f in decision.forwards] == [NAMES.inbox("de.hotline")]
    (event,) = [StatusEvent.model_validate_json(s.value or b"") for s in decision.status]
    assert (event.message_id, event.recipient, event.state.value) == (
        h.message_id,
        "nl.hotline",
        "closed",
    )


def test_foreign_outbox_is_reported_before_a_bad_signature(fed: Federation) -> None:
    """Checks run in order: a tampered envelope in someone else's outbox is a
    wrong_outbox (check 5), not a bad_signature (check 7)."""
    frame = Frame.parse(_sealed(fed))
    frame.ciphertext = bytes([frame.ciphertext[0] ^ 1]) + frame.ciphertext[1:]
    env = bytes(frame)
    _assert_rejected(_decide(fed, _record(env, sender="nl.hotline")), Reason.WRONG_OUTBOX, env)


def test_a_record_too_large_to_dead_letter_is_dead_lettered_truncated(fed: Federation) -> None:
    """Larger than the dead-letter limit (an outbox whose size limit was raised): the
    dead letter carries size, digest and the first bytes instead — it always fits, so
    the partition's transaction cannot fail on it for ever. Smaller: the exact bytes."""
    import base64
    import hashlib
    import json

    from broker.router import DEAD_LETTER_MAX, dead_letter_value

    huge = b"\x00crb" + bytes(range(256)) * 40_000  # ~10 MiB of non-envelope
    decision = decide(
        _record(huge),
        now=NOW,
        directory=fed.directory(),
        names=NAMES,
        seen={},
        limits=Limits(max_size=len(huge) * 2),
        dead_letter_max=64 * 1024,
    )
    dead = decision.dead_letter
    assert dead is not None
    assert decision.reason is Reason.MALFORMED
    assert dead.value is not None
    assert len(dead.value) < 8 * 1024
    doc = json.loads(dead.value)
    assert doc["size"] == len(huge)
    assert doc["sha256"] == hashlib.sha256(huge).hexdigest() == decision.audit.envelope_sha256
    assert base64.b64decode(doc["head_base64"]) == huge[:4096]
    headers = dict(dead.headers)
    assert (headers["crb-truncated"], headers["crb-original-size"]) == (
        b"1",
        str(len(huge)).encode(),
    )
    small = _sealed(fed)
    assert dead_letter_value(small, "x", DEAD_LETTER_MAX) == (small, False)
