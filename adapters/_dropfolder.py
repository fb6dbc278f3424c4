"""The drop-folder adapter: referral files in, Kafka out, and where each file stands.

Layout (``root`` is configurable)::

    root/incoming/     the local system drops *.json (one referral, see
                       ``parse_submission``) or *.csv (bulk, see ``adapters._csv``);
                       write to a dot-file and rename, dot-files are ignored
    root/processing/   claimed files, and <name>.pending.json once sealed: the
                       exact envelope bytes and their message and case ids
    root/sent/         <name>.sent.json (message ids, Kafka-acknowledged); the
                       plaintext <name> itself only when ``keep_sent`` says how
                       long (default: not at all — once Kafka has the sealed
                       envelopes, a plaintext copy on this disk is only a liability)
    root/failed/       <name> and <name>.error.txt saying why (every bad CSV row)

A file's life is the pure state machine :data:`TRANSITIONS`::

    INCOMING --claim--> CLAIMED --seal--> SEALED --ack--> SENT
                           |                 |  \\--seal (re-seal when stale)--> SEALED
                           +---refuse--------+--refuse--> FAILED

Claiming is a rename (atomic: two scanners never take one file). The sidecar is
written (atomically, fsynced) BEFORE anything is produced, so the message ids are
fixed first: after a crash a file found in ``processing/`` with a sidecar is
produced again with the SAME bytes — the router forwards an id once and
dead-letters the copy as ``duplicate_message`` — and one without a sidecar had
produced nothing yet and is sealed afresh. The file moves to ``sent/`` only
after Kafka acknowledged every envelope in it: never lost, never sent under two
ids. A sidecar older than ``reseal_after`` (below the router's 24 h freshness
window) is re-sealed with the same ids before producing. A CSV file is sent
only if every row is valid; otherwise it fails with one line per bad row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final
from uuid import UUID

import structlog

from adapters._csv import parse_csv
from adapters._errors import InputError, SendError, StateError
from adapters._model import Submission, parse_submission
from adapters._sender import Sealed, Sender
from adapters._state import ReferenceIndex, RefKind
from keys import atomic_write, fsync_dir

__all__ = [
    "TRANSITIONS",
    "CorruptSidecar",
    "DropFolder",
    "FileEvent",
    "FileResult",
    "FileState",
    "IllegalTransition",
    "advance",
    "load_submissions",
    "recovered_state",
]

log = structlog.get_logger("crb.adapter")


class FileState(enum.StrEnum):
    """Where a drop-folder file stands (see :data:`TRANSITIONS`)."""

    INCOMING = "incoming"
    CLAIMED = "claimed"
    SEALED = "sealed"
    SENT = "sent"
    FAILED = "failed"


class FileEvent(enum.StrEnum):
    """What happens to a drop-folder file (see :data:`TRANSITIONS`)."""

    CLAIM = "claim"
    SEAL = "seal"
    ACK = "ack"
    REFUSE = "refuse"


TRANSITIONS: Final[dict[tuple[FileState, FileEvent], FileState]] = {
    (FileState.INCOMING, FileEvent.CLAIM): FileState.CLAIMED,
    (FileState.CLAIMED, FileEvent.SEAL): FileState.SEALED,
    (FileState.CLAIMED, FileEvent.REFUSE): FileState.FAILED,
    (FileState.SEALED, FileEvent.SEAL): FileState.SEALED,
    (FileState.SEALED, FileEvent.ACK): FileState.SENT,
    (FileState.SEALED, FileEvent.REFUSE): FileState.FAILED,
}


class IllegalTransition(ValueError):
    """An event that the state machine does not allow in the current state (a bug)."""


def advance(state: FileState, event: FileEvent) -> FileState:
    """The state after ``event``; ``IllegalTransition`` if the table does not allow it."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{event} in state {state}") from None


def recovered_state(*, in_processing: bool, has_sidecar: bool) -> FileState:
    """Where a file in ``processing/`` stands after a restart."""
    if not in_processing:
        return FileState.INCOMING
    return FileState.SEALED if has_sidecar else FileState.CLAIMED


def load_submissions(
    name: str, data: bytes, *, jurisdiction: str | None = None
) -> list[tuple[int | None, Submission]]:
    """The submissions of a file (row numbers for CSV); ``InputError`` lists every problem."""
    if name.lower().endswith(".csv"):
        batch = parse_csv(data)
        if batch.errors:
            raise InputError("; ".join(str(e) for e in batch.errors), where=name)
        if jurisdiction:
            return [
                (row, Submission(s.referral, jurisdiction.upper(), s.case_id))
                for row, s in batch.rows
            ]
        return [(row, s) for row, s in batch.rows]
    if name.lower().endswith(".json"):
        return [(None, parse_submission(data, where=name, jurisdiction=jurisdiction))]
    raise InputError("unsupported file type (expected .json or .csv)", where=name)


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    state: FileState
    message_ids: tuple[UUID, ...] = ()
    error: str | None = None


def _free(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.N`` if taken (the same name dropped again)."""
    path = folder / name
    n = 1
    while path.exists():
        path = folder / f"{name}.{n}"
        n += 1
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".pending.json")


def _encode(items: list[tuple[int | None, Sealed]]) -> bytes:
    return json.dumps(
        {
            "items": [
                {
                    "row": row,
                    "message_id": str(s.message_id),
                    "case_id": str(s.case_id),
                    "sealed_at": s.sealed_at.isoformat(),
                    "envelope": base64.b64encode(s.envelope).decode(),
                    "reference": s.reference,
                }
                for row, s in items
            ]
        },
        indent=1,
    ).encode()


class CorruptSidecar(InputError):
    """A pending sidecar cannot be read back (the disk, or someone, changed it)."""


def _decode(data: bytes, *, where: str) -> list[tuple[int | None, Sealed]]:
    try:
        obj = json.loads(data)
        return [
            (
                item["row"],
                Sealed(
                    message_id=UUID(item["message_id"]),
                    case_id=UUID(item["case_id"]),
                    sealed_at=datetime.fromisoformat(item["sealed_at"]),
                    envelope=base64.b64decode(item["envelope"], validate=True),
                    reference=item.get("reference"),
                ),
            )
            for item in obj["items"]
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptSidecar(
            f"pending sidecar unreadable ({type(exc).__name__}); its envelopes may have "
            "been sent already: check the tracker before dropping the file again",
            where=where,
        ) from exc


class DropFolder:
    """Sends what lands in ``root/incoming`` (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        sender: Sender,
        *,
        reseal_after: timedelta = timedelta(hours=20),
        jurisdiction: str | None = None,
        index: ReferenceIndex | None = None,
        keep_sent: timedelta = timedelta(0),
        record_retention: timedelta = timedelta(days=90),
    ) -> None:
        self.root = root
        self.keep_sent = keep_sent
        """How long a sent file's plaintext stays in ``sent/`` (0: deleted at once)."""
        self.record_retention = record_retention
        """How long a ``.sent.json`` note (message ids only) stays in ``sent/``."""
        self.index = index
        """Where sent referrals' own references are recorded (the adapter state)."""
        self.sender = sender
        self.reseal_after = reseal_after
        self.jurisdiction = jurisdiction
        self.incoming = root / "incoming"
        self.processing = root / "processing"
        self.sent = root / "sent"
        self.failed = root / "failed"
        for d in (self.incoming, self.processing, self.sent, self.failed):
            d.mkdir(parents=True, exist_ok=True)

    def claim(self) -> list[Path]:
        """Move every ready file from ``incoming/`` to ``processing/`` (rename = claim)."""
        claimed = []
        for path in sorted(self.incoming.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            target = _free(self.processing, path.name)
            try:
                path.rename(target)
            except FileNotFoundError:
                continue  # another scanner took it
            claimed.append(target)
        if claimed:
            fsync_dir(self.processing)
            fsync_dir(self.incoming)
        return claimed

    def pending(self) -> list[Path]:
        return sorted(
            p
            for p in self.processing.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".pending.json")
        )

    async def run_once(self) -> list[FileResult]:
        """Finish what a previous run left in ``processing/``, then take ``incoming/``;
        forget sent plaintext past ``keep_sent``."""
        self.claim()
        results = [await self.process(p) for p in self.pending()]
        self.purge_sent()
        return results

    def purge_sent(self) -> int:
        """Delete the plaintext of files sent longer than ``keep_sent`` ago (by the
        ``sent_at`` of their ``.sent.json`` record), and the records themselves after
        ``record_retention``; returns how many plaintext files went."""
        now = self.sender.clock()
        purged = notes = 0
        for note in self.sent.glob("*.sent.json"):
            plaintext = note.with_name(note.name.removesuffix(".sent.json"))
            try:
                sent_at = datetime.fromisoformat(json.loads(note.read_bytes())["sent_at"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("sent_record_unreadable", file=note.name, error=str(exc))
                continue
            if plaintext.exists() and now - sent_at >= self.keep_sent:
                plaintext.unlink(missing_ok=True)
                purged += 1
            if now - sent_at >= self.record_retention:
                note.unlink(missing_ok=True)
                notes += 1
        if purged or notes:
            fsync_dir(self.sent)
            log.info(
                "sent_copies_purged", files=purged, records=notes, keep_sent=str(self.keep_sent)
            )
        return purged

    async def run(self, stop: asyncio.Event, *, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def process(self, path: Path) -> FileResult:
        """Drive one claimed file to SENT or FAILED; a retriable Kafka failure leaves it
        SEALED in ``processing/`` for the next run."""
        try:
            state, items = await asyncio.to_thread(self._prepare, path)
        except (InputError, SendError) as exc:
            side = _sidecar(path)
            state = recovered_state(in_processing=True, has_sidecar=side.exists())
            keep = isinstance(exc, CorruptSidecar)
            return await asyncio.to_thread(self._fail, path, state, str(exc), keep_sidecar=keep)
        try:
            for _row, sealed in items:
                await self.sender.send(sealed)
        except SendError as exc:
            if not exc.retriable:
                return await asyncio.to_thread(self._fail, path, state, str(exc))
            log.warning(
                "send_deferred", file=path.name, kept_in=str(self.processing), error=str(exc)
            )
            return FileResult(path.name, state, tuple(s.message_id for _, s in items), str(exc))
        return await asyncio.to_thread(self._done, path, advance(state, FileEvent.ACK), items)

    def _prepare(self, path: Path) -> tuple[FileState, list[tuple[int | None, Sealed]]]:
        """Seal a claimed file (sidecar first) or load, and if stale re-seal, its sidecar."""
        side = _sidecar(path)
        state = recovered_state(in_processing=True, has_sidecar=side.exists())
        if state is FileState.CLAIMED:
            subs = load_submissions(path.name, path.read_bytes(), jurisdiction=self.jurisdiction)
            items = [(row, self.sender.seal_referral(s)) for row, s in subs]
            atomic_write(side, _encode(items))
            return advance(state, FileEvent.SEAL), items
        items = _decode(side.read_bytes(), where=side.name)
        if self._stale(items):
            items = self._reseal(path, items)
            state = advance(state, FileEvent.SEAL)
        return state, items

    def _done(
        self, path: Path, state: FileState, items: list[tuple[int | None, Sealed]]
    ) -> FileResult:
        ids = tuple(s.message_id for _, s in items)
        target = _free(self.sent, path.name)
        note = {
            "file": path.name,
            "sent_at": self.sender.clock().isoformat(),
            "messages": [
                {
                    "row": row,
                    "message_id": str(s.message_id),
                    "case_id": str(s.case_id),
                    "reference": s.reference,
                }
                for row, s in items
            ],
        }
        atomic_write(target.with_name(target.name + ".sent.json"), json.dumps(note).encode())
        if self.keep_sent > timedelta(0):
            path.rename(target)
        else:
            path.unlink()  # Kafka has it, sealed; no plaintext copy is kept
        _sidecar(path).unlink(missing_ok=True)
        fsync_dir(self.sent)
        fsync_dir(self.processing)
        if self.index is not None:
            try:
                for _, sealed in items:
                    if sealed.reference is not None:
                        self.index.record_reference(
                            sealed.reference, RefKind.OWN, sealed.message_id, sealed.case_id
                        )
            except StateError as exc:  # sent is sent: the lookup index is a convenience
                log.warning("reference_not_indexed", file=path.name, error=str(exc))
        log.info("file_sent", file=path.name, messages=len(ids))
        return FileResult(path.name, state, ids)

    def _stale(self, items: list[tuple[int | None, Sealed]]) -> bool:
        now = self.sender.clock()
        return any(now - s.sealed_at >= self.reseal_after for _, s in items)

    def _reseal(
        self, path: Path, items: list[tuple[int | None, Sealed]]
    ) -> list[tuple[int | None, Sealed]]:
        """The same referrals under the same ids, freshly sealed (sidecar replaced first)."""
        subs = dict(load_submissions(path.name, path.read_bytes(), jurisdiction=self.jurisdiction))
        fresh = [(row, self.sender.reseal(subs[row], s)) for row, s in items]
        atomic_write(_sidecar(path), _encode(fresh))
        log.info("resealed", file=path.name, messages=len(fresh))
        return fresh

    def _fail(
        self, path: Path, state: FileState, why: str, *, keep_sidecar: bool = False
    ) -> FileResult:
        """Move the file to ``failed/`` with why; ``keep_sidecar`` keeps an unreadable
        sidecar beside it (``.pending.json.corrupt``) for the operator: it may name
        messages that did reach Kafka."""
        state = advance(state, FileEvent.REFUSE)
        target = _free(self.failed, path.name)
        atomic_write(target.with_name(target.name + ".error.txt"), why.encode() + b"\n")
        path.rename(target)
        side = _sidecar(path)
        if keep_sidecar and side.exists():
            side.rename(target.with_name(target.name + ".pending.json.corrupt"))
        side.unlink(missing_ok=True)
        fsync_dir(self.failed)
        fsync_dir(self.processing)
        log.warning("file_failed", file=path.name)
        return FileResult(path.name, state, (), why)
