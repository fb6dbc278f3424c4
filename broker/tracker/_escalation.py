"""Escalation that delivers: the notice that asks a sender to re-seal an overdue referral.

Pure. When the SLA timers escalate handovers (``escalated`` events), the tracker
writes one :class:`schemas.EscalationNotice` per escalated message into the
*sender's* inbox, in the same transaction as the events: the sender's adapter —
the only party besides the recipients that can read the referral — re-seals it to
the escalation recipient (a referral with ``escalation_of``), which the router
routes there alone. The tracker then follows the new referral like any other: its
handover carries ``escalation_of``, so a view shows the original escalated and
the fallback's receipt.

The notice id is derived from the message and the escalation recipient, so the
same escalation computed again (a failed transaction folded again) has the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from schemas import EscalationNotice, HandoverState, StatusEvent

__all__ = ["escalation_notice_id", "escalation_notices"]

_LABEL = b"crb/tracker/v1 escalation id\x00"


def escalation_notice_id(message_id: UUID, escalate_to: str) -> UUID:
    """A UUIDv7 with the message's timestamp and 74 bits of SHA-256 over the rest."""
    digest = hashlib.sha256(_LABEL + message_id.bytes + escalate_to.encode()).digest()
    rand = int.from_bytes(digest[:10], "big")
    value = ((message_id.int >> 80) << 80) | (0x7 << 76) | ((rand >> 68 & 0xFFF) << 64)
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return UUID(int=value)


def escalation_notices(emitted: Iterable[StatusEvent], now: datetime) -> list[EscalationNotice]:
    """One notice per message among ``emitted``'s ``escalated`` events, to its sender,
    naming every recipient escalated in this batch."""
    grouped: dict[tuple[UUID, str], list[StatusEvent]] = {}
    for e in emitted:
        if e.state is HandoverState.ESCALATED and e.escalated_to and e.recipient:
            grouped.setdefault((e.message_id, e.escalated_to), []).append(e)
    return [
        EscalationNotice(
            notice_id=escalation_notice_id(message_id, to),
            to=events[0].sender,
            at=now,
            message_id=message_id,
            case_id=events[0].case_id,
            escalate_to=to,
            overdue=tuple(sorted({e.recipient for e in events if e.recipient})),
        )
        for (message_id, to), events in grouped.items()
    ]
