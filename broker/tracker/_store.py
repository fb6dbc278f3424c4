"""The tracker's local snapshot: its handovers on disk, so a restart reads only the tail.

The compacted tracker topic stays the truth; this SQLite file holds the same
handovers, indexed, plus how far into the tracker topic it is complete
(``positions``). A restart reads the topic only from there (normally nothing, or
the last transaction); memory holds only the timers of handovers still waiting
for a receipt, whatever the history. With no path the database is in memory and
the tracker reads the whole topic at start, as a fresh machine must.

Writes happen after each committed Kafka transaction: the changed handovers,
then the positions just past what that transaction wrote. A crash between the
two only leaves the positions behind, and re-reading records is idempotent (a
handover is replaced by its newer version). WAL, ``synchronous=NORMAL``.

The file is the tracker's own, on its own disk, like its service key; records read
from the topic are verified (tracker signature) before they go in, the file's
rows are not verified again. The policy (SLA settings, escalation recipient) is
recorded: if it changed, the deadlines of waiting handovers are derived again.
One tracker process per file (``flock``); a second one pointed at it gets none.

Queries (:meth:`SqliteHandovers.matching`) filter on indexed columns — case,
message, participant, state, jurisdiction, overdue — and parse only what matches.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from broker.tracker._machine import Handover, HandoverStore
from schemas import HandoverState

__all__ = ["SqliteHandovers"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handovers (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT,
    escalated_to TEXT,
    state TEXT NOT NULL,
    jurisdiction TEXT,
    overdue INTEGER NOT NULL,
    due_us INTEGER,
    doc BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_case ON handovers (case_id);
CREATE INDEX IF NOT EXISTS by_message ON handovers (message_id);
CREATE INDEX IF NOT EXISTS by_sender ON handovers (sender);
CREATE INDEX IF NOT EXISTS by_recipient ON handovers (recipient);
CREATE INDEX IF NOT EXISTS by_escalated_to ON handovers (escalated_to);
CREATE INDEX IF NOT EXISTS by_state ON handovers (state);
CREATE INDEX IF NOT EXISTS waiting ON handovers (due_us) WHERE due_us IS NOT NULL;
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
"""


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _row(h: Handover) -> tuple[Any, ...]:
    return (
        h.key,
        str(h.message_id),
        str(h.case_id),
        h.sender,
        h.recipient,
        h.escalated_to,
        h.state.value,
        h.jurisdiction,
        int(h.overdue),
        _us(h.due_at) if h.due_at is not None else None,
        h.model_dump_json().encode(),
    )


class SqliteHandovers(HandoverStore):
    """The tracker's handovers in SQLite (a file, or memory when ``path`` is None).
    Use :meth:`open`; thread-safe (the HTTP API reads while the tracker writes)."""

    def __init__(self, db: sqlite3.Connection, path: Path | None, lock_file: IO[bytes] | None):
        self._db = db
        self.path = path
        self._lock_file = lock_file
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | None, topic: str, policy: str) -> SqliteHandovers | None:
        """Open (or create) the snapshot for tracker topic ``topic``; ``None`` when
        another tracker process holds the file. A snapshot of another topic is
        emptied; one made under another ``policy`` keeps its handovers but
        :meth:`policy_changed` says so."""
        lock_file: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                return None
        db = sqlite3.connect(":memory:" if path is None else path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache, at most
        db.executescript(_SCHEMA)
        if path is not None:
            path.chmod(0o600)
        store = cls(db, path, lock_file)
        if store._meta("topic") != topic:
            store.reset(topic)
        store._policy_changed = store._meta("policy") != policy
        with store._lock, db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('policy', ?)", (policy,))
        return store

    _policy_changed = False

    def policy_changed(self) -> bool:
        """Whether the snapshot was made under another policy (deadlines to redo)."""
        return self._policy_changed

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def reset(self, topic: str) -> None:
        """Empty the snapshot (the next start reads the topic from its beginning)."""
        with self._lock, self._db:
            for table in ("handovers", "positions", "meta"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            self._db.execute("INSERT INTO meta VALUES ('topic', ?)", (topic,))

    def positions(self) -> dict[int, int] | None:
        """How far into the tracker topic the snapshot is complete (None: never saved)."""
        with self._lock:
            rows = self._db.execute("SELECT partition, next FROM positions").fetchall()
        return dict(rows) or None

    def save_positions(self, positions: dict[int, int]) -> None:
        """Record how far the snapshot is complete (merged into what was saved)."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO positions VALUES (?, ?)", list(positions.items())
            )

    # -- HandoverStore ----------------------------------------------------------------
    def put(self, handovers: Sequence[Handover]) -> None:
        rows = [_row(h) for h in handovers]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO handovers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def waiting(self) -> list[tuple[str, str, datetime]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, sender, due_us FROM handovers WHERE due_us IS NOT NULL"
            ).fetchall()
        return [(key, sender, _at(due)) for key, sender, due in rows]

    def __getitem__(self, key: str) -> Handover:
        with self._lock:
            row = self._db.execute("SELECT doc FROM handovers WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return Handover.model_validate_json(row[0])

    def __contains__(self, key: object) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM handovers WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            keys = [k for (k,) in self._db.execute("SELECT key FROM handovers")]
        return iter(keys)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM handovers").fetchone()
        return int(count)

    def matching(
        self,
        *,
        case_id: UUID | None = None,
        message_id: UUID | None = None,
        participant: str | None = None,
        state: HandoverState | None = None,
        jurisdiction: str | None = None,
        overdue: bool | None = None,
    ) -> Iterable[Handover]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (
            ("case_id", None if case_id is None else str(case_id)),
            ("message_id", None if message_id is None else str(message_id)),
            ("state", None if state is None else state.value),
            ("jurisdiction", jurisdiction),
            ("overdue", None if overdue is None else int(overdue)),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if participant is not None:
            where.append("(sender = ? OR recipient = ? OR escalated_to = ?)")
            args += [participant] * 3
        # Only fixed column names are joined in; every value is a bound parameter.
        sql = "SELECT doc FROM handovers" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        with self._lock:
            docs = [doc for (doc,) in self._db.execute(sql, args)]
        return [Handover.model_validate_json(doc) for doc in docs]

    def size_bytes(self) -> int:
        if self.path is None:
            return 0
        wal = self.path.with_name(self.path.name + "-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def release(self) -> None:
        """Give the file up to another process (this connection may still be read)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.release()
