"""The one refusal vocabulary: every member is produced by the stage that owns it.

Each case below runs the real stage — ``keys.parse/verify/open``, ``schemas.resolve``,
the router's ``decide``, a receiving adapter, the tracker's timers — on input built to
trigger exactly one reason, and returns what the stage said. A member no stage can
produce would fail ``test_every_member_has_a_producer``: remove it, or make it real.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

import keys
import schemas as s
from adapters import DeliveryError, FolderSink, Receiver, StateStore
from adapters.kafka import Record
from broker.router import SeenMessage, decide
from broker.tracker import Handover, Ledger, Policy, tick
from keys import EnvelopeError, Limits
from schemas import Reason as R
from tests._fed import LiveFederation
from tests.unit._adapter_kit import NAMES, FakeKafka, sender, settings
from tests.unit._federation import KEY_END, NOW, Frame, draft, federation, referral

FED = federation()
DIRECTORY = FED.directory()
ENVELOPE = FED.seal_referral("de.hotline", referral(), jurisdiction="NL", now=NOW)
ROUTER_NAMES = s.TopicNames("crb")


def _verify(env: bytes, **kw: object) -> R:
    with pytest.raises(EnvelopeError) as info:
        keys.verify(env, **{"directory": DIRECTORY, "now": NOW, **kw})  # type: ignore[arg-type]
    return info.value.reason


def _open(env: bytes, recipient: str = "nl.hotline", **kw: object) -> R:
    args: dict[str, object] = {"directory": DIRECTORY, "now": NOW}
    args.update(kw)
    with pytest.raises(EnvelopeError) as info:
        keys.open(
            env,
            recipient=recipient,
            opening_keys=[FED.opening(recipient)],
            **args,  # type: ignore[arg-type]
        )
    return info.value.reason


def _sealed(payload: bytes | s.Referral) -> bytes:
    return keys.seal(
        draft(), payload, signing_key=FED.signing("de.hotline"), directory=DIRECTORY, now=NOW
    )


def _header_edit(**fields: object) -> bytes:
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    data.update(fields)
    return bytes(frame.with_header(data))


def _resigned(edit: Callable[[Frame], None]) -> bytes:
    frame = Frame.parse(ENVELOPE)
    edit(frame)
    return frame.resigned(FED.signing("de.hotline"))


def _commitment_forgery() -> bytes:
    mid = s.uuid7(NOW)
    a, b = (Frame.parse(FED.seal_referral(
        "de.hotline", referral(), jurisdiction="NL", now=NOW, message_id=mid
    )) for _ in range(2))  # fmt: skip
    a.wrapped[1] = b.wrapped[1]  # nl.police gets another content key
    return a.resigned(FED.signing("de.hotline"))


def _payload_mismatch() -> bytes:
    data = referral().model_dump(mode="json")
    data["urgency"] = {"priority": "urgent", "reason": "Synthetic: ongoing abuse."}
    return _sealed(s.Referral.model_validate(data))


def _decide(env: bytes, sender_id: str = "de.hotline", **kw: object) -> R:
    decision = decide(
        Record(ROUTER_NAMES.outbox(sender_id), 0, 1, None, env),
        **{  # type: ignore[arg-type]
            "now": NOW,
            "directory": DIRECTORY,
            "names": ROUTER_NAMES,
            "seen": {},
            "limits": Limits(),
            **kw,
        },
    )
    assert decision.reason is not None, "forwarded"
    return decision.reason


def _reply(to_id: UUID, sender_id: str = "int.coordinator") -> bytes:
    d = keys.Draft(
        message_type=s.MessageType.RECEIPT,
        sender=sender_id,
        case_id=keys.parse(ENVELOPE).header.case_id,
        jurisdiction="NL",
        category=s.Category.CSAM,
        priority=s.Priority.ROUTINE,
        handling_code=s.HandlingCode.H0,
        recipients=("de.hotline",),
        in_reply_to=to_id,
    )
    receipt = s.Receipt(
        original_message_id=to_id, case_id=d.case_id, received_at=NOW, envelope_sha256="0" * 64
    )
    return keys.seal(d, receipt, signing_key=FED.signing(sender_id), directory=DIRECTORY, now=NOW)


def _seen_original() -> dict[UUID, SeenMessage]:
    header = keys.parse(ENVELOPE).header
    return {
        header.message_id: SeenMessage("de.hotline", header.recipients, header.message_type, NOW)
    }


def _routing(**request: object) -> R:
    data: dict[str, object] = {
        "sender": "de.hotline", "jurisdiction": "NL", "category": "csam", "priority": "routine",
    }  # fmt: skip
    data.update(request)
    with pytest.raises(s.RoutingError) as info:
        s.resolve(s.RoutingRequest.model_validate(data), DIRECTORY)
    return info.value.reason


def _declared(recipients: tuple[str, ...]) -> bytes:
    return FED.seal_referral(
        "de.hotline", referral(), jurisdiction="NL", now=NOW, recipients=recipients
    )


async def _sink_refused(tmp_path: Path) -> R:
    fed = LiveFederation()

    class Refusing(FolderSink):
        async def deliver(self, delivery: object) -> None:
            raise DeliveryError("http_422", retriable=False)

    with StateStore(tmp_path / "state") as store:
        receiver = Receiver(
            FakeKafka(),
            NAMES,
            settings(),
            sender(fed, "nl.hotline", FakeKafka()),
            Refusing(tmp_path / "inbox"),
            store,
        )
        await receiver.handle(Record(NAMES.inbox("nl.hotline"), 0, 0, None, fed.referral()))
        (note,) = store.quarantined()
    return R(str(note["reason"]))


def _timer(ticks: int) -> R:
    """The reason of the last timer event after ``ticks`` hourly ticks of the tracker on
    an urgent handover without receipt (overdue first, failed at the next tick)."""
    h = Handover(
        message_id=s.uuid7(NOW),
        recipient="nl.hotline",
        case_id=s.uuid7(NOW),
        sender="de.hotline",
        priority=s.Priority.URGENT,
        state=s.HandoverState.ROUTED,
        routed_at=NOW,
        updated_at=NOW,
    )
    events: list[s.StatusEvent] = []
    for hour in range(1, ticks + 1):
        h, raised = tick(h, NOW + timedelta(hours=hour), Policy(escalation_recipient=None))
        events += raised
    reason = events[-1].reason
    assert reason is not None
    return reason


def _sender_revoked() -> R:
    """The tracker, told by the directory that the sender was revoked, closes its
    handover still waiting for a receipt."""
    h = Handover(
        message_id=s.uuid7(NOW),
        recipient="nl.hotline",
        case_id=s.uuid7(NOW),
        sender="de.hotline",
        state=s.HandoverState.ROUTED,
        routed_at=NOW,
        updated_at=NOW,
    )
    ledger = Ledger(Policy())
    ledger.load(h)
    revoked = keys.revoke(DIRECTORY, "de.hotline", key_id=None, now=NOW)
    later = NOW + timedelta(minutes=1)
    step = ledger.step([], later, answerable=lambda p: keys.answerable(revoked, p, later))
    (event,) = step.emitted
    assert event.state is s.HandoverState.CLOSED
    assert event.reason is not None
    return event.reason


def _suspended() -> s.Directory:
    return keys.set_status(DIRECTORY, "de.hotline", s.ParticipantStatus.SUSPENDED, now=NOW)


def _orphan() -> R:
    env = FED.seal_referral("de.hotline", referral(), jurisdiction="FR", now=NOW)
    decision = decide(
        Record(ROUTER_NAMES.outbox("de.hotline"), 0, 1, None, env),
        now=NOW, directory=DIRECTORY, names=ROUTER_NAMES, seen={}, limits=Limits(),
    )  # fmt: skip
    (event,) = [s.StatusEvent.model_validate_json(o.value or b"") for o in decision.status]
    assert event.reason is not None
    return event.reason


PRODUCERS: dict[R, Callable[[], R]] = {
    R.TOO_LARGE: lambda: _verify(ENVELOPE, limits=Limits(max_size=1024)),
    R.MALFORMED: lambda: _verify(ENVELOPE[:-1]),
    R.UNSUPPORTED_VERSION: lambda: _verify(ENVELOPE[:4] + b"\x02" + ENVELOPE[5:]),
    R.UNKNOWN_SENDER: lambda: _verify(ENVELOPE, directory=FED.directory(without=["de.hotline"])),
    R.SENDER_SUSPENDED: lambda: _verify(ENVELOPE, directory=_suspended()),
    R.WRONG_OUTBOX: lambda: _verify(ENVELOPE, expected_sender="nl.hotline"),
    R.UNKNOWN_KEY: lambda: _verify(_header_edit(sender_key_id="ed25519-0000000000000000")),
    R.KEY_REVOKED: lambda: _verify(
        ENVELOPE,
        directory=keys.revoke(DIRECTORY, "de.hotline", key_id=None, now=NOW),
    ),
    R.KEY_EXPIRED: lambda: _verify(ENVELOPE, now=KEY_END + timedelta(minutes=1)),
    R.BAD_SIGNATURE: lambda: _verify(ENVELOPE[:-1] + bytes([ENVELOPE[-1] ^ 1])),
    R.STALE: lambda: _verify(ENVELOPE, now=NOW + timedelta(hours=25)),
    R.FUTURE_DATED: lambda: _verify(ENVELOPE, now=NOW - timedelta(hours=1)),
    R.NOT_A_RECIPIENT: lambda: _open(ENVELOPE, "int.coordinator"),
    R.DECRYPT_FAILED: lambda: _open(
        _resigned(lambda f: setattr(f, "ciphertext", f.ciphertext[:-1] + b"\x00"))
    ),
    R.KEY_COMMITMENT_MISMATCH: lambda: _open(_commitment_forgery(), "nl.police"),
    R.SCHEMA_INVALID: lambda: _open(_sealed(b'{"not": "a referral"}')),
    R.PAYLOAD_MISMATCH: lambda: _open(_payload_mismatch()),
    R.DUPLICATE_MESSAGE: lambda: _decide(ENVELOPE, seen=_seen_original()),
    R.UNAUTHORISED: lambda: _decide(
        _reply(keys.parse(ENVELOPE).header.message_id), "int.coordinator", seen=_seen_original()
    ),
    R.UNKNOWN_ORIGINAL: lambda: _decide(_reply(s.uuid7(NOW)), "int.coordinator"),
    R.NO_RECIPIENT: lambda: _routing(sender="int.coordinator", jurisdiction="FR"),
    R.REPLY_NEEDS_ONE_RECIPIENT: lambda: _routing(message_type="receipt", recipients=()),
    R.UNKNOWN_RECIPIENT: lambda: _routing(message_type="receipt", recipients=("xx.nobody",)),
    R.RECIPIENT_SUSPENDED: lambda: _decide(
        _reply(keys.parse(ENVELOPE).header.message_id, "nl.hotline"),
        "nl.hotline",
        seen=_seen_original(),
        directory=_suspended(),
    ),
    R.REPLY_TO_SELF: lambda: _routing(message_type="receipt", recipients=("de.hotline",)),
    R.RECIPIENT_MISMATCH: lambda: _decide(_declared(("nl.hotline",))),
    R.ORPHAN: _orphan,
    R.RECEIPT_OVERDUE: lambda: _timer(1),
    R.RETRIES_EXHAUSTED: lambda: _timer(2),
    R.SENDER_REVOKED: _sender_revoked,
}


def test_every_member_has_a_producer() -> None:
    """No member of the vocabulary is dead: each has a case below (SINK_REFUSED runs
    asynchronously in its own test)."""
    assert set(R) == set(PRODUCERS) | {R.SINK_REFUSED}


@pytest.mark.parametrize("reason", sorted(PRODUCERS), ids=str)
def test_each_reason_is_produced_by_its_stage(reason: R) -> None:
    """The real stage, on input built for it, refuses with exactly this reason."""
    assert reason == PRODUCERS[reason]()


async def test_sink_refused_is_produced_by_a_receiving_adapter(tmp_path: Path) -> None:
    """A local system that refuses a message for good: quarantined as sink_refused."""
    assert R.SINK_REFUSED == await _sink_refused(tmp_path)


def test_each_stage_says_only_its_subset() -> None:
    """The named subsets nest as the stages do, and together cover the vocabulary."""
    assert s.VERIFY_REASONS < s.OPEN_REASONS < s.QUARANTINE_REASONS
    assert s.VERIFY_REASONS | s.ROUTING_REASONS < s.DEAD_LETTER_REASONS
    assert s.STATUS_REASONS.isdisjoint(s.VERIFY_REASONS)
    every = s.QUARANTINE_REASONS | s.DEAD_LETTER_REASONS | s.STATUS_REASONS
    assert set(R) == every


def test_status_reasons_need_a_verified_header() -> None:
    """A dead-letter reason reaches the status stream only after the signature
    verified, and never for a duplicate (it would overwrite the original's status)."""
    assert R.DUPLICATE_MESSAGE not in s.STATUS_REASONS
    assert {R.UNAUTHORISED, R.UNKNOWN_ORIGINAL, R.RECIPIENT_MISMATCH} <= s.STATUS_REASONS
