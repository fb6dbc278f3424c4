"""The tamper-evident audit trail: hash-chained decisions, never payloads.

Every router decision becomes one :class:`AuditRecord`. Records form one chain per
*input partition* (``chain = "<outbox topic>/<partition>"``): only the router that
owns that partition writes to its chain (a transactional id per input partition
fences any other), so a chain is strictly sequential even with several routers.
The audit topic is keyed by chain id, so a chain lives in one partition, in order.

``hash = SHA-256(canonical JSON of the record without "hash", "signer" and
"signature")`` (the same canonical JSON as every signature:
``schemas.canonical_json``) and ``prev`` is the previous record's hash (64 zeros
for the first), ``seq`` counts from 0.

A chain proves order and completeness, not authorship: anyone able to write the
topic could append a well-formed link. So the router signs each record's hash
with its service key (``signature`` by key ``signer``, context
``keys.AUDIT_CONTEXT``; see ``keys._services``) and readers trust only records
whose signature verifies with a router key of the directory (:func:`authentic`).
:func:`verify_chains` reports every unauthenticated record, leaves it out of its
chain, and names the first broken link per chain among the authentic ones. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keys import AUDIT_CONTEXT, RecordSigner, verify_record
from schemas import Directory, ServiceRole, canonical_json, canonical_json_of

__all__ = [
    "GENESIS",
    "AuditBreak",
    "AuditEntry",
    "AuditRecord",
    "Verdict",
    "authentic",
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
    """An entry placed in its chain (and, once written, signed by the router)."""

    version: Literal[1] = 1
    chain: str
    seq: int = Field(ge=0)
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer: str | None = None
    """Key id of the router key that signed ``hash``."""
    signature: str | None = None
    """Base64 Ed25519 signature over ``keys.AUDIT_CONTEXT || hash``."""

    def body_bytes(self) -> bytes:
        return canonical_json_of(
            self.model_dump(mode="json", exclude={"hash", "signer", "signature"})
        )

    def signed(self, signer: RecordSigner) -> AuditRecord:
        """This record with the router's signature over its hash."""
        signature = signer.sign(AUDIT_CONTEXT, self.hash.encode("ascii"))
        return self.model_copy(update={"signer": signer.key_id, "signature": signature})

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


def authentic(record: AuditRecord, directory: Directory) -> bool:
    """Whether ``record`` is as the router wrote it: its content matches its hash and
    a router key of ``directory``, valid when the record was decided, signed that
    hash. Never raises."""
    if record.computed_hash() != record.hash:
        return False
    return verify_record(
        directory,
        ServiceRole.ROUTER,
        AUDIT_CONTEXT,
        record.hash.encode("ascii"),
        key_id=record.signer,
        signature=record.signature,
        at=record.decided_at,
    )


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
    authentic: Callable[[AuditRecord], bool],
) -> tuple[dict[str, int], list[AuditBreak]]:
    """Check every chain; ``records`` are (kafka coordinates, value bytes) in log order.

    A record that does not parse, or that ``authentic`` refuses, is reported and
    left out of its chain (the router ignores it too). Returns (authentic records
    per chain, every such record and the first break per broken chain).
    """
    counts: dict[str, int] = {}
    last: dict[str, AuditRecord] = {}
    broken: dict[str, AuditBreak] = {}
    foreign: list[AuditBreak] = []
    for where, raw in records:
        try:
            record = AuditRecord.model_validate_json(raw)
        except ValueError:
            foreign.append(AuditBreak(f"(unparsable at {where})", 0, where, "does not parse"))
            continue
        chain = record.chain
        position = counts.get(chain, 0)
        if not authentic(record):
            foreign.append(
                AuditBreak(
                    chain,
                    position,
                    where,
                    f"seq {record.seq}: not signed by a router key (forged or altered; ignored)",
                )
            )
            continue
        counts[chain] = position + 1
        if chain in broken:
            continue
        prev = last.get(chain)
        problem = _check_link(prev, record)
        if problem:
            broken[chain] = AuditBreak(chain, position, where, problem)
        last[chain] = record
    return counts, foreign + sorted(broken.values(), key=lambda b: b.chain)


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
