"""The router's Kafka shell: poll, :func:`decide`, produce, commit — one transaction.

Partitions of one poll are processed concurrently, each in its own transaction. A
duplicate message id arriving on two partitions in the same poll is then caught by
the adapters' dedupe (the second line), not by the router.

Exactly-once forwarding without KIP-447 (aiokafka has none): each input partition
has its own transactional producer, ``transactional.id = <prefix>.<topic>.<partition>``.
Whoever owns the partition starts that producer, which fences any zombie that still
holds it (its open transaction is aborted by the coordinator). Only then is the
audit topic read to its end, so the new owner knows every committed decision.

Per input partition and poll batch: begin; for each record decide and send its
forwards, dead letter, status events and chained audit record; send the input
offsets; commit. Memory (chain heads, forwarded ids) changes only after the commit
succeeds. On any error the transaction is aborted, the producer re-created, the
partition rewound to its committed offset and the batch retried — the redelivered
records are decided again from the same committed state, so output stays exactly
once. A record already covered by its chain head (offset <= head's source offset)
was decided in a committed transaction and is skipped, not re-forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from broker.audit import AuditRecord, Verdict, chain_id, chain_next
from broker.router._core import (
    Decision,
    InRecord,
    OutRecord,
    RejectReason,
    SeenMessage,
    decide,
)
from broker.router._memory import AuditView, RouterMemory
from broker.router._metrics import RouterMetrics
from broker.settings import Settings, client_kwargs
from broker.topics import TopicNames
from keys import Limits
from schemas import Directory

__all__ = ["Router"]

log = structlog.get_logger("crb.router")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Partition:
    tp: TopicPartition
    producer: AIOKafkaProducer
    failures: int = 0


@dataclass
class _Staged:
    decided: list[tuple[Any, Decision, AuditRecord]] = field(default_factory=list)
    """(input record, decision, its chained audit record), in input order."""


_RETRY_AFTER_CATCH_UP = frozenset({RejectReason.UNKNOWN_ORIGINAL, RejectReason.DUPLICATE_MESSAGE})


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, router: Router) -> None:
        self.router = router

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.router._release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.router._claim(assigned)


class Router:
    """Runs until ``stop`` is set; then finishes or aborts its open transaction."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.clock = clock
        self.metrics = metrics or RouterMetrics()
        self.names = TopicNames(settings.topics.prefix)
        r = settings.router
        self.limits = Limits(max_size=r.max_envelope_bytes, max_age=r.max_age, max_skew=r.max_skew)
        self.memory = RouterMemory(keep=max(r.reply_window, r.max_age + r.max_skew))
        self._kwargs = client_kwargs(settings.kafka)
        self._audit = AuditView(self.names.audit, self.memory, self._kwargs)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()

    # -- partition ownership ----------------------------------------------------
    def _transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.settings.router.transactional_id_prefix}.{tp.topic}.{tp.partition}"

    async def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._kwargs,
            transactional_id=self._transactional_id(tp),
            transaction_timeout_ms=self.settings.router.transaction_timeout_ms,
            max_request_size=self.settings.kafka.max_message_bytes,
            linger_ms=2,
        )
        await producer.start()  # InitProducerId: fences the previous owner
        return producer

    async def _claim(self, assigned: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in assigned:
                if tp not in self._partitions:
                    self._partitions[tp] = _Partition(tp, await self._new_producer(tp))
            await self._audit.catch_up()
            log.info(
                "partitions_assigned", partitions=[f"{t.topic}/{t.partition}" for t in assigned]
            )

    async def _release(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                part = self._partitions.pop(tp, None)
                if part is not None:
                    await part.producer.stop()
            log.info("partitions_revoked", partitions=[f"{t.topic}/{t.partition}" for t in revoked])

    # -- main loop --------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        r = self.settings.router
        await self._audit.start()
        consumer = AIOKafkaConsumer(
            **self._kwargs,
            group_id=r.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=r.max_batch,
            metadata_max_age_ms=5_000,
            fetch_max_bytes=self.settings.kafka.max_message_bytes * 4,
            max_partition_fetch_bytes=self.settings.kafka.max_message_bytes,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe(pattern=self.names.outbox_pattern, listener=_Rebalance(self))
        log.info("router_started", group=r.group_id, pattern=self.names.outbox_pattern)
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=r.poll_timeout_ms)
                if consumer.assignment():
                    self.ready.set()
                async with self._lock:
                    # Partitions are independent (own producer, own chain), so their
                    # transactions run concurrently: one partition's commit round
                    # trip overlaps another's checks.
                    work = [
                        self._process(consumer, part, records)
                        for tp, records in batch.items()
                        if records and (part := self._partitions.get(tp)) is not None
                    ]
                    await asyncio.gather(*work)
                self.memory.prune(self.clock())
        finally:
            log.info("router_stopping")
            for part in list(self._partitions.values()):
                with contextlib.suppress(Exception):
                    await part.producer.stop()
            self._partitions.clear()
            with contextlib.suppress(Exception):
                await consumer.stop()
            await self._audit.stop()
            log.info("router_stopped")

    async def _process(
        self, consumer: AIOKafkaConsumer, part: _Partition, records: list[Any]
    ) -> None:
        try:
            staged = await self._transaction(part, records)
        except (TimeoutError, KafkaError) as exc:
            part.failures += 1
            self.metrics.transaction_failures.inc()
            log.warning(
                "transaction_failed",
                partition=f"{part.tp.topic}/{part.tp.partition}",
                error=type(exc).__name__,
                retriable=getattr(exc, "retriable", False),
                attempt=part.failures,
            )
            await self._recover(consumer, part)
            return
        part.failures = 0
        done = time.time()
        for rec, decision, audit in staged.decided:
            self.memory.apply(audit)
            self._observe(decision, rec, done)

    async def _transaction(self, part: _Partition, records: list[Any]) -> _Staged:
        producer = part.producer
        head = self.memory.heads.get(chain_id(part.tp.topic, part.tp.partition))
        staged = await self._decide_all(records, head)
        await producer.begin_transaction()
        try:
            futures = []
            for _rec, decision, audit in staged.decided:
                for out in self._outputs(decision):
                    futures.append(
                        await producer.send(
                            out.topic, out.value, key=out.key, headers=list(out.headers)
                        )
                    )
                futures.append(
                    await producer.send(
                        self.names.audit, audit.to_bytes(), key=audit.chain.encode()
                    )
                )
            await producer.send_offsets_to_transaction(
                {part.tp: records[-1].offset + 1}, self.settings.router.group_id
            )
            await asyncio.gather(*futures)
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
        return staged

    async def _decide_all(self, records: list[Any], head: AuditRecord | None) -> _Staged:
        """Decide a poll batch in a worker thread: the event loop keeps serving Kafka,
        and the signature checks of concurrent partitions overlap (cryptography
        releases the GIL while verifying). The memory is copied here, in the loop."""
        staged = await asyncio.to_thread(self._decide_batch, records, head, dict(self.memory.seen))
        if any(d.reason in _RETRY_AFTER_CATCH_UP for _, d, _ in staged.decided):
            # Another router instance may have just forwarded the original (or the
            # same id): read the audit topic to its end and decide again.
            await self._audit.catch_up()
            staged = await asyncio.to_thread(
                self._decide_batch, records, head, dict(self.memory.seen)
            )
        return staged

    def _decide_batch(
        self, records: list[Any], head: AuditRecord | None, seen: dict[Any, SeenMessage]
    ) -> _Staged:
        """Pure: decisions and chained audit records for one partition's batch."""
        staged = _Staged()
        for rec in records:
            if head is not None and rec.offset <= head.source_offset:
                continue  # decided in an earlier, committed transaction
            decision = decide(
                InRecord(rec.topic, rec.partition, rec.offset, rec.key, rec.value),
                now=self.clock(),
                directory=self.directory,
                names=self.names,
                seen=seen,
                limits=self.limits,
            )
            if decision.remember is not None:
                # Messages forwarded earlier in this same batch count as seen.
                seen[decision.remember[0]] = decision.remember[1]
            head = chain_next(head, decision.audit)
            staged.decided.append((rec, decision, head))
        return staged

    @staticmethod
    def _outputs(decision: Decision) -> list[OutRecord]:
        out = list(decision.forwards)
        if decision.dead_letter is not None:
            out.append(decision.dead_letter)
        out.extend(decision.status)
        return out

    async def _recover(self, consumer: AIOKafkaConsumer, part: _Partition) -> None:
        """Re-create the producer and rewind the partition to its committed offset."""
        with contextlib.suppress(Exception):
            await part.producer.stop()
        await asyncio.sleep(min(5.0, 0.2 * 2 ** min(part.failures, 5)))
        try:
            part.producer = await self._new_producer(part.tp)
            await self._audit.catch_up()
            committed = await consumer.committed(part.tp)
            if committed is None:
                await consumer.seek_to_beginning(part.tp)
            else:
                consumer.seek(part.tp, committed)
        except (KafkaError, TimeoutError) as exc:
            # The next failed transaction on this partition tries to recover again.
            log.warning("recover_failed", error=type(exc).__name__)

    def _observe(self, decision: Decision, rec: Any, done: float) -> None:
        header = decision.header
        fields: dict[str, Any] = {
            "source": f"{rec.topic}/{rec.partition}@{rec.offset}",
            "message_id": str(header.message_id) if header else None,
            "case_id": str(header.case_id) if header else None,
        }
        if decision.verdict is Verdict.FORWARDED:
            route = f"{header.sender if header else '?'}->{','.join(decision.audit.recipients)}"
            self.metrics.forwarded.inc()
            for r in decision.audit.recipients:
                self.metrics.deliveries.labels(recipient=r).inc()
            if rec.timestamp is not None and rec.timestamp > 0:
                self.metrics.latency.observe(max(0.0, done - rec.timestamp / 1000.0))
            # Per-record success is debug: the audit topic is the durable per-record
            # trail, and a log line per forward halves the router's throughput.
            log.debug("forwarded", route=route, orphan=decision.audit.orphan, **fields)
        else:
            reason = decision.reason.value if decision.reason else "unknown"
            self.metrics.rejected.labels(reason=reason).inc()
            log.warning("dead_lettered", reason=reason, **fields)
