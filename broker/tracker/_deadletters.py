"""Dead letters as operators see them, and whether one may be redriven — pure.

The router writes every refused record to ``<prefix>.dlq`` with its original bytes
(or, when too large, a truncated form) and headers naming the reason and where it
came from (``broker.router._core``). The tracker follows that topic and keeps one
:class:`DeadLetter` row per record: the headers, the size and SHA-256 of what is
kept, and the envelope's clear header fields when they parse — never the payload.

Redrive puts the original bytes back into the outbox they came from, so that the
router decides them again with what it knows now (a participant added, a key now
valid, the original of a reply forwarded at last). :func:`redrive_refusal` says
when that can never succeed — a reason outside ``schemas.REDRIVE_REASONS`` (bad
signature, another participant's outbox, a duplicate, too old, malformed), bytes
not kept (truncated), no outbox to return to — or was already done. The router
checks everything again either way: a redrive grants nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from adapters.kafka import Record
from keys import EnvelopeError, parse
from schemas import REDRIVE_REASONS, Reason, TopicNames

__all__ = ["DeadLetter", "RedriveError", "dead_letter_of", "redrive_refusal"]


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic (header fields only)."""

    partition: int
    offset: int
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    rejected_at: datetime | None
    sender: str | None
    """The participant whose outbox the record came from."""
    size: int
    """Bytes of the original record."""
    sha256: str
    """Of the bytes kept on the dead-letter topic."""
    truncated: bool
    message_id: str | None = None
    message_type: str | None = None
    case_id: str | None = None
    jurisdiction: str | None = None
    priority: str | None = None
    recipients: tuple[str, ...] = ()
    redriven_at: datetime | None = None
    redriven_by: str | None = None
    """The token id of the operator who asked."""
    redrive_offset: int | None = None
    """Where the redriven bytes landed in the outbox."""

    @property
    def where(self) -> str:
        return f"{self.partition}/{self.offset}"


class RedriveError(Exception):
    """A redrive refused (``status``: 404 no such dead letter, 409 can never
    succeed or already done) or failed (503: Kafka)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _int(value: bytes | None) -> int | None:
    try:
        return int(value.decode()) if value is not None else None
    except ValueError:
        return None


def _instant(value: bytes | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.decode()) if value is not None else None
    except ValueError:
        return None


def dead_letter_of(record: Record, names: TopicNames) -> DeadLetter:
    """What the dead-letter record says about itself (never raises: a record the
    router did not write still shows, with what could be read)."""
    value = record.value or b""
    source = record.header("crb-source-topic")
    source_topic = source.decode("utf-8", "replace") if source is not None else None
    truncated = record.header("crb-truncated") == b"1"
    size = _int(record.header("crb-original-size")) if truncated else len(value)
    fields: dict[str, object] = {}
    if not truncated:
        try:
            header = parse(value).header
        except EnvelopeError:
            pass
        else:
            fields = {
                "message_id": str(header.message_id),
                "message_type": header.message_type.value,
                "case_id": str(header.case_id),
                "jurisdiction": header.jurisdiction,
                "priority": header.priority.value,
                "recipients": tuple(header.recipients),
            }
    message_id = record.header("crb-message-id")
    if "message_id" not in fields and message_id is not None:
        fields["message_id"] = message_id.decode("utf-8", "replace")
    reason = record.header("crb-reason")
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        reason=reason.decode("utf-8", "replace") if reason is not None else "unknown",
        source_topic=source_topic,
        source_partition=_int(record.header("crb-source-partition")),
        source_offset=_int(record.header("crb-source-offset")),
        rejected_at=_instant(record.header("crb-rejected-at")),
        sender=names.participant_of_outbox(source_topic) if source_topic else None,
        size=size if size is not None else len(value),
        sha256=hashlib.sha256(value).hexdigest(),
        truncated=truncated,
        **fields,  # type: ignore[arg-type]
    )


def redrive_refusal(dead: DeadLetter) -> str | None:
    """Why ``dead`` must not be redriven, or ``None`` if it may be."""
    if dead.redriven_at is not None:
        return f"already redriven at {dead.redriven_at.isoformat()} by {dead.redriven_by}"
    if dead.truncated:
        return "only a truncated form was kept: the original bytes are gone"
    if dead.sender is None or dead.source_topic is None:
        return "no participant's outbox to return it to"
    try:
        reason = Reason(dead.reason)
    except ValueError:
        return f"unknown reason {dead.reason!r}"
    if reason not in REDRIVE_REASONS:
        return f"{reason.value} can never succeed with the same bytes"
    return None
