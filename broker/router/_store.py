"""The router's local snapshot: its memory on disk, so a restart reads only the tail.

The audit topic stays the truth; this SQLite file is a checkpoint of what the
router learnt from it, so that neither start-up time nor memory grows with
history:

- ``seen``: the messages forwarded within the reply window, by id (lookups go to
  disk through SQLite's page cache — resident memory stays bounded whatever the
  traffic; expired ones are deleted through an index on the forwarding time);
- ``heads``: the last audit record of each chain (one per input partition);
- ``positions``: how far the audit topic had been read when ``heads`` and
  ``seen`` were saved — every audit record below them is in the snapshot.

Writes: forwarded messages are added after each committed transaction (ahead of
the saved positions: re-reading them later is harmless, taking a record is
idempotent); heads and positions are saved together, in one SQLite transaction,
at each checkpoint, after the audit topic was read to its end. WAL with
``synchronous=NORMAL``: a crash may lose the last checkpoint but never leaves
half of one, and whatever was lost lies above the saved positions, where the
restarted router reads anyway.

Start-up: if the snapshot belongs to this audit topic and its positions are still
inside the topic (not recreated, not deleted past them), the router loads the
heads and reads the audit topic from the positions on; otherwise it empties the
snapshot and reads from the beginning (a new machine, a lost file: correct, only
slower). The file is the router's own, on its own disk, like its service key; it
is not re-verified record by record (the tail read from Kafka is).

One router process per file: an exclusive lock (``flock``) is held while it runs;
a second router pointed at the same file runs without a snapshot and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from uuid import UUID

from broker.audit import AuditRecord
from broker.router._core import SeenMessage
from broker.router._memory import SeenStore
from schemas import MessageType

__all__ = ["RouterSnapshot", "SqliteSeen"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA_VERSION = "2"
"""Bumped when the tables change: a snapshot of another version is emptied and
rebuilt from the audit topic (it is a cache of it)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    message_id BLOB PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    message_type TEXT NOT NULL,
    forwarded_us INTEGER NOT NULL,
    digests TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (forwarded_us);
CREATE TABLE IF NOT EXISTS heads (chain TEXT PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
"""


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class SqliteSeen(SeenStore):
    """Forwarded messages in the snapshot's ``seen`` table (thread-safe: the router
    decides batches in worker threads)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def _lookup(self, key: object) -> SeenMessage | None:
        if not isinstance(key, UUID):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT sender, recipients, message_type, forwarded_us, digests FROM seen"
                " WHERE message_id = ?",
                (key.bytes,),
            ).fetchone()
        if row is None:
            return None
        sender, recipients, message_type, forwarded_us, digests = row
        return SeenMessage(
            sender=sender,
            recipients=tuple(json.loads(recipients)),
            message_type=MessageType(message_type),
            forwarded_at=_at(forwarded_us),
            digests=tuple(json.loads(digests)),
        )

    def __getitem__(self, key: UUID) -> SeenMessage:
        found = self._lookup(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, UUID):
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM seen WHERE message_id = ?", (key.bytes,))
            return row.fetchone() is not None

    def __iter__(self) -> Iterator[UUID]:
        with self._lock:
            ids = [UUID(bytes=r[0]) for r in self._db.execute("SELECT message_id FROM seen")]
        return iter(ids)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM seen").fetchone()
        return int(count)

    def put(self, items: Sequence[tuple[UUID, SeenMessage]]) -> None:
        rows = [
            (
                message_id.bytes,
                seen.sender,
                json.dumps(list(seen.recipients)),
                seen.message_type.value,
                _us(seen.forwarded_at),
                json.dumps(list(seen.digests)),
            )
            for message_id, seen in items
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, ?, ?)", rows)

    def forget_before(self, cutoff: datetime) -> int:
        with self._lock, self._db:
            cursor = self._db.execute("DELETE FROM seen WHERE forwarded_us < ?", (_us(cutoff),))
            return cursor.rowcount


class RouterSnapshot:
    """One router's snapshot file (see the module docstring). Use :meth:`open`."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock_file: IO[bytes]) -> None:
        self.path = path
        self._db = db
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self.seen = SqliteSeen(db, self._lock)

    @classmethod
    def open(cls, path: Path, audit_topic: str, *, cache_mib: int = 32) -> RouterSnapshot | None:
        """Open (or create) the snapshot at ``path`` for ``audit_topic``; ``None``
        when another router process holds it. A snapshot of another audit topic is
        emptied. ``cache_mib``: SQLite's page cache, at most (resident memory for the
        forwarded messages stays below it, whatever their number)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            return None
        db = sqlite3.connect(path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")  # KiB when negative
        version = None
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = row[0] if row else None
        if version != SCHEMA_VERSION:
            # Another layout: a cache of the audit topic, so rebuilt from it.
            db.executescript(
                "DROP TABLE IF EXISTS seen; DROP TABLE IF EXISTS heads;"
                " DROP TABLE IF EXISTS positions; DROP TABLE IF EXISTS meta;"
            )
        db.executescript(_SCHEMA)
        with db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        os.chmod(path, 0o600)
        snapshot = cls(path, db, lock_file)
        row = db.execute("SELECT value FROM meta WHERE key = 'audit_topic'").fetchone()
        if row is None or row[0] != audit_topic:
            snapshot.reset(audit_topic)
        return snapshot

    def reset(self, audit_topic: str) -> None:
        """Empty the snapshot (the next start reads the audit topic from its beginning)."""
        with self._lock, self._db:
            for table in ("seen", "heads", "positions", "meta"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("INSERT INTO meta VALUES ('audit_topic', ?)", (audit_topic,))
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def load(self) -> tuple[dict[str, AuditRecord], dict[int, int] | None]:
        """The saved chain heads, and the audit positions they are complete up to
        (``None`` if no checkpoint was ever saved)."""
        with self._lock:
            heads = {
                chain: AuditRecord.model_validate_json(record)
                for chain, record in self._db.execute("SELECT chain, record FROM heads")
            }
            positions = dict(self._db.execute("SELECT partition, next FROM positions").fetchall())
        return heads, (positions or None)

    def checkpoint(self, heads: dict[str, AuditRecord], positions: dict[int, int]) -> None:
        """Save the heads and the audit positions they are complete up to, together."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO heads VALUES (?, ?)",
                [(chain, record.to_bytes()) for chain, record in heads.items()],
            )
            self._db.execute("DELETE FROM positions")
            self._db.executemany("INSERT INTO positions VALUES (?, ?)", list(positions.items()))

    def size_bytes(self) -> int:
        """The snapshot's size on disk (database and write-ahead log)."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()  # releases the flock
