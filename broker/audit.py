"""The tamper-evident audit trail: hash-chained decisions, never payloads.

Every router decision becomes one :class:`AuditRecord`. Records form one chain per
*input partition* (``chain = "<outbox topic>/<partition>"``): only the router that
owns that partition writes to its chain (a transactional id per input partition
fences any other), so a chain is strictly sequential even with several routers.
The audit topic is keyed by chain id, so a chain lives in one partition, in order.

``hash = SHA-256(canonical JSON of the record without "hash")`` (the same
canonical JSON as every signature: ``schemas.canonical_json``) and ``prev`` is
the previous record's hash (64 zeros for the first), ``seq`` counts from 0.
:func:`verify_chains` recomputes everything and names the first broken link per
chain. Pure; the Kafka read is in :func:`read_audit`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import canonical_json, canonical_json_of

__all__ = [
    "GENESIS",
    "AuditBreak",
    "AuditEntry",
    "AuditRecord",
    "Verdict",
    "chain_next",
    "verify_chains",
]

GENESIS = "0" * 64


class Verdict(StrEnum):
    FORWARDED = "forwarded"
    REJECTED = "rejected"


class AuditEntry(BaseModel):
    """What the decision core says happened to one input record (no chain fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: Verdict
    reason: str | None = None
    source_topic: str
    source_partition: int
    source_offset: int
    envelope_sha256: str
    message_id: str | None = None
    message_type: str | None = None
    case_id: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    orphan: bool = False
    decided_at: datetime


class AuditRecord(AuditEntry):
    """An entry placed in its chain."""

    version: Literal[1] = 1
    chain: str
    seq: int = Field(ge=0)
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    def body_bytes(self) -> bytes:
        return canonical_json_of(self.model_dump(mode="json", exclude={"hash"}))

    def computed_hash(self) -> str:
        return hashlib.sha256(self.body_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        return canonical_json(self)


def chain_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def chain_next(prev: AuditRecord | None, entry: AuditEntry) -> AuditRecord:
    """Place ``entry`` after ``prev`` in the chain of its source partition."""
    chain = chain_id(entry.source_topic, entry.source_partition)
    if prev is not None and prev.chain != chain:
        raise ValueError(f"entry of {chain} cannot follow a record of {prev.chain}")
    fields = entry.model_dump(include=set(AuditEntry.model_fields))
    draft = AuditRecord(
        **fields,
        chain=chain,
        seq=0 if prev is None else prev.seq + 1,
        prev=GENESIS if prev is None else prev.hash,
        hash=GENESIS,
    )
    return draft.model_copy(update={"hash": draft.computed_hash()})


@dataclass(frozen=True)
class AuditBreak:
    chain: str
    position: int
    """Index of the first bad record within its chain as read (0-based)."""
    where: str
    """Kafka coordinates of the bad record, when known."""
    problem: str


def verify_chains(
    records: Iterable[tuple[str, bytes]],
) -> tuple[dict[str, int], list[AuditBreak]]:
    """Check every chain; ``records`` are (kafka coordinates, value bytes) in log order.

    Returns (records per chain, first break per broken chain).
    """
    counts: dict[str, int] = {}
    last: dict[str, AuditRecord] = {}
    broken: dict[str, AuditBreak] = {}
    for where, raw in records:
        try:
            record = AuditRecord.model_validate_json(raw)
        except ValueError:
            key = f"(unparsable at {where})"
            broken.setdefault(key, AuditBreak(key, 0, where, "record does not parse"))
            continue
        chain = record.chain
        position = counts.get(chain, 0)
        counts[chain] = position + 1
        if chain in broken:
            continue
        prev = last.get(chain)
        problem = _check_link(prev, record)
        if problem:
            broken[chain] = AuditBreak(chain, position, where, problem)
        last[chain] = record
    return counts, sorted(broken.values(), key=lambda b: b.chain)


def _check_link(prev: AuditRecord | None, record: AuditRecord) -> str | None:
    if record.computed_hash() != record.hash:
        return f"seq {record.seq}: content does not match its hash (record altered)"
    expected_seq = 0 if prev is None else prev.seq + 1
    if record.seq != expected_seq:
        return f"seq {record.seq}: expected seq {expected_seq} (record missing or reordered)"
    expected_prev = GENESIS if prev is None else prev.hash
    if record.prev != expected_prev:
        return f"seq {record.seq}: prev hash does not match the previous record"
    return None
