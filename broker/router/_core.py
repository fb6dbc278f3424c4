"""The router's decision core: one outbox record in, one :class:`RoutingDecision` out.

Pure: no Kafka, no clock, no randomness — ``now``, the directory, the topic names
and the memory of forwarded messages are arguments. The Kafka shell
(:mod:`broker.router._service`) only polls, calls :func:`decide`, produces what
the decision says and commits, all in one transaction.

Checks, in order (the first failure names the reason):

1. size (before parsing), 2. parse, 3. format/schema version, 4. sender known and
active, 5. the outbox topic belongs to the signed sender (``expected_sender``),
6. key valid and not revoked, 7. signature, 8. freshness — all in ``keys.verify``;
9. duplicate message id (an *authorised redelivery* — the sender's own referral
sealed again under its id, other bytes, after ``redelivery_min``, at most
``MAX_FORWARDS`` forwards — goes on, as ``redelivered``); 10. authorisation (role
for the message type; replies only to a message this router forwarded to the
replier; an escalation only of a referral this router forwarded from the same
sender); 11. recomputed recipients equal
the declared ones; 12. recipients active — ``schemas.check_routing``.

A forwarded record goes to each recipient's inbox, keyed by case id, with the exact
envelope bytes. A rejected record goes to the dead-letter topic with its original
bytes and key (each cut to a form that always fits when larger), and headers naming
source, reason and time. Either way one audit entry and status events describe what
happened. Reasons are ``schemas.Reason`` members of ``schemas.DEAD_LETTER_REASONS``.

What the router remembers of a forwarded message (:class:`SeenMessage`) is dated by
when it was forwarded — the same value whether the router decided it a moment ago
or rebuilt it from the audit trail after a restart.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from adapters.kafka import OutRecord, Record
from broker.audit import AuditEntry, Verdict
from keys import EnvelopeError, Limits, verify
from schemas import (
    REPLY_MESSAGE_TYPES,
    Directory,
    EnvelopeHeader,
    HandoverState,
    MessageType,
    Reason,
    Role,
    RoutingError,
    StatusEvent,
    TopicNames,
    canonical_json_of,
    check_routing,
)

__all__ = [
    "DEAD_LETTER_HEAD",
    "DEAD_LETTER_MAX",
    "MAX_FORWARDS",
    "REDELIVERY_MIN",
    "REFERRAL_SENDER_ROLES",
    "RoutingDecision",
    "SeenMessage",
    "dead_letter_value",
    "decide",
    "redelivery_allowed",
]

DEAD_LETTER_MAX = (1 << 20) + (512 << 10)
"""Default largest dead letter kept as is (1.5 MiB: any record an outbox accepts)."""
DEAD_LETTER_HEAD = 4096
"""How many leading bytes a truncated dead letter keeps (of its value; of its key,
always)."""

#: Roles allowed to originate a referral. Replies may come from any active participant
#: that received the original.
REFERRAL_SENDER_ROLES = frozenset(
    {
        Role.HOTLINE,
        Role.POLICE,
        Role.POLICE_24X7,
        Role.COORDINATOR,
        Role.REGIONAL_BODY,
        Role.ELECTRONIC_SERVICE_PROVIDER,
    }
)


MAX_FORWARDS = 4
"""A message id is forwarded at most this often: the original and three redeliveries."""
REDELIVERY_MIN = timedelta(minutes=1)
"""Default least time between two forwards of one message id."""


@dataclass(frozen=True, slots=True)
class SeenMessage:
    """What the router remembers of a message it forwarded (for duplicates and replies)."""

    sender: str
    recipients: tuple[str, ...]
    message_type: MessageType
    forwarded_at: datetime
    """When it was last forwarded (the first time, or its latest redelivery)."""
    digests: tuple[str, ...] = ()
    """SHA-256 of every envelope forwarded under this id (the original, then each
    authorised redelivery): the same bytes again are never forwarded twice."""


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """What happens to one outbox record: forwards or a dead letter, status events,
    the audit entry, and what to remember once the transaction commits."""

    verdict: Verdict
    reason: Reason | None
    audit: AuditEntry
    forwards: tuple[OutRecord, ...] = ()
    dead_letter: OutRecord | None = None
    status: tuple[OutRecord, ...] = ()
    header: EnvelopeHeader | None = field(default=None, repr=False)
    remember: tuple[UUID, SeenMessage] | None = None
    """A forwarded message the router must remember once the transaction commits."""


def _status_record(names: TopicNames, event: StatusEvent) -> OutRecord:
    return OutRecord(
        topic=names.status,
        key=event.key().encode(),
        value=event.model_dump_json().encode(),
        headers=(("crb-state", event.state.value.encode()),),
    )


def _event(
    header: EnvelopeHeader,
    state: HandoverState,
    now: datetime,
    *,
    handover: tuple[UUID, str, str | None] | None = None,
    reason: Reason | None = None,
) -> StatusEvent:
    """A status event about ``header``'s case; ``handover`` = (message id, sender,
    recipient) of the handover it moves, default this message before routing."""
    message_id, sender, recipient = handover or (header.message_id, header.sender, None)
    return StatusEvent(
        message_id=message_id,
        case_id=header.case_id,
        sender=sender,
        recipient=recipient,
        state=state,
        at=now,
        reason=reason,
        priority=header.priority,
        jurisdiction=header.jurisdiction,
        category=header.category,
        deconfliction=header.deconfliction if state is HandoverState.ROUTED else None,
        escalation_of=header.escalation_of if state is HandoverState.ROUTED else None,
    )


def _audit(
    record: Record,
    verdict: Verdict,
    now: datetime,
    digest: str,
    header: EnvelopeHeader | None,
    *,
    reason: Reason | None = None,
    recipients: tuple[str, ...] | None = None,
    orphan: bool = False,
) -> AuditEntry:
    """The audit entry of a decision (header fields only when there is a header)."""
    return AuditEntry(
        verdict=verdict,
        reason=reason.value if reason else None,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        envelope_sha256=digest,
        message_id=str(header.message_id) if header else None,
        message_type=header.message_type.value if header else None,
        case_id=str(header.case_id) if header else None,
        sender=header.sender if header else None,
        recipients=recipients if recipients is not None else header.recipients if header else (),
        orphan=orphan,
        decided_at=now,
    )


def dead_letter_value(value: bytes, digest: str, max_bytes: int) -> tuple[bytes, bool]:
    """What the dead-letter record carries: the exact bytes when they fit in
    ``max_bytes``, else a truncated form that always fits — size, SHA-256 and the first
    :data:`DEAD_LETTER_HEAD` bytes (base64) as canonical JSON — so one oversized record
    can never make the partition's transaction fail for ever. Returns (value, truncated)."""
    if len(value) <= max_bytes:
        return value, False
    head = base64.b64encode(value[:DEAD_LETTER_HEAD]).decode("ascii")
    doc = {"truncated": True, "size": len(value), "sha256": digest, "head_base64": head}
    return canonical_json_of(doc), True


def _reject(
    record: Record,
    reason: Reason,
    *,
    now: datetime,
    names: TopicNames,
    digest: str,
    header: EnvelopeHeader | None,
    dead_letter_max: int,
) -> RoutingDecision:
    original = record.value or b""
    value, truncated = dead_letter_value(original, digest, dead_letter_max)
    dead = OutRecord(
        topic=names.dlq,
        # A compressed record can carry a key of many MiB: cut like the value, or the
        # dead letter would not fit and the partition's transaction fail for ever.
        key=record.key[:DEAD_LETTER_HEAD] if record.key is not None else None,
        value=value,
        headers=(
            ("crb-reason", reason.value.encode()),
            ("crb-source-topic", record.topic.encode()),
            ("crb-source-partition", str(record.partition).encode()),
            ("crb-source-offset", str(record.offset).encode()),
            ("crb-rejected-at", now.isoformat().encode()),
            *((("crb-message-id", str(header.message_id).encode()),) if header else ()),
            *(
                (("crb-truncated", b"1"), ("crb-original-size", str(len(original)).encode()))
                if truncated
                else ()
            ),
        ),
    )
    status: tuple[OutRecord, ...] = ()
    if header is not None and reason is not Reason.DUPLICATE_MESSAGE:
        # Only a header that verified is worth a status event: an unverified one
        # could name any message id and overwrite a real handover's status.
        dead_lettered = _event(header, HandoverState.DEAD_LETTERED, now, reason=reason)
        status = (_status_record(names, dead_lettered),)
    return RoutingDecision(
        verdict=Verdict.REJECTED,
        reason=reason,
        audit=_audit(record, Verdict.REJECTED, now, digest, header, reason=reason),
        dead_letter=dead,
        status=status,
        header=header,
    )


def decide(
    record: Record,
    *,
    now: datetime,
    directory: Directory,
    names: TopicNames,
    seen: Mapping[UUID, SeenMessage],
    limits: Limits,
    dead_letter_max: int = DEAD_LETTER_MAX,
    redelivery_min: timedelta = REDELIVERY_MIN,
) -> RoutingDecision:
    """Decide what happens to one outbox record (see the module docstring).
    ``dead_letter_max``: the largest dead letter kept as is (:func:`dead_letter_value`);
    ``redelivery_min``: the least time between two forwards of one message id."""
    value = record.value or b""
    # 1-8: keys.verify, which parses and hashes the envelope once.
    try:
        verified = verify(
            value,
            directory=directory,
            now=now,
            limits=limits,
            expected_sender=names.participant_of_outbox(record.topic) or "",
        )
    except EnvelopeError as exc:
        digest = hashlib.sha256(value).hexdigest()
        return _reject(
            record,
            exc.reason,
            now=now,
            names=names,
            digest=digest,
            header=None,
            dead_letter_max=dead_letter_max,
        )
    header = verified.header

    def reject(reason: Reason, header: EnvelopeHeader) -> RoutingDecision:
        return _reject(
            record,
            reason,
            now=now,
            names=names,
            digest=verified.digest,
            header=header,
            dead_letter_max=dead_letter_max,
        )

    # 9: duplicate message id — unless an authorised redelivery.
    previous = seen.get(header.message_id)
    if previous is not None and not redelivery_allowed(
        previous, header, verified.digest, now, redelivery_min
    ):
        return reject(Reason.DUPLICATE_MESSAGE, header)
    # 10: authorisation.
    if header.message_type in REPLY_MESSAGE_TYPES:
        original = seen.get(header.in_reply_to) if header.in_reply_to else None
        if original is None:
            return reject(Reason.UNKNOWN_ORIGINAL, header)
        if header.sender not in original.recipients or header.recipients != (original.sender,):
            return reject(Reason.UNAUTHORISED, header)
    elif not REFERRAL_SENDER_ROLES.intersection(verified.sender.roles):
        return reject(Reason.UNAUTHORISED, header)
    elif header.escalation_of is not None:
        # An escalation re-seals the sender's own earlier referral: it must be one
        # this router forwarded, from this sender.
        escalated = seen.get(header.escalation_of)
        if escalated is None:
            return reject(Reason.UNKNOWN_ORIGINAL, header)
        if escalated.sender != header.sender or escalated.message_type is not MessageType.REFERRAL:
            return reject(Reason.UNAUTHORISED, header)
    # 11-12: recomputed recipients equal the declared ones, all active.
    try:
        resolution = check_routing(header, directory)
    except RoutingError as exc:
        return reject(exc.reason, header)

    key = str(header.case_id).encode()
    meta = (
        ("crb-message-id", str(header.message_id).encode()),
        ("crb-sender", header.sender.encode()),
        ("crb-message-type", header.message_type.value.encode()),
    )
    forwards = tuple(
        OutRecord(topic=names.inbox(r), key=key, value=value, headers=meta)
        for r in resolution.recipients
    )
    events = _forward_events(
        header, resolution.recipients, resolution.orphan, seen, now, verified.digest
    )
    if previous is not None:  # a redelivery: the handovers go on, none is opened
        events = [
            e.model_copy(update={"state": HandoverState.REDELIVERED, "deconfliction": None,
                                 "escalation_of": None, "reason": None})
            for e in events
        ]  # fmt: skip
    audit = _audit(
        record,
        Verdict.FORWARDED,
        now,
        verified.digest,
        header,
        recipients=resolution.recipients,
        orphan=resolution.orphan,
    )
    return RoutingDecision(
        verdict=Verdict.FORWARDED,
        reason=None,
        audit=audit,
        forwards=forwards,
        status=tuple(_status_record(names, e) for e in events),
        header=header,
        remember=(
            header.message_id,
            SeenMessage(
                sender=header.sender,
                recipients=resolution.recipients,
                message_type=header.message_type,
                forwarded_at=now,
                digests=(*(previous.digests if previous else ()), verified.digest),
            ),
        ),
    )


def redelivery_allowed(
    previous: SeenMessage, header: EnvelopeHeader, digest: str, now: datetime, least: timedelta
) -> bool:
    """Whether a verified envelope under an id already forwarded is an *authorised
    redelivery*: a referral the same sender sealed again — other bytes (a fresh
    signature, so only the sender can make one; the same bytes are a replay or a
    crash-resend and never go twice), at least ``least`` after the last forward,
    and no more than :data:`MAX_FORWARDS` forwards in all. Everything else under a
    known id is a duplicate."""
    return (
        header.message_type is MessageType.REFERRAL
        and previous.message_type is MessageType.REFERRAL
        and previous.sender == header.sender
        and digest not in previous.digests
        and len(previous.digests) < MAX_FORWARDS
        and now - previous.forwarded_at >= least
    )


def _forward_events(
    header: EnvelopeHeader,
    recipients: tuple[str, ...],
    orphan: bool,
    seen: Mapping[UUID, SeenMessage],
    now: datetime,
    digest: str,
) -> list[StatusEvent]:
    """Status events for a forward. A referral opens one handover per recipient
    (``routed``); a reply moves the *original* handover of its sender on: a receipt
    to ``received``, a case acknowledgement to the decision its signed header names.
    Replies are not tracked as handovers of their own."""
    if header.message_type is MessageType.REFERRAL:
        reason = Reason.ORPHAN if orphan else None
        return [
            _event(
                header,
                HandoverState.ROUTED,
                now,
                handover=(header.message_id, header.sender, r),
                reason=reason,
            )
            for r in recipients
        ]
    original = seen.get(header.in_reply_to) if header.in_reply_to else None
    state = _REPLY_STATES.get(header.message_type)
    if header.decision is not None:
        state = HandoverState(header.decision.value)
    if original is None or state is None or header.in_reply_to is None:
        return []
    event = _event(
        header, state, now, handover=(header.in_reply_to, original.sender, header.sender)
    )
    return [event.model_copy(update={"reply_id": header.message_id, "reply_sha256": digest})]


_REPLY_STATES = {MessageType.RECEIPT: HandoverState.RECEIVED}
