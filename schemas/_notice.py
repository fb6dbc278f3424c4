"""Deconfliction notices: what the tracker tells participants whose referrals match.

See :mod:`schemas._deconfliction` for the tags they are computed from.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from ._common import (
    SCHEMA_VERSION,
    CaseId,
    CountryCode,
    FrozenModel,
    MessageId,
    ParticipantId,
    UtcDatetime,
)
from ._deconfliction import MAX_TAGS
from ._status import HandoverState


class NoticeKind(StrEnum):
    """What a deconfliction notice tells its recipient."""

    ALREADY_REFERRED = "already_referred"
    """Your referral matches one another participant referred before."""
    REFERRED_AGAIN = "referred_again"
    """Another participant has just referred what your earlier referral names."""


class MatchedReferral(FrozenModel):
    """The other referral of a notice: who, when, to whom, where it stands."""

    message_id: MessageId
    case_id: CaseId
    sender: ParticipantId
    jurisdiction: CountryCode | None = None
    referred_at: UtcDatetime
    states: dict[ParticipantId, HandoverState]
    """Each recipient's handover state when the notice was written."""


class DeconflictionNotice(FrozenModel):
    """Written by the tracker into a participant's inbox, signed with its service key
    (context ``crb/tracker-notice/v1``; Kafka header ``crb-record: notice``).

    ``message_id`` / ``case_id`` are the recipient's own referral; ``matched`` the
    other one; ``matched_tags`` how many tags they share. ``notice_id`` is derived
    from the pair and the kind, so a notice is never delivered under two ids."""

    schema_version: Literal[1] = SCHEMA_VERSION
    notice_id: MessageId
    kind: NoticeKind
    to: ParticipantId
    at: UtcDatetime
    message_id: MessageId
    case_id: CaseId
    matched: MatchedReferral
    matched_tags: Annotated[int, Field(ge=1, le=MAX_TAGS)]
    epoch: Annotated[int, Field(ge=1, le=2_147_483_647)]


class EscalationNotice(FrozenModel):
    """Written by the tracker into the *sender's* inbox when a handover of its
    referral is escalated: the sender — the only party besides the recipients that
    can read the referral — re-seals it to ``escalate_to`` (a referral with
    ``escalation_of = message_id``). Signed with the tracker's key (context
    ``crb/tracker-escalation/v1``; Kafka header ``crb-record: escalation``).
    ``notice_id`` is derived from the message and the escalation recipient."""

    schema_version: Literal[1] = SCHEMA_VERSION
    notice_id: MessageId
    to: ParticipantId
    at: UtcDatetime
    message_id: MessageId
    case_id: CaseId
    escalate_to: ParticipantId
    overdue: Annotated[tuple[ParticipantId, ...], Field(min_length=1, max_length=64)]
    """The recipients whose receipt is overdue."""


__all__ = ["DeconflictionNotice", "EscalationNotice", "MatchedReferral", "NoticeKind"]
