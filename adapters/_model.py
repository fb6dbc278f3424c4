"""Pure parts of an adapter: submissions, drafts, receipts, case acks, derived ids.

No I/O, no clock, no randomness: ``now`` is an argument everywhere.

Submissions. A referral file is either a bare ``Referral`` (JSON) or a wrapper
``{"referral": {...}, "jurisdiction": "NL", "case_id": "<uuid7>"}`` (both keys
optional). An empty hosting country is first filled from the hosting IP by an
offline allocation lookup (:mod:`adapters._hosting`; never over the analyst's).
Without an explicit jurisdiction it is derived from the referral
(:func:`jurisdiction_of`): the ``assigned_country`` of each URL, else its hosting
country, else the reported persons' estimated country; exactly one country must
result (ICCAM: the hosting country decides), otherwise the submission is refused
and must name its jurisdiction.

Derived message ids. Replies get ids computed from what they answer, not drawn at
random (:func:`derived_message_id`): a UUIDv7 whose timestamp is the original
message's and whose 74 random bits come from SHA-256 over a label, the original
id, the replying participant and (for case acks) the decision. A receipt or ack
sent again after a crash therefore carries the SAME id, and the router refuses
the second copy as a duplicate instead of delivering two receipts. A moved case's
new referral is derived the same way, so re-running ``crb ack move`` cannot fork
the case under two ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pydantic

from adapters._errors import InputError
from adapters._hosting import CountryLookup, fill_hosting_countries, rir_lookup
from keys import Draft, Opened
from schemas import (
    CaseAck,
    Category,
    Decision,
    DecisionKind,
    Deconfliction,
    EnvelopeHeader,
    HandlingCode,
    MessageType,
    Moved,
    Priority,
    Receipt,
    Referral,
    canonical_json,
    first_error,
)

__all__ = [
    "ReceivedMessage",
    "Submission",
    "case_ack_for",
    "derived_message_id",
    "jurisdiction_of",
    "moved_referral_draft",
    "opening_time",
    "parse_submission",
    "receipt_for",
    "referral_draft",
]

_ID_LABEL = b"crb/adapter/v1 derived id\x00"


@dataclass(frozen=True, slots=True)
class Submission:
    """A referral ready to be sealed: what, to which jurisdiction, in which case."""

    referral: Referral
    jurisdiction: str
    case_id: UUID | None = None
    """``None``: a new case (the sender draws a fresh UUIDv7 when sealing)."""


def jurisdiction_of(referral: Referral) -> str:
    """The one country responsible for ``referral`` (see the module docstring).

    Raises ``InputError`` when there is none or more than one.
    """
    countries = {
        u.assigned_country or (u.hosting.country if u.hosting else None) for u in referral.urls
    }
    countries.discard(None)
    if not countries:
        countries = {p.estimated_location.country for p in referral.persons if p.estimated_location}
        countries.discard(None)
    if not countries:
        raise InputError(
            "no hosting or assigned country: name the jurisdiction "
            '(--jurisdiction XX, or a wrapper\'s "jurisdiction" field)'
        )
    if len(countries) > 1:
        listed = ", ".join(sorted(c for c in countries if c))
        raise InputError(
            f"several jurisdictions ({listed}): split the referral or name one "
            '(--jurisdiction XX, or a wrapper\'s "jurisdiction" field)'
        )
    (country,) = countries
    assert country is not None
    return country


def _submission(
    data: dict[str, Any], jurisdiction: str | None, lookup: CountryLookup | None = None
) -> Submission:
    wrapped = "referral" in data
    referral = Referral.model_validate(data["referral"] if wrapped else data)
    referral = fill_hosting_countries(referral, lookup or rir_lookup())
    explicit = jurisdiction or (data.get("jurisdiction") if wrapped else None)
    case_id = UUID(str(data["case_id"])) if wrapped and data.get("case_id") else None
    if case_id is not None and case_id.version != 7:
        raise InputError("case_id must be a UUIDv7")
    if explicit is not None and not (
        isinstance(explicit, str) and len(explicit) == 2 and explicit.isascii()
    ):
        raise InputError("jurisdiction must be an ISO 3166 alpha-2 code")
    return Submission(
        referral=referral,
        jurisdiction=explicit.upper() if explicit else jurisdiction_of(referral),
        case_id=case_id,
    )


def parse_submission(
    data: bytes, *, where: str = "", jurisdiction: str | None = None
) -> Submission:
    """A referral file's bytes -> :class:`Submission`; ``InputError`` names the problem.

    ``jurisdiction`` (e.g. from ``crb send --jurisdiction``) wins over the file's.
    """
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not JSON ({exc.__class__.__name__})", where=where) from exc
    if not isinstance(obj, dict):
        raise InputError("expected a JSON object", where=where)
    extra = set(obj) - {"referral", "jurisdiction", "case_id"} if "referral" in obj else set()
    if extra:
        raise InputError(f"unknown wrapper keys: {', '.join(sorted(extra))}", where=where)
    try:
        return _submission(obj, jurisdiction)
    except pydantic.ValidationError as exc:
        raise InputError(f"invalid referral: {first_error(exc)}", where=where) from exc
    except InputError as exc:
        raise InputError(exc.detail, where=where) from exc
    except ValueError as exc:  # a case_id that is not a UUID
        raise InputError(f"invalid case_id: {exc}", where=where) from exc


def referral_draft(
    submission: Submission,
    *,
    sender: str,
    case_id: UUID,
    message_id: UUID,
    deconfliction: Deconfliction | None = None,
) -> Draft:
    """The header of a referral; recipients are left to ``seal`` (``resolve``)."""
    return Draft.for_referral(
        submission.referral,
        sender=sender,
        jurisdiction=submission.jurisdiction,
        case_id=case_id,
        message_id=message_id,
        deconfliction=deconfliction,
    )


# --- derived ids -------------------------------------------------------------------


def derived_message_id(original: UUID, *parts: str) -> UUID:
    """A UUIDv7 with ``original``'s timestamp and 74 bits of SHA-256(label, original, parts)."""
    h = hashlib.sha256(_ID_LABEL + str(original).encode())
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(4, "big") + data)
    rand = int.from_bytes(h.digest()[:10], "big")
    millis = original.int >> 80
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    return UUID(int=millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


# --- what a receiver remembers, and its replies --------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """The clear facts of a delivered message, kept so the receiver can answer it."""

    message_id: UUID
    message_type: MessageType
    sender: str
    recipient: str
    case_id: UUID
    jurisdiction: str
    category: Category
    priority: Priority
    handling_code: HandlingCode
    envelope_sha256: str
    in_reply_to: UUID | None = None
    escalation_of: UUID | None = None
    """A referral escalating an earlier one of the same case (its sender re-sealed it
    here because the first recipients did not answer in time)."""

    @classmethod
    def from_opened(cls, opened: Opened) -> ReceivedMessage:
        return cls.of(opened.header, recipient=opened.recipient, digest=opened.digest)

    @classmethod
    def of(cls, header: EnvelopeHeader, *, recipient: str, digest: str) -> ReceivedMessage:
        """The header's fields of the same name, the recipient and the envelope digest."""
        names = {f.name for f in fields(cls)} - {"recipient", "envelope_sha256"}
        shared = {name: getattr(header, name) for name in names}
        return cls(**shared, recipient=recipient, envelope_sha256=digest)


def _reply_draft(original: ReceivedMessage, message_type: MessageType, message_id: UUID) -> Draft:
    return Draft(
        message_type=message_type,
        sender=original.recipient,
        case_id=original.case_id,
        jurisdiction=original.jurisdiction,
        category=original.category,
        priority=original.priority,
        handling_code=original.handling_code,
        recipients=(original.sender,),
        in_reply_to=original.message_id,
        message_id=message_id,
    )


def receipt_for(original: ReceivedMessage, *, received_at: datetime) -> tuple[Draft, Receipt]:
    """The signed ``received`` receipt for a delivered referral (derived id).

    ``received_at`` is when it was delivered locally (from the state store), so a
    receipt sent again after a crash says the same thing under the same id.
    """
    message_id = derived_message_id(original.message_id, "receipt", original.recipient)
    receipt = Receipt(
        original_message_id=original.message_id,
        case_id=original.case_id,
        received_at=received_at,
        envelope_sha256=original.envelope_sha256,
    )
    return _reply_draft(original, MessageType.RECEIPT, message_id), receipt


def case_ack_for(
    original: ReceivedMessage, decision: Decision, *, now: datetime
) -> tuple[Draft, CaseAck]:
    """A case decision about a received referral (derived id: same decision, same id)."""
    if original.message_type is not MessageType.REFERRAL:
        raise InputError(f"{original.message_id} is a {original.message_type}, not a referral")
    message_id = derived_message_id(
        original.message_id, "case_ack", original.recipient, canonical_json(decision).decode()
    )
    ack = CaseAck(
        original_message_id=original.message_id,
        case_id=original.case_id,
        decided_at=now,
        decision=decision,
    )
    draft = _reply_draft(original, MessageType.CASE_ACK, message_id)
    # The decision's kind travels in the clear header too (router/tracker lifecycle).
    return replace(draft, decision=DecisionKind(decision.kind)), ack


def moved_referral_draft(
    original: ReceivedMessage,
    referral: Referral,
    *,
    to_jurisdiction: str,
    detail: str | None = None,
) -> tuple[Draft, Moved]:
    """A new referral of the same case to ``to_jurisdiction``, and the ``Moved`` decision
    naming it (send the referral first, then the ack)."""
    to = to_jurisdiction.upper()
    if to == original.jurisdiction:
        raise InputError(f"the case is already in {to}")
    message_id = derived_message_id(original.message_id, "moved", original.recipient, to)
    draft = Draft.for_referral(
        referral,
        sender=original.recipient,
        jurisdiction=to,
        case_id=original.case_id,
        message_id=message_id,
    )
    try:
        moved = Moved(to_jurisdiction=to, forwarded_message_id=message_id, detail=detail)
    except pydantic.ValidationError as exc:
        raise InputError(f"invalid move: {first_error(exc)}") from exc
    return draft, moved


def opening_time(now: datetime, record_time: datetime | None, max_lag: timedelta) -> datetime:
    """The time an inbox record is verified at: when the router forwarded it.

    The router checked freshness when it forwarded; an adapter that was down for a
    day must still open its mail. Only the router writes inboxes (Kafka ACL), so
    the record's timestamp is used, clamped to ``[now - max_lag, now]``.
    """
    if record_time is None:
        return now
    return max(now - max_lag, min(now, record_time))
