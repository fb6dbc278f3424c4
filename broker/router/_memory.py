"""The router's memory, rebuilt from the audit topic.

The audit topic is the router's durable state: every decision is written there in
the same Kafka transaction as the forward and the input offset commit, so what the
audit topic holds (read ``read_committed``) is exactly what happened. From it the
router derives

- the head of each chain (one per input partition), to continue the hash chain and
  to skip input records already decided (a redelivery after a crash or rebalance);
- the messages it forwarded, by id: to refuse duplicates and to authorise replies.

:class:`AuditView` follows the whole audit topic (every partition, no consumer
group) and can ``catch_up`` to its current end on demand: after fencing a
partition's previous owner, and before refusing a reply as ``unknown_original``
(another router instance may have forwarded the original a moment ago).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition

from broker.audit import AuditRecord, Verdict
from broker.kafka_util import partitions_of
from broker.router._core import SeenMessage
from schemas import MessageType

__all__ = ["AuditView", "RouterMemory"]


class RouterMemory:
    """Chain heads and remembered messages (pure state, no I/O)."""

    def __init__(self, keep: timedelta) -> None:
        self.keep = keep
        self.heads: dict[str, AuditRecord] = {}
        self.seen: dict[UUID, SeenMessage] = {}

    def apply(self, record: AuditRecord) -> None:
        head = self.heads.get(record.chain)
        if head is None or record.seq > head.seq:
            self.heads[record.chain] = record
        if record.verdict is Verdict.FORWARDED and record.message_id and record.sender:
            self.seen[UUID(record.message_id)] = SeenMessage(
                sender=record.sender,
                recipients=record.recipients,
                message_type=MessageType(record.message_type or "referral"),
                created_at=record.decided_at,
            )

    def prune(self, now: datetime) -> None:
        cutoff = now - self.keep
        for message_id in [m for m, s in self.seen.items() if s.created_at < cutoff]:
            del self.seen[message_id]


class AuditView:
    """Reads the audit topic into a :class:`RouterMemory`."""

    def __init__(self, topic: str, memory: RouterMemory, client_kwargs: dict[str, Any]) -> None:
        self.topic = topic
        self.memory = memory
        self._kwargs = client_kwargs
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._kwargs,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        partitions = await partitions_of(self._kwargs, self.topic)
        await consumer.start()
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"audit topic {self.topic} does not exist: run `crb topics apply`")
        consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
        self._consumer = consumer
        await self.catch_up()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def catch_up(self, timeout_s: float = 60.0) -> int:
        """Read until the current end of every partition; returns records applied."""
        assert self._consumer is not None, "start() first"
        async with self._lock:
            consumer = self._consumer
            assignment = list(consumer.assignment())
            # end_offsets under read_committed is the last stable offset.
            ends = await consumer.end_offsets(assignment)
            applied = 0
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                behind = [tp for tp in assignment if await consumer.position(tp) < ends[tp]]
                if not behind:
                    return applied
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"audit topic not read to its end within {timeout_s}s: {behind}"
                    )
                batch = await consumer.getmany(*behind, timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        if r.value is None:
                            continue
                        try:
                            record = AuditRecord.model_validate_json(r.value)
                        except ValueError:
                            continue  # `crb audit verify` reports it; the router goes on
                        self.memory.apply(record)
                        applied += 1
