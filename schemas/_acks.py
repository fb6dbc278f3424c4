"""Payloads that flow back to the original sender.

Two layers (DESIGN.md, "Two acknowledgement layers"):

- :class:`Receipt` (``message_type == receipt``): transport. The receiver signs
  that it got these exact envelope bytes (non-repudiation of receipt).
- :class:`CaseAck` (``message_type == case_ack``): case handover decisions,
  one of :class:`Accepted`, :class:`Rejected`, :class:`Moved`,
  :class:`Actioned`, :class:`Closed` (discriminated by ``decision.kind``).

Both name the original message and case; the envelope header's
``in_reply_to`` carries the same message id (the adapter checks they agree).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from ._common import (
    SCHEMA_VERSION,
    CaseId,
    CountryCode,
    FrozenModel,
    MessageId,
    ReasonText,
    Reference,
    Sha256Hex,
    UtcDatetime,
)


class RejectReason(StrEnum):
    """Why a receiver rejects a case (a case decision, not a transport refusal)."""

    NOT_ILLEGAL_HERE = "not_illegal_here"
    INSUFFICIENT_INFORMATION = "insufficient_information"
    DUPLICATE = "duplicate"
    WRONG_JURISDICTION = "wrong_jurisdiction"
    """Prefer :class:`Moved` when the right jurisdiction is known."""
    OTHER = "other"
    """Needs ``detail``."""


class ActionType(StrEnum):
    """What was done about a case (ICCAM action log)."""

    LE_INFORMED = "le_informed"
    """Law enforcement informed."""
    HOST_INFORMED = "host_informed"
    """Hosting provider / ISP informed (notice and takedown)."""
    CONTENT_REMOVED = "content_removed"
    CONTENT_UNAVAILABLE = "content_unavailable"


class Receipt(FrozenModel):
    """Signed transport receipt: "I received exactly these envelope bytes"."""

    schema_version: Literal[1] = SCHEMA_VERSION
    original_message_id: MessageId
    case_id: CaseId
    received_at: UtcDatetime
    envelope_sha256: Sha256Hex
    """SHA-256 of the exact envelope bytes as consumed from the inbox."""


class Accepted(FrozenModel):
    """The receiver took the case on, under its own reference."""

    kind: Literal["accepted"] = "accepted"
    receiver_reference: Reference
    """The receiver's own case reference (ICCAM's "no reference" queue ends here)."""


class Rejected(FrozenModel):
    """The receiver does not take the case on."""

    kind: Literal["rejected"] = "rejected"
    reason: RejectReason
    detail: ReasonText | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.reason is RejectReason.OTHER and self.detail is None:
            raise ValueError("reason 'other' needs a detail")
        return self


class Moved(FrozenModel):
    """The case belongs to another jurisdiction. If the mover forwarded it itself,
    ``forwarded_message_id`` names the new referral (same ``case_id``)."""

    kind: Literal["moved"] = "moved"
    to_jurisdiction: CountryCode
    forwarded_message_id: MessageId | None = None
    detail: ReasonText | None = None


class Actioned(FrozenModel):
    """An action was taken on the case (repeatable)."""

    kind: Literal["actioned"] = "actioned"
    action: ActionType
    actioned_at: UtcDatetime | None = None
    """When the action happened, if earlier than the ack itself."""
    url_indexes: Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(max_length=1000)] = ()
    """Which ``Referral.urls`` the action covers; empty = the whole case."""
    detail: ReasonText | None = None


class Closed(FrozenModel):
    """The receiver closed the case (final)."""

    kind: Literal["closed"] = "closed"
    detail: ReasonText | None = None


Decision = Annotated[Accepted | Rejected | Moved | Actioned | Closed, Field(discriminator="kind")]


class CaseAck(FrozenModel):
    """A case decision about the referral ``original_message_id``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    original_message_id: MessageId
    case_id: CaseId
    decided_at: UtcDatetime
    decision: Decision


__all__ = [
    "Accepted",
    "ActionType",
    "Actioned",
    "CaseAck",
    "Closed",
    "Decision",
    "Moved",
    "Receipt",
    "RejectReason",
    "Rejected",
]
