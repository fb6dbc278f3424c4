"""Status events: what the router and tracker publish on the status topic.

One event per change of a (message, recipient) handover. Nothing personal and
nothing about the content: the same fields as the clear header, plus a state.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from ._common import (
    SCHEMA_VERSION,
    CaseId,
    Category,
    CountryCode,
    FrozenModel,
    MessageId,
    ParticipantId,
    Priority,
    UtcDatetime,
)
from ._deconfliction import Deconfliction
from ._reasons import STATUS_REASONS, Reason


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


def _status_reason(value: Reason) -> Reason:
    if value not in STATUS_REASONS:
        raise ValueError(f"{value.value} is not a status reason")
    return value


StatusReason = Annotated[
    Reason,
    AfterValidator(_status_reason),
    WithJsonSchema({"type": "string", "enum": sorted(r.value for r in STATUS_REASONS)}),
]
"""A :class:`Reason` a status event may carry (``schemas.STATUS_REASONS``)."""


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
    category: Category | None = None
    """The case's category (from its signed header), for operator views."""
    reply_id: MessageId | None = None
    """For a receipt or case decision: the reply that moved the handover on."""
    reply_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The SHA-256 of that reply's envelope, whose signature the router verified
    before forwarding it (the evidence: the receiving agency's signed receipt)."""
    deconfliction: Deconfliction | None = None
    """For ``routed``: the referral's keyed tags from its signed header (the tracker
    matches them across participants; they reveal no URL or hash)."""
    escalation_of: MessageId | None = None
    """For ``routed``: the referral this one escalates (from its signed header)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.escalated_to is not None) != (self.state is HandoverState.ESCALATED):
            raise ValueError("escalated_to is required for, and only for, state escalated")
        routed = self.state is HandoverState.ROUTED
        if (self.deconfliction is not None or self.escalation_of is not None) and not routed:
            raise ValueError("deconfliction tags and escalation_of travel only on routed")
        return self

    def key(self) -> str:
        """Compaction key on the status topic: one record per handover."""
        return f"{self.message_id}/{self.recipient or '-'}"


__all__ = ["HandoverState", "StatusEvent", "StatusReason"]
