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
import json
import sqlite3
import statistics
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from broker.tracker._deadletters import DeadLetter
from broker.tracker._machine import Handover, HandoverStore
from broker.tracker._views import (
    ATTENTION_STATES,
    BUCKETS,
    Filters,
    RouteCell,
    RouteStats,
    percentile,
)
from schemas import HandoverState

__all__ = ["SqliteHandovers"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA_VERSION = "7"
"""Bumped whenever the tables change: a snapshot of another version is rebuilt
from the topic (it is a cache of it)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handovers (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    message_id BLOB NOT NULL,
    case_id BLOB NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT,
    escalated_to TEXT,
    state TEXT NOT NULL,
    jurisdiction TEXT,
    overdue INTEGER NOT NULL,
    due_us INTEGER,
    priority TEXT,
    category TEXT,
    at_us INTEGER NOT NULL,
    routed_us INTEGER,
    received_us INTEGER,
    updated_us INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS by_at ON handovers (at_us);
CREATE INDEX IF NOT EXISTS by_updated ON handovers (updated_us) WHERE due_us IS NULL;
CREATE INDEX IF NOT EXISTS by_case ON handovers (case_id);
CREATE INDEX IF NOT EXISTS by_message ON handovers (message_id);
CREATE INDEX IF NOT EXISTS by_sender ON handovers (sender);
CREATE INDEX IF NOT EXISTS by_recipient ON handovers (recipient);
CREATE INDEX IF NOT EXISTS by_escalated_to ON handovers (escalated_to);
CREATE INDEX IF NOT EXISTS by_state ON handovers (state);
CREATE INDEX IF NOT EXISTS waiting ON handovers (due_us) WHERE due_us IS NOT NULL;
CREATE TABLE IF NOT EXISTS positions (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    reason TEXT NOT NULL,
    sender TEXT,
    rejected_us INTEGER,
    redriven_us INTEGER,
    doc TEXT NOT NULL,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_by_time ON dead_letters (rejected_us);
CREATE TABLE IF NOT EXISTS dead_positions (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    epoch INTEGER NOT NULL,
    tag BLOB NOT NULL,
    message_id BLOB NOT NULL,
    routed_us INTEGER NOT NULL,
    PRIMARY KEY (epoch, tag, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_message ON tags (message_id);
"""


def _dead_json(d: DeadLetter) -> str:
    doc = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(d).items()}
    return json.dumps(doc)


def _dead_of(text: str) -> DeadLetter:
    doc = json.loads(text)
    for name in ("rejected_at", "redriven_at"):
        if doc[name] is not None:
            doc[name] = datetime.fromisoformat(doc[name])
    doc["recipients"] = tuple(doc["recipients"])
    return DeadLetter(**doc)


def _us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _where(f: Filters) -> tuple[str, list[object]]:
    """A WHERE clause (fixed column names, every value a bound parameter) for ``f``."""
    where: list[str] = []
    args: list[object] = []
    for column, value in (
        ("message_id", None if f.message_id is None else f.message_id.bytes),
        ("case_id", None if f.case_id is None else f.case_id.bytes),
        ("sender", f.sender),
        ("recipient", f.recipient),
        ("jurisdiction", f.jurisdiction),
        ("state", None if f.state is None else f.state.value),
        ("priority", None if f.priority is None else f.priority.value),
        ("category", None if f.category is None else f.category.value),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if f.bucket is not None:
        states = sorted(s.value for s, b in BUCKETS.items() if b == f.bucket)
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args += states
    if f.participant is not None:
        where.append("(sender = ? OR recipient = ? OR escalated_to = ?)")
        args += [f.participant] * 3
    if f.since is not None:
        where.append("at_us >= ?")
        args.append(_us(f.since))
    if f.until is not None:
        where.append("at_us < ?")
        args.append(_us(f.until))
    return (" WHERE " + " AND ".join(where) if where else ""), args


def _row(h: Handover, seq: int) -> tuple[Any, ...]:
    return (
        seq,
        h.key,
        h.message_id.bytes,
        h.case_id.bytes,
        h.sender,
        h.recipient,
        h.escalated_to,
        h.state.value,
        h.jurisdiction,
        int(h.overdue),
        _us(h.due_at) if h.due_at is not None else None,
        h.priority.value if h.priority is not None else None,
        h.category.value if h.category is not None else None,
        _us(h.routed_at or h.updated_at),
        _us(h.routed_at) if h.routed_at is not None else None,
        _us(h.received_at) if h.received_at is not None else None,
        _us(h.updated_at),
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
        self._seq = 0

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
        found = db.execute(
            "SELECT value FROM meta WHERE key = 'schema'"
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
            else "SELECT NULL"
        ).fetchone()
        if found is None or found[0] != SCHEMA_VERSION:
            db.executescript(
                "DROP TABLE IF EXISTS handovers; DROP TABLE IF EXISTS positions;"
                " DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS dead_letters;"
                " DROP TABLE IF EXISTS dead_positions; DROP TABLE IF EXISTS tags;"
            )
        db.executescript(_SCHEMA)
        with db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        if path is not None:
            path.chmod(0o600)
        store = cls(db, path, lock_file)
        (last,) = db.execute("SELECT coalesce(max(seq), 0) FROM handovers").fetchone()
        store._seq = int(last)
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
            for table in (
                "handovers",
                "positions",
                "meta",
                "dead_letters",
                "dead_positions",
                "tags",
            ):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("INSERT INTO meta VALUES ('topic', ?)", (topic,))
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

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
        """Store these; each gets the next change sequence number (:meth:`changes`)."""
        with self._lock, self._db:
            first = self._seq + 1
            self._seq += len(handovers)
            rows = [_row(h, first + i) for i, h in enumerate(handovers)]
            self._db.executemany(
                "INSERT OR REPLACE INTO handovers VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            tagged = [
                (d.epoch, bytes.fromhex(tag), h.message_id.bytes, _us(h.routed_at or h.updated_at))
                for h in handovers
                if (d := h.deconfliction) is not None
                for tag in d.tags
            ]
            if tagged:
                self._db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?, ?, ?)", tagged)

    def quiet(self, before: datetime, limit: int) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM handovers WHERE due_us IS NULL AND updated_us < ?"
                " ORDER BY updated_us LIMIT ?",
                (_us(before), limit),
            ).fetchall()
        return [k for (k,) in rows]

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock, self._db:
            gone = {
                row[0]
                for k in keys
                for row in self._db.execute(
                    "SELECT message_id FROM handovers WHERE key = ?", (k,)
                ).fetchall()
            }
            self._db.executemany("DELETE FROM handovers WHERE key = ?", [(k,) for k in keys])
            self._db.executemany(
                "DELETE FROM tags WHERE message_id = ?1 AND NOT EXISTS"
                " (SELECT 1 FROM handovers WHERE message_id = ?1)",
                [(m,) for m in gone],
            )

    def tagged(self, epoch: int, tags: Sequence[str], *, limit: int) -> list[tuple[UUID, int]]:
        if not tags:
            return []
        marks = ",".join("?" * len(tags))
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, count(*), min(routed_us) AS first FROM tags"
                f" WHERE epoch = ? AND tag IN ({marks})"
                " GROUP BY message_id ORDER BY first, message_id LIMIT ?",
                (epoch, *(bytes.fromhex(t) for t in tags), limit),
            ).fetchall()
        return [(UUID(bytes=m), int(n)) for m, n, _ in rows]

    @property
    def seq(self) -> int:
        """The change sequence number of the last handover stored."""
        return self._seq

    def changes(
        self, after: int, participant: str | None = None, *, limit: int = 500
    ) -> list[tuple[int, Handover]]:
        """Handovers changed after sequence number ``after``, oldest change first,
        with their sequence numbers (a handover changed twice appears once, at its
        latest). The live console resumes from the last number it saw."""
        where, args = _where(Filters(participant=participant))
        clause = (" AND " if where else " WHERE ") + "seq > ?"
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, doc FROM handovers{where}{clause} ORDER BY seq LIMIT ?",
                [*args, after, limit],
            ).fetchall()
        return [(int(seq), Handover.model_validate_json(doc)) for seq, doc in rows]

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
        filters = Filters(
            case_id=case_id,
            message_id=message_id,
            participant=participant,
            state=state,
            jurisdiction=jurisdiction,
        )
        where, args = _where(filters)
        if overdue is not None:
            where += (" AND " if where else " WHERE ") + "overdue = ?"
            args.append(int(overdue))
        with self._lock:
            docs = [doc for (doc,) in self._db.execute(f"SELECT doc FROM handovers{where}", args)]
        return [Handover.model_validate_json(doc) for doc in docs]

    # -- the operator console's queries ---------------------------------------------
    def search(
        self, filters: Filters, *, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[Handover]]:
        """How many handovers match ``filters``, and up to ``limit`` of them from
        ``offset``, newest first (by when they were routed)."""
        where, args = _where(filters)
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT count(*) FROM handovers{where}",
                args,
            ).fetchone()
            docs = self._db.execute(
                f"SELECT doc FROM handovers{where} ORDER BY at_us DESC, key LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return int(count), [Handover.model_validate_json(doc) for (doc,) in docs]

    def _times_to_receipt(
        self, where: str, args: list[object]
    ) -> dict[tuple[str, str | None], list[float]]:
        """Seconds from routing to receipt, per route, of the handovers ``where``
        selects (the caller holds the lock)."""
        clause = " AND " if where else " WHERE "
        rows = self._db.execute(
            f"SELECT sender, recipient, received_us - routed_us FROM handovers{where}"
            f"{clause}received_us IS NOT NULL AND routed_us IS NOT NULL",
            args,
        ).fetchall()
        seconds: dict[tuple[str, str | None], list[float]] = {}
        for sender, recipient, us in rows:
            seconds.setdefault((sender, recipient), []).append(us / 1e6)
        return seconds

    def board(self, participant: str | None = None) -> list[RouteCell]:
        """The route board: per sender → recipient, handovers per bucket and the
        median / p95 time to receipt (nearest rank), ordered by route."""
        where, args = _where(Filters(participant=participant))
        cells: dict[tuple[str, str | None], RouteCell] = {}
        with self._lock:
            counts = self._db.execute(
                f"SELECT sender, recipient, state, count(*) FROM handovers{where}"
                " GROUP BY sender, recipient, state",
                args,
            ).fetchall()
            seconds = self._times_to_receipt(where, args)
        for sender, recipient, state, n in counts:
            cell = cells.setdefault((sender, recipient), RouteCell(sender, recipient))
            cell.counts[BUCKETS[HandoverState(state)]] += n
        for route, values in seconds.items():
            cell = cells[route]
            cell.median_s = percentile(values, 50)
            cell.p95_s = percentile(values, 95)
        return [cells[k] for k in sorted(cells, key=lambda k: (k[0], k[1] or ""))]

    def route_stats(self, participant: str | None = None) -> list[RouteStats]:
        """:func:`broker.tracker._views.route_stats` over the handovers ``participant``
        takes part in (all without), answered from columns: nothing is parsed."""
        where, args = _where(Filters(participant=participant))
        with self._lock:
            rows = self._db.execute(
                "SELECT sender, recipient, count(*),"
                " sum(received_us IS NOT NULL), sum(state = 'dead_lettered'),"
                f" sum(overdue), sum(state = 'failed') FROM handovers{where}"
                " GROUP BY sender, recipient",
                args,
            ).fetchall()
            seconds = self._times_to_receipt(where, args)
        out = []
        for sender, recipient, n, received, dead, overdue, failed in sorted(
            rows, key=lambda r: (r[0], r[1] or "")
        ):
            values = seconds.get((sender, recipient), [])
            out.append(
                RouteStats(
                    sender=sender, recipient=recipient, sent=n - dead, received=received,
                    dead_lettered=dead, overdue=overdue, failed=failed,
                    median_seconds_to_receipt=statistics.median(values) if values else None,
                    p99_seconds_to_receipt=percentile(values, 99),
                )
            )  # fmt: skip
        return out

    def attention(
        self, participant: str | None = None, *, limit: int = 500
    ) -> tuple[int, list[Handover]]:
        """Overdue, escalated, failed and dead-lettered handovers: how many, and up
        to ``limit`` of them, urgent first, then the oldest first."""
        where, args = _where(Filters(participant=participant))
        states = sorted(s.value for s in ATTENTION_STATES)
        clause = (" AND " if where else " WHERE ") + f"state IN ({', '.join('?' * len(states))})"
        rank = "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 ELSE 2 END"
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT count(*) FROM handovers{where}{clause}",
                [*args, *states],
            ).fetchone()
            docs = self._db.execute(
                f"SELECT doc FROM handovers{where}{clause} ORDER BY {rank}, at_us, key LIMIT ?",
                [*args, *states, limit],
            ).fetchall()
        return int(count), [Handover.model_validate_json(doc) for (doc,) in docs]

    # -- dead letters ------------------------------------------------------------------
    def put_dead_letters(self, letters: Sequence[DeadLetter], positions: dict[int, int]) -> None:
        """Store dead letters read from the topic, with how far it was read (a
        redrive already recorded is kept: the topic does not know of it)."""
        rows = [
            (
                d.partition, d.offset, d.reason, d.sender,
                _us(d.rejected_at) if d.rejected_at else None, None, _dead_json(d),
            )
            for d in letters
        ]  # fmt: skip
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO dead_positions VALUES (?, ?)", list(positions.items())
            )

    def dead_positions(self) -> dict[int, int] | None:
        with self._lock:
            rows = self._db.execute("SELECT partition, next FROM dead_positions").fetchall()
        return dict(rows) or None

    def reset_dead_letters(self) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM dead_letters")
            self._db.execute("DELETE FROM dead_positions")

    def dead_letters(
        self,
        participant: str | None = None,
        *,
        reason: str | None = None,
        limit: int = 500,
    ) -> tuple[int, list[DeadLetter]]:
        """How many dead letters (of ``participant``'s outbox, with ``reason``), and up
        to ``limit`` of them, newest first."""
        where: list[str] = []
        args: list[object] = []
        if participant is not None:
            where.append("sender = ?")
            args.append(participant)
        if reason is not None:
            where.append("reason = ?")
            args.append(reason)
        clause = " WHERE " + " AND ".join(where) if where else ""
        with self._lock:
            (count,) = self._db.execute(
                f"SELECT count(*) FROM dead_letters{clause}", args
            ).fetchone()
            docs = self._db.execute(
                f"SELECT doc FROM dead_letters{clause}"
                " ORDER BY rejected_us DESC, partition, offset DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return int(count), [_dead_of(doc) for (doc,) in docs]

    def dead_letter(self, partition: int, offset: int) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM dead_letters WHERE partition = ? AND offset = ?",
                (partition, offset),
            ).fetchone()
        return None if row is None else _dead_of(row[0])

    def mark_redriven(self, dead: DeadLetter) -> None:
        """Record a redrive (``dead`` carries ``redriven_at``/``_by``/``redrive_offset``)."""
        assert dead.redriven_at is not None
        with self._lock, self._db:
            self._db.execute(
                "UPDATE dead_letters SET redriven_us = ?, doc = ?"
                " WHERE partition = ? AND offset = ?",
                (_us(dead.redriven_at), _dead_json(dead), dead.partition, dead.offset),
            )

    def count_dead_letters(self, since: datetime | None = None) -> int:
        """Dead letters in all, or rejected at or after ``since``."""
        with self._lock:
            if since is None:
                (count,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
            else:
                (count,) = self._db.execute(
                    "SELECT count(*) FROM dead_letters WHERE rejected_us >= ?", (_us(since),)
                ).fetchone()
        return int(count)

    def urgent_overdue(self) -> list[tuple[str, str, str | None]]:
        """(key, sender, recipient) of urgent handovers past their SLA, no receipt."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, sender, recipient FROM handovers WHERE overdue = 1"
                " AND priority = 'urgent' ORDER BY at_us"
            ).fetchall()
        return [(k, s, r) for k, s, r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM handovers GROUP BY state")
            return {state: int(n) for state, n in rows}

    def count_overdue_by_priority(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT coalesce(priority, 'routine'), count(*) FROM handovers"
                " WHERE overdue = 1 GROUP BY coalesce(priority, 'routine')"
            )
            return {priority: int(n) for priority, n in rows}

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
