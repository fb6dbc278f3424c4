"""An adapter's durable local state, in one folder (``$CRB_HOME/adapters/<participant>``).

::

    state/
      adapter.sqlite3     delivered messages (dedupe + the facts needed to answer them);
                          referrals sent and not yet answered by every recipient, each
                          as a copy sealed to the adapter's own key (escalation)
      quarantine/         envelopes that could not be opened or delivered, one pair
                          per record: <topic>-<partition>-<offset>.crbe (exact bytes)
                          and .json (reason code, detail, claimed id, digest, time)

The store is SQLite in WAL mode with ``synchronous=FULL``: a row is on disk when
the call returns, so "recorded as delivered" survives a crash or power loss. A
message id is delivered once: the receiver records it right after the local
system took it and before the receipt and the Kafka commit; a redelivered record
whose id (and envelope digest) is known is not delivered again.

The store keeps clear header facts (who, case id, jurisdiction, category,
priority, handling code, digest) and one thing from payloads: the **case
references** people use — the reporter's reference of a referral sent or received,
the reference an agency accepted a case under — so that ``crb status REF --as P``
finds the case. References never travel in clear: each participant indexes only
what it sent or could open. Never key material.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from adapters._errors import StateError
from adapters._model import ReceivedMessage
from keys import atomic_write
from schemas import Category, HandlingCode, MessageType, Priority, Reason

__all__ = [
    "Delivered",
    "IdempotentSend",
    "PendingReferral",
    "RefEntry",
    "RefKind",
    "ReferenceIndex",
    "StateStore",
]


@dataclass(frozen=True, slots=True)
class IdempotentSend:
    """An intake request's sealed envelope, and its answer once sent."""

    request_sha256: str
    message_id: UUID
    case_id: UUID
    envelope: bytes
    response: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PendingReferral:
    """A referral this adapter sent that not every recipient has answered yet: its
    facts and a copy sealed to the sender's own key (``keys.seal_for_self``)."""

    message_id: UUID
    case_id: UUID
    jurisdiction: str
    priority: Priority
    recipients: tuple[str, ...]
    copy: bytes
    sealed_at: datetime
    answered: tuple[str, ...] = ()
    sent_at: datetime | None = None
    escalated_to: str | None = None
    escalation_id: UUID | None = None
    attempts: int = 0
    """Redeliveries sent so far."""
    last_sent_at: datetime | None = None
    """When it was last sent again (``None``: only the first time, ``sent_at``)."""

    def redelivery_due(self, now: datetime, after: timedelta, max_attempts: int) -> bool:
        """Sent, not escalated, and unanswered for ``after`` (doubled per attempt)."""
        last = self.last_sent_at or self.sent_at
        if last is None or self.escalated_to is not None or self.attempts >= max_attempts:
            return False
        return bool(now - last >= after * (2**self.attempts))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    message_id      TEXT PRIMARY KEY,
    message_type    TEXT NOT NULL,
    sender          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    jurisdiction    TEXT NOT NULL,
    category        TEXT NOT NULL,
    priority        TEXT NOT NULL,
    handling_code   TEXT NOT NULL,
    envelope_sha256 TEXT NOT NULL,
    in_reply_to     TEXT,
    delivered_at    TEXT NOT NULL,
    receipt_id      TEXT,
    receipt_sent_at TEXT,
    receipt_note    TEXT,
    delete_after    TEXT,
    purged_at       TEXT
)
"""
_REFS = """
CREATE TABLE IF NOT EXISTS refs (
    reference       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    PRIMARY KEY (reference, kind, message_id)
)
"""
_PENDING = """
CREATE TABLE IF NOT EXISTS pending (
    message_id      TEXT PRIMARY KEY,
    case_id         TEXT NOT NULL,
    jurisdiction    TEXT NOT NULL,
    priority        TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    answered        TEXT NOT NULL DEFAULT '[]',
    copy            BLOB NOT NULL,
    sealed_at       TEXT NOT NULL,
    sent_at         TEXT,
    escalated_to    TEXT,
    escalation_id   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_sent_at    TEXT
)
"""
_IDEMPOTENCY = """
CREATE TABLE IF NOT EXISTS idempotency (
    client          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    envelope        BLOB NOT NULL,
    response        TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (client, key)
)
"""
_SELECT_PENDING = (
    "SELECT message_id, case_id, jurisdiction, priority, recipients, answered, copy,"
    " sealed_at, sent_at, escalated_to, escalation_id, attempts, last_sent_at FROM pending"
)
_PENDING_MIGRATIONS = {
    "attempts": "ALTER TABLE pending ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "last_sent_at": "ALTER TABLE pending ADD COLUMN last_sent_at TEXT",
}
_MIGRATIONS = {
    "receipt_note": "ALTER TABLE delivered ADD COLUMN receipt_note TEXT",
    "delete_after": "ALTER TABLE delivered ADD COLUMN delete_after TEXT",
    "purged_at": "ALTER TABLE delivered ADD COLUMN purged_at TEXT",
}


class RefKind(enum.StrEnum):
    """Whose reference an index entry is."""

    OWN = "own"
    """This participant's: as the reporter of a referral it sent, or the reference
    it accepted a case under."""
    SENDER = "sender"
    """The referring participant's, from a referral received."""
    RECEIVER = "receiver"
    """The receiving agency's, from its acceptance of our referral."""


@dataclass(frozen=True, slots=True)
class RefEntry:
    reference: str
    kind: RefKind
    message_id: UUID
    case_id: UUID


class ReferenceIndex(Protocol):
    """Where case references are recorded (:class:`StateStore`)."""

    def record_reference(
        self, reference: str, kind: RefKind, message_id: UUID, case_id: UUID
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivered:
    message: ReceivedMessage
    delivered_at: datetime
    receipt_id: UUID | None
    receipt_sent_at: datetime | None
    receipt_note: str | None = None
    """Why no receipt was sent (``sender_revoked``), if none will be."""

    @property
    def receipt_done(self) -> bool:
        """Sent, or recorded as impossible: nothing more to do for the receipt."""
        return self.receipt_sent_at is not None or self.receipt_note is not None


def _pending_of(row: tuple[Any, ...]) -> PendingReferral:
    """A row of :data:`_SELECT_PENDING`."""
    return PendingReferral(
        message_id=UUID(row[0]),
        case_id=UUID(row[1]),
        jurisdiction=row[2],
        priority=Priority(row[3]),
        recipients=tuple(json.loads(row[4])),
        answered=tuple(json.loads(row[5])),
        copy=bytes(row[6]),
        sealed_at=datetime.fromisoformat(row[7]),
        sent_at=datetime.fromisoformat(row[8]) if row[8] else None,
        escalated_to=row[9],
        escalation_id=UUID(row[10]) if row[10] else None,
        attempts=int(row[11]),
        last_sent_at=datetime.fromisoformat(row[12]) if row[12] else None,
    )


class StateStore:
    """The delivered-message store and the quarantine folder of one adapter."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.quarantine_dir = folder / "quarantine"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
            # Calls are serialised by the one adapter using the store; the drop folder
            # makes them from a worker thread (asyncio.to_thread).
            self._db = sqlite3.connect(
                folder / "adapter.sqlite3", isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            self._db.execute(_REFS)
            self._db.execute(_PENDING)
            self._db.execute(_IDEMPOTENCY)
            have_pending = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
            for column, ddl in _PENDING_MIGRATIONS.items():
                if column not in have_pending:
                    self._db.execute(ddl)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(delivered)")}
            for column, ddl in _MIGRATIONS.items():
                if column not in have:
                    self._db.execute(ddl)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"{folder}: cannot use the adapter state: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes inside into one transaction: one durable write barrier
        (``synchronous=FULL``) for a whole batch instead of one per statement.
        Everything or nothing is recorded."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- case references -------------------------------------------------------------

    def record_reference(
        self, reference: str, kind: RefKind, message_id: UUID, case_id: UUID
    ) -> None:
        """Index ``reference`` (idempotent)."""
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?)",
                (reference, kind.value, str(message_id), str(case_id)),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def sent_referral(self, message_id: UUID) -> RefEntry | None:
        """The own reference indexed for a referral this adapter sent, if any."""
        try:
            row = self._db.execute(
                "SELECT reference, kind, message_id, case_id FROM refs"
                " WHERE message_id = ? AND kind = ?",
                (str(message_id), RefKind.OWN.value),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        if row is None:
            return None
        return RefEntry(row[0], RefKind(row[1]), UUID(row[2]), UUID(row[3]))

    def find_reference(self, reference: str) -> list[RefEntry]:
        """Every indexed use of ``reference`` (exact match, case-sensitive)."""
        try:
            rows = self._db.execute(
                "SELECT reference, kind, message_id, case_id FROM refs WHERE reference = ? "
                "ORDER BY message_id",
                (reference,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        return [RefEntry(r, RefKind(k), UUID(m), UUID(c)) for r, k, m, c in rows]

    # -- delivered messages ----------------------------------------------------------

    def get(self, message_id: UUID) -> Delivered | None:
        try:
            row = self._db.execute(
                "SELECT * FROM delivered WHERE message_id = ?", (str(message_id),)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        if row is None:
            return None
        (mid, mtype, sender, recipient, case_id, jur, cat, prio, hcode, digest, reply) = row[:11]
        delivered_at, receipt_id, receipt_at, receipt_note = row[11:15]
        return Delivered(
            message=ReceivedMessage(
                message_id=UUID(mid),
                message_type=MessageType(mtype),
                sender=sender,
                recipient=recipient,
                case_id=UUID(case_id),
                jurisdiction=jur,
                category=Category(cat),
                priority=Priority(prio),
                handling_code=HandlingCode(hcode),
                envelope_sha256=digest,
                in_reply_to=UUID(reply) if reply else None,
            ),
            delivered_at=datetime.fromisoformat(delivered_at),
            receipt_id=UUID(receipt_id) if receipt_id else None,
            receipt_sent_at=datetime.fromisoformat(receipt_at) if receipt_at else None,
            receipt_note=receipt_note,
        )

    def received(self, message_id: UUID) -> ReceivedMessage:
        """The record of a delivered message (to answer it); ``StateError`` if unknown."""
        found = self.get(message_id)
        if found is None:
            raise StateError(f"no delivered message {message_id} in {self.folder}")
        return found.message

    def record_delivered(
        self, m: ReceivedMessage, *, at: datetime, delete_after: date | None = None
    ) -> None:
        """Record a delivery; ``delete_after``: the date the referral's sender set,
        after which its content and references are purged (:meth:`expired`)."""
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO delivered (message_id, message_type, sender, recipient,"
                " case_id, jurisdiction, category, priority, handling_code, envelope_sha256,"
                " in_reply_to, delivered_at, delete_after) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    str(m.message_id),
                    m.message_type.value,
                    m.sender,
                    m.recipient,
                    str(m.case_id),
                    m.jurisdiction,
                    m.category.value,
                    m.priority.value,
                    m.handling_code.value,
                    m.envelope_sha256,
                    str(m.in_reply_to) if m.in_reply_to else None,
                    at.astimezone(UTC).isoformat(),
                    delete_after.isoformat() if delete_after else None,
                ),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot record a delivery: {exc}") from exc

    def expired(self, today: date) -> list[UUID]:
        """Messages whose ``delete_after`` has passed (before ``today``) and whose
        content was not purged yet."""
        try:
            rows = self._db.execute(
                "SELECT message_id FROM delivered WHERE delete_after IS NOT NULL"
                " AND delete_after < ? AND purged_at IS NULL ORDER BY delete_after",
                (today.isoformat(),),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        return [UUID(r[0]) for r in rows]

    def mark_purged(self, message_ids: list[UUID], *, at: datetime) -> None:
        """Forget what the messages said (their case references); keep the bare
        delivery record — ids and digest, no content — so a redelivery is still a
        duplicate and never delivered again."""
        ids = [(str(m),) for m in message_ids]
        try:
            with self.transaction():
                self._db.executemany("DELETE FROM refs WHERE message_id = ?", ids)
                self._db.executemany(
                    "UPDATE delivered SET purged_at = ? WHERE message_id = ?",
                    [(at.astimezone(UTC).isoformat(), m) for (m,) in ids],
                )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def forget_records(self, before: datetime) -> int:
        """Delete delivery records older than ``before`` that hold nothing but ids:
        a referral's whose content was purged, a receipt's or case decision's (they
        carry no case content) — once their receipt is done. Returns how many."""
        cutoff = before.astimezone(UTC).isoformat()
        args = (cutoff, MessageType.REFERRAL.value, MessageType.REFERRAL.value)
        try:
            with self.transaction():
                self._db.execute(
                    "DELETE FROM refs WHERE message_id IN (SELECT message_id FROM delivered"
                    " WHERE delivered_at < ? AND (receipt_sent_at IS NOT NULL OR receipt_note"
                    " IS NOT NULL OR message_type != ?) AND (purged_at IS NOT NULL OR"
                    " message_type != ?))",
                    args,
                )
                cur = self._db.execute(
                    "DELETE FROM delivered WHERE delivered_at < ? AND (receipt_sent_at IS NOT"
                    " NULL OR receipt_note IS NOT NULL OR message_type != ?) AND (purged_at IS"
                    " NOT NULL OR message_type != ?)",
                    args,
                )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc
        return int(cur.rowcount)

    def mark_receipt_sent(self, message_id: UUID, receipt_id: UUID, *, at: datetime) -> None:
        try:
            self._db.execute(
                "UPDATE delivered SET receipt_id = ?, receipt_sent_at = ? WHERE message_id = ?",
                (str(receipt_id), at.astimezone(UTC).isoformat(), str(message_id)),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot record a receipt: {exc}") from exc

    def mark_receipt_unanswerable(self, message_id: UUID, reason: Reason, *, at: datetime) -> None:
        """Record that no receipt will be sent for ``message_id``, and why."""
        note = f"{reason.value} at {at.astimezone(UTC).isoformat()}"
        try:
            self._db.execute(
                "UPDATE delivered SET receipt_note = ? WHERE message_id = ?",
                (note, str(message_id)),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot record a receipt: {exc}") from exc

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM delivered").fetchone()[0])

    def delivered_list(self, *, limit: int, before: str | None = None) -> list[Delivered]:
        """Delivered messages, newest first (``before``: a ``delivered_at`` to page on)."""
        try:
            rows = self._db.execute(
                "SELECT message_id FROM delivered WHERE (? IS NULL OR delivered_at < ?)"
                " ORDER BY delivered_at DESC LIMIT ?",
                (before, before, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        found = [self.get(UUID(r[0])) for r in rows]
        return [d for d in found if d is not None]

    # -- referrals sent and not yet answered (sender side) -------------------------------

    def keep_pending(self, p: PendingReferral) -> None:
        """Keep a sealed-for-self copy of a referral until every recipient answers."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO pending (message_id, case_id, jurisdiction, priority,"
                " recipients, copy, sealed_at) VALUES (?,?,?,?,?,?,?)",
                (
                    str(p.message_id),
                    str(p.case_id),
                    p.jurisdiction,
                    p.priority.value,
                    json.dumps(sorted(p.recipients)),
                    p.copy,
                    p.sealed_at.astimezone(UTC).isoformat(),
                ),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot keep a pending referral: {exc}") from exc

    def pending(self, message_id: UUID) -> PendingReferral | None:
        try:
            row = self._db.execute(
                _SELECT_PENDING + " WHERE message_id = ?",
                (str(message_id),),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        return None if row is None else _pending_of(row)

    def unanswered(self) -> list[PendingReferral]:
        """Every referral sent and not yet receipted by all its recipients."""
        try:
            rows = self._db.execute(_SELECT_PENDING + " WHERE sent_at IS NOT NULL").fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        return [_pending_of(r) for r in rows]

    def mark_redelivered(self, message_id: UUID, *, at: datetime) -> None:
        self._update_pending(
            message_id, "attempts = attempts + 1, last_sent_at = ?", at.astimezone(UTC).isoformat()
        )

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def mark_pending_sent(self, message_id: UUID, *, at: datetime) -> None:
        self._update_pending(message_id, "sent_at = ?", at.astimezone(UTC).isoformat())

    def mark_escalated(self, message_id: UUID, to: str, escalation_id: UUID) -> None:
        self._update_pending(
            message_id, "escalated_to = ?, escalation_id = ?", to, str(escalation_id)
        )

    def mark_answered(self, message_id: UUID, recipient: str) -> None:
        """``recipient`` receipted ``message_id``; once every recipient has, the kept
        copy is deleted."""
        p = self.pending(message_id)
        if p is None or recipient in p.answered:
            return
        answered = sorted({*p.answered, recipient})
        try:
            if set(answered) >= set(p.recipients):
                self._db.execute("DELETE FROM pending WHERE message_id = ?", (str(message_id),))
            else:
                self._update_pending(message_id, "answered = ?", json.dumps(answered))
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def forget_pending(self, before: datetime) -> int:
        """Delete kept copies sealed before ``before`` (unanswered for too long)."""
        try:
            cur = self._db.execute(
                "DELETE FROM pending WHERE sealed_at < ?", (before.astimezone(UTC).isoformat(),)
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc
        return int(cur.rowcount)

    # -- idempotent intake (the HTTP intake API) ----------------------------------------

    def idempotent(self, client: str, key: str) -> IdempotentSend | None:
        """What a request with this client's ``Idempotency-Key`` sealed (and, once
        Kafka acknowledged it, answered) before — across restarts."""
        try:
            row = self._db.execute(
                "SELECT request_sha256, message_id, case_id, envelope, response FROM"
                " idempotency WHERE client = ? AND key = ?",
                (client, key),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the adapter state: {exc}") from exc
        if row is None:
            return None
        return IdempotentSend(
            request_sha256=row[0],
            message_id=UUID(row[1]),
            case_id=UUID(row[2]),
            envelope=bytes(row[3]),
            response=json.loads(row[4]) if row[4] else None,
        )

    def record_sealed(
        self, client: str, key: str, request_sha256: str, sealed: IdempotentSend, *, at: datetime
    ) -> None:
        """Durably note the envelope sealed for an idempotent request, before sending."""
        try:
            self._db.execute(
                "INSERT INTO idempotency (client, key, request_sha256, message_id, case_id,"
                " envelope, created_at) VALUES (?,?,?,?,?,?,?)",
                (client, key, request_sha256, str(sealed.message_id), str(sealed.case_id),
                 sealed.envelope, at.astimezone(UTC).isoformat()),
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def record_answer(self, client: str, key: str, response: dict[str, Any]) -> None:
        try:
            self._db.execute(
                "UPDATE idempotency SET response = ? WHERE client = ? AND key = ?",
                (json.dumps(response), client, key),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    def forget_idempotency(self, before: datetime) -> int:
        try:
            cur = self._db.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                (before.astimezone(UTC).isoformat(),),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc
        return int(cur.rowcount)

    def _update_pending(self, message_id: UUID, assignments: str, *values: object) -> None:
        try:
            self._db.execute(
                f"UPDATE pending SET {assignments} WHERE message_id = ?",  # noqa: S608
                (*values, str(message_id)),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot write the adapter state: {exc}") from exc

    # -- quarantine ---------------------------------------------------------------------

    def quarantine(
        self,
        envelope: bytes,
        *,
        reason: Reason,
        detail: str | None = None,
        topic: str,
        partition: int,
        offset: int,
        digest: str,
        claimed_message_id: UUID | None,
        at: datetime,
    ) -> Path:
        """Keep the exact bytes and why they were refused; returns the note's path."""
        stem = f"{topic}-{partition}-{offset}"
        atomic_write(self.quarantine_dir / f"{stem}.crbe", envelope)
        note = {
            "reason": reason.value,
            "detail": detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "envelope_sha256": digest,
            "claimed_message_id": str(claimed_message_id) if claimed_message_id else None,
            "quarantined_at": at.astimezone(UTC).isoformat(),
        }
        path = self.quarantine_dir / f"{stem}.json"
        atomic_write(path, json.dumps(note, indent=2).encode() + b"\n")
        return path

    def quarantined(self) -> list[dict[str, object]]:
        out = []
        for p in sorted(self.quarantine_dir.glob("*.json")):
            out.append(json.loads(p.read_bytes()))
        return out
