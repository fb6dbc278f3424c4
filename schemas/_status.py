"""Status events: what the router and tracker publish on the status topic.

One event per change of a (message, recipient) handover. Nothing personal and
nothing about the content: the same fields as the clear header, plus a state.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import model_validator

from ._common import (
    SCHEMA_VERSION,
    CaseId,
    CountryCode,
    FrozenModel,
    MessageId,
    ParticipantId,
    Priority,
    UtcDatetime,
)


class HandoverState(StrEnum):
    """States of a handover; transport first, then case decisions."""

    SUBMITTED = "submitted"
    ROUTED = "routed"
    DEAD_LETTERED = "dead_lettered"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    MOVED = "moved"
    ACTIONED = "actioned"
    CLOSED = "closed"
    OVERDUE = "overdue"
    REDELIVERED = "redelivered"
    ESCALATED = "escalated"
    FAILED = "failed"


class StatusReason(StrEnum):
    """Stable reason codes carried by status events (DLQ, rejections, timers).

    Routing reasons mirror :class:`schemas.RoutingErrorReason`; case rejections
    mirror :class:`schemas.RejectReason`.
    """

    # envelope / router checks
    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_VALID = "key_not_valid"
    KEY_REVOKED = "key_revoked"
    STALE = "stale"
    FUTURE = "future"
    DUPLICATE_MESSAGE = "duplicate_message"
    SENDER_MISMATCH = "sender_mismatch"
    UNAUTHORISED = "unauthorised"
    # routing
    UNKNOWN_SENDER = "unknown_sender"
    SENDER_SUSPENDED = "sender_suspended"
    NO_RECIPIENT = "no_recipient"
    REPLY_NEEDS_ONE_RECIPIENT = "reply_needs_one_recipient"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    RECIPIENT_SUSPENDED = "recipient_suspended"
    REPLY_TO_SELF = "reply_to_self"
    RECIPIENT_MISMATCH = "recipient_mismatch"
    UNKNOWN_ORIGINAL = "unknown_original"
    ORPHAN = "orphan"
    # case decisions
    NOT_ILLEGAL_HERE = "not_illegal_here"
    INSUFFICIENT_INFORMATION = "insufficient_information"
    DUPLICATE = "duplicate"
    WRONG_JURISDICTION = "wrong_jurisdiction"
    OTHER = "other"
    # timers
    RECEIPT_OVERDUE = "receipt_overdue"
    DECISION_OVERDUE = "decision_overdue"
    RETRIES_EXHAUSTED = "retries_exhausted"


class StatusEvent(FrozenModel):
    """A handover changed state. ``recipient`` is ``None`` only before routing
    (``submitted``, or ``dead_lettered`` by the router before it resolved)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    message_id: MessageId
    case_id: CaseId
    sender: ParticipantId
    recipient: ParticipantId | None = None
    state: HandoverState
    at: UtcDatetime
    reason: StatusReason | None = None
    escalated_to: ParticipantId | None = None
    """For ``escalated``: who was alerted."""
    priority: Priority | None = None
    """The message's priority (from its signed header), for SLA timers."""
    jurisdiction: CountryCode | None = None
    """The case's jurisdiction (from its signed header), for operator views."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.escalated_to is not None) != (self.state is HandoverState.ESCALATED):
            raise ValueError("escalated_to is required for, and only for, state escalated")
        return self

    def key(self) -> str:
        """Compaction key on the status topic: one record per handover."""
        return f"{self.message_id}/{self.recipient or '-'}"


__all__ = ["HandoverState", "StatusEvent", "StatusReason"]
