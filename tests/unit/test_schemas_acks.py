"""Receipts, case acknowledgements and status events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import schemas as s

from ._schema_fixtures import CASE, MSG

BASE = {"original_message_id": str(MSG), "case_id": str(CASE)}


def ack(decision: dict[str, Any]) -> s.CaseAck:
    return s.CaseAck.model_validate(
        {**BASE, "decided_at": "2026-11-23T18:00:00Z", "decision": decision}
    )


def test_receipt_carries_envelope_digest() -> None:
    """A receipt names the original message and case and the SHA-256 of the exact
    envelope bytes; a digest that is not 64 lowercase hex digits is refused."""
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    receipt = s.Receipt.model_validate(
        {**BASE, "received_at": "2026-11-23T17:00:01Z", "envelope_sha256": digest}
    )
    assert receipt.original_message_id == MSG
    for bad in (digest.upper(), digest[:-1], "sha256:" + digest[7:]):
        with pytest.raises(ValidationError, match="pattern"):
            s.Receipt.model_validate(
                {**BASE, "received_at": "2026-11-23T17:00:01Z", "envelope_sha256": bad}
            )


@pytest.mark.parametrize(
    ("decision", "kind"),
    [
        ({"kind": "accepted", "receiver_reference": "NL-HL-9001"}, s.Accepted),
        ({"kind": "rejected", "reason": "not_illegal_here"}, s.Rejected),
        ({"kind": "rejected", "reason": "other", "detail": "see call"}, s.Rejected),
        ({"kind": "moved", "to_jurisdiction": "FR", "forwarded_message_id": str(MSG)}, s.Moved),
        ({"kind": "actioned", "action": "content_removed", "url_indexes": [0, 2]}, s.Actioned),
        ({"kind": "closed"}, s.Closed),
    ],
)
def test_case_ack_decisions_parse_to_their_type(decision: dict[str, Any], kind: type) -> None:
    """The decision kind selects the model (discriminated union) and round-trips
    through JSON."""
    value = ack(decision)
    assert isinstance(value.decision, kind)
    assert value == s.CaseAck.model_validate_json(value.model_dump_json())


@pytest.mark.parametrize(
    ("decision", "match"),
    [
        ({"kind": "accepted"}, "receiver_reference"),
        ({"kind": "rejected", "reason": "other"}, "needs a detail"),
        ({"kind": "rejected", "reason": "boring"}, "Input should be"),
        ({"kind": "moved", "to_jurisdiction": "XX"}, "ISO 3166"),
        ({"kind": "actioned", "action": "deleted"}, "Input should be"),
        ({"kind": "closed", "extra": 1}, "Extra inputs"),
        ({"kind": "approved"}, "does not match any of the expected tags"),
    ],
)
def test_case_ack_refuses_bad_decisions(decision: dict[str, Any], match: str) -> None:
    """Missing references, 'other' without detail, unknown reasons/actions/kinds,
    bad countries and extra fields are refused."""
    with pytest.raises(ValidationError, match=match):
        ack(decision)


def test_status_event_states_and_key() -> None:
    """Status events carry a HandoverState and an optional reason; the compaction
    key is one per (message, recipient)."""
    event = s.StatusEvent.model_validate(
        {
            **{"message_id": str(MSG), "case_id": str(CASE)},
            "sender": "de.hotline",
            "recipient": "nl.hotline",
            "state": "dead_lettered",
            "at": "2026-11-23T17:00:00Z",
            "reason": "recipient_mismatch",
        }
    )
    assert event.reason == s.Reason.RECIPIENT_MISMATCH
    assert f"{MSG}/nl.hotline" == event.key()
    assert len(s.HandoverState) == 13


def test_status_event_escalation_target_rules() -> None:
    """``escalated_to`` is required for, and only for, the escalated state."""
    base = {
        "message_id": str(MSG),
        "case_id": str(CASE),
        "sender": "de.hotline",
        "recipient": "nl.hotline",
        "at": "2026-11-23T17:00:00Z",
    }
    ok = s.StatusEvent.model_validate(
        {**base, "state": "escalated", "escalated_to": "int.coordinator"}
    )
    assert ok.escalated_to == "int.coordinator"
    with pytest.raises(ValidationError, match="escalated_to"):
        s.StatusEvent.model_validate({**base, "state": "escalated"})
    with pytest.raises(ValidationError, match="escalated_to"):
        s.StatusEvent.model_validate({**base, "state": "routed", "escalated_to": "int.coordinator"})


def test_status_events_carry_only_status_reasons() -> None:
    """A status event's reason is one of STATUS_REASONS; an envelope-framing reason
    (only ever about an unverified header) is refused."""
    base = {
        "message_id": str(MSG),
        "case_id": str(CASE),
        "sender": "de.hotline",
        "state": "dead_lettered",
        "at": "2026-11-23T17:00:00Z",
    }
    for reason in s.STATUS_REASONS:
        assert reason == s.StatusEvent.model_validate({**base, "reason": reason.value}).reason
    with pytest.raises(ValidationError):
        s.StatusEvent.model_validate({**base, "reason": "malformed"})
