"""The router's memory and its batch policy — pure: no Kafka, time passed in.

The audit topic is the router's durable state: every decision is written there in
the same Kafka transaction as the forward and the input offset commit, so what the
audit topic holds (read ``read_committed``) is exactly what happened. From it
:class:`RouterMemory` keeps

- the head of each chain (one per input partition), to continue the hash chain and
  to skip input records already decided (a redelivery after a crash or rebalance);
- the messages it forwarded within the reply window, by id: to refuse duplicates
  and to authorise replies.

Per-record cost does not grow with history: a batch reads the memory through an
overlay (:class:`BatchView`) instead of copying it, and forgetting is a heap pop
per expired message rather than a scan. Where the forwarded messages live is a
:class:`SeenStore`: a dict here (:class:`InMemorySeen`), or the router's local
snapshot on disk (``broker.router._store``) so that memory stays bounded and a
restart does not replay the audit topic.

:func:`decide_batch` is the policy for one input partition's poll batch: skip what
the chain head already covers, decide the rest in order (messages forwarded
earlier in the batch count as seen), chain their audit entries. When a batch
refused something that another router instance might just have forwarded
(:attr:`Batch.needs_catch_up`), the shell reads the audit topic to its end and
decides the batch again.
"""

from __future__ import annotations

import heapq
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from adapters.kafka import Record
from broker.audit import AuditRecord, Verdict, chain_next
from broker.router._core import (
    DEAD_LETTER_MAX,
    REDELIVERY_MIN,
    RoutingDecision,
    SeenMessage,
    decide,
)
from keys import Limits
from schemas import Directory, MessageType, Reason, TopicNames

__all__ = [
    "RETRY_AFTER_CATCH_UP",
    "RETRY_AFTER_REFRESH",
    "Batch",
    "BatchView",
    "InMemorySeen",
    "RouterMemory",
    "SeenStore",
    "decide_batch",
]

RETRY_AFTER_CATCH_UP = frozenset({Reason.UNKNOWN_ORIGINAL, Reason.DUPLICATE_MESSAGE})
"""Refusals that depend on what other router instances forwarded: worth deciding
again after reading the audit topic to its end."""

RETRY_AFTER_REFRESH = frozenset(
    {
        Reason.UNKNOWN_SENDER,
        Reason.UNKNOWN_KEY,
        Reason.SENDER_SUSPENDED,
        Reason.UNKNOWN_RECIPIENT,
        Reason.RECIPIENT_SUSPENDED,
        Reason.RECIPIENT_MISMATCH,
        Reason.NO_RECIPIENT,
    }
)
"""Refusals a newer directory could turn into a forward (a participant added,
reinstated or rotated after the router last looked): worth deciding again after
reading the directory topic to its end."""


class SeenStore(Mapping[UUID, SeenMessage]):
    """Where the forwarded messages are kept, by id: in memory (:class:`InMemorySeen`)
    or in the router's local snapshot (``broker.router._store``)."""

    @abstractmethod
    def put(self, items: Sequence[tuple[UUID, SeenMessage]], /) -> None:
        """Remember these (an id seen again keeps its latest entry)."""

    @abstractmethod
    def forget_before(self, cutoff: datetime, /) -> int:
        """Forget messages forwarded before ``cutoff``; returns how many."""


class InMemorySeen(SeenStore):
    """Forwarded messages in a dict, with a heap of expiries: forgetting is a heap
    pop per expired message, not a scan."""

    def __init__(self) -> None:
        self._seen: dict[UUID, SeenMessage] = {}
        self._expiry: list[tuple[datetime, UUID]] = []

    def __getitem__(self, key: UUID) -> SeenMessage:
        return self._seen[key]

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._seen)

    def __len__(self) -> int:
        return len(self._seen)

    def put(self, items: Sequence[tuple[UUID, SeenMessage]]) -> None:
        for message_id, seen in items:
            if message_id not in self._seen:
                heapq.heappush(self._expiry, (seen.forwarded_at, message_id))
            self._seen[message_id] = seen

    def forget_before(self, cutoff: datetime) -> int:
        dropped = 0
        while self._expiry and self._expiry[0][0] < cutoff:
            _, message_id = heapq.heappop(self._expiry)
            if self._seen.pop(message_id, None) is not None:
                dropped += 1
        return dropped


class RouterMemory:
    """Chain heads and the messages forwarded within ``keep`` (no I/O of its own:
    ``seen`` is where forwarded messages are kept, default in memory)."""

    def __init__(self, keep: timedelta, seen: SeenStore | None = None) -> None:
        self.keep = keep
        self.heads: dict[str, AuditRecord] = {}
        self.seen: SeenStore = seen if seen is not None else InMemorySeen()

    def __len__(self) -> int:
        return len(self.seen)

    def apply(self, record: AuditRecord) -> None:
        """Take one committed audit record (decided here, or read back)."""
        self.apply_all((record,))

    def apply_all(self, records: Iterable[AuditRecord]) -> None:
        """Take committed audit records, in order (one write to ``seen``)."""
        remember: dict[UUID, SeenMessage] = {}
        for record in records:
            head = self.heads.get(record.chain)
            if head is None or record.seq > head.seq:
                self.heads[record.chain] = record
            if record.verdict is Verdict.FORWARDED and record.message_id and record.sender:
                message_id = UUID(record.message_id)
                # A redelivery forwards an id again: it keeps the first forward's
                # facts and adds its envelope's digest.
                earlier = remember.get(message_id) or self.seen.get(message_id)
                digests = earlier.digests if earlier is not None else ()
                if record.envelope_sha256 not in digests:
                    digests = (*digests, record.envelope_sha256)
                remember[message_id] = SeenMessage(
                    sender=record.sender,
                    recipients=record.recipients,
                    message_type=MessageType(record.message_type or "referral"),
                    forwarded_at=record.decided_at,
                    digests=digests,
                )
        if remember:
            self.seen.put(list(remember.items()))

    def prune(self, now: datetime) -> int:
        """Forget messages forwarded longer than ``keep`` ago; returns how many."""
        return self.seen.forget_before(now - self.keep)


class BatchView(Mapping[UUID, SeenMessage]):
    """The memory as one batch sees it: committed messages plus those forwarded
    earlier in the same batch. Nothing is copied."""

    def __init__(self, committed: Mapping[UUID, SeenMessage]) -> None:
        self._committed = committed
        self._batch: dict[UUID, SeenMessage] = {}

    def add(self, message_id: UUID, seen: SeenMessage) -> None:
        self._batch[message_id] = seen

    def __getitem__(self, key: UUID) -> SeenMessage:
        found = self._batch.get(key)
        if found is None:
            found = self._committed.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._batch or key in self._committed

    def __iter__(self) -> Iterator[UUID]:
        yield from self._batch
        yield from (k for k in self._committed if k not in self._batch)

    def __len__(self) -> int:
        return len(self._committed) + sum(1 for k in self._batch if k not in self._committed)


@dataclass
class Batch:
    """One partition's decided batch: (input record, decision, its chained audit record)."""

    decided: list[tuple[Record, RoutingDecision, AuditRecord]] = field(default_factory=list)

    @property
    def needs_catch_up(self) -> bool:
        return any(d.reason in RETRY_AFTER_CATCH_UP for _, d, _ in self.decided)

    @property
    def needs_refresh(self) -> bool:
        return any(d.reason in RETRY_AFTER_REFRESH for _, d, _ in self.decided)


def decide_batch(
    records: Sequence[Record],
    *,
    head: AuditRecord | None,
    seen: Mapping[UUID, SeenMessage],
    now: datetime,
    directory: Directory,
    names: TopicNames,
    limits: Limits,
    dead_letter_max: int = DEAD_LETTER_MAX,
    redelivery_min: timedelta = REDELIVERY_MIN,
) -> Batch:
    """Decisions and chained audit records for one partition's records, in order.

    A record at or below ``head``'s source offset was decided in an earlier,
    committed transaction: skipped, never decided twice.
    """
    view = BatchView(seen)
    batch = Batch()
    for rec in records:
        if head is not None and rec.offset <= head.source_offset:
            continue
        decision = decide(
            rec,
            now=now,
            directory=directory,
            names=names,
            seen=view,
            limits=limits,
            dead_letter_max=dead_letter_max,
            redelivery_min=redelivery_min,
        )
        if decision.remember is not None:
            view.add(*decision.remember)
        head = chain_next(head, decision.audit)
        batch.decided.append((rec, decision, head))
    return batch
