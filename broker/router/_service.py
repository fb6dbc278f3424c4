"""The router's Kafka shell: poll, decide a batch, produce, commit — one transaction.

Everything it decides comes from the pure core (:func:`decide_batch`,
:class:`RouterMemory`); this module only moves records. Its Kafka clients come
from an injected :class:`~adapters.kafka.KafkaClients`.

Exactly-once forwarding without KIP-447 (aiokafka has none): each input partition
has its own transactional producer, ``transactional.id = <prefix>.<topic>.<partition>``.
Whoever the group assigns the partition starts that producer, which fences any
zombie that still holds it (the coordinator aborts the zombie's open transaction).
Only then is the audit topic read to its end (settled: to the high watermark), so
the new owner knows every committed decision; until that read succeeds nothing is
decided and polled records are read again. Both happen in the main loop, not in
the rebalance callback, which only takes note (see ``_on_assigned``).

Per input partition and poll batch: decide (in a worker thread: signature checks of
concurrent partitions overlap), then one transaction with the forwards, dead letters,
status events, chained audit records and the input offsets. Status events and audit
records are signed with the router's service key (``signer``); reading the audit
topic back, the router takes only records a router key signed — never skipping
input, nor believing a message forwarded, on the word of a forged record. Memory changes only
after the commit succeeds. Partitions of one poll commit concurrently; a duplicate
message id arriving on two partitions in the same poll is then caught by the
adapters' dedupe (the second line), not by the router.

Failures, by the plumbing's error tree:

- ``Fenced``: another router owns the partition now. Stop owning it (pause it, drop
  the producer) and never fence back; if the group still assigns it here after
  ``fenced_reclaim_s`` — the zombie is out of the group by then — take it back.
- anything retriable: abort (done by the transaction), back off by the retry policy,
  rewind to the committed offset; the producer is re-created at the next poll, so a
  router that lost the partition meanwhile learns it from the rebalance first.
- anything else: the same, logged as an error (a record the broker refuses outright
  must not stop every other partition).

The directory is live: each batch is decided with the newest valid version the
follower (``adapters.DirectoryFollower``, run beside the router) has taken. A
batch with a refusal that a newer directory could lift (``RETRY_AFTER_REFRESH``:
an unknown sender or key, a suspended participant) makes the router read the
directory topic to its end first and, if that found a newer version, decide the
batch again — so revocation takes effect within one refresh, and a participant
added and published before its first referral is never refused as unknown.

A record already covered by its chain head (offset <= head's source offset) was
decided in a committed transaction and is skipped, not re-forwarded.

Restarts do not replay history (``router.snapshot``, :mod:`broker.router._store`):
the forwarded messages live in a local SQLite snapshot rather than in RAM, and
every ``checkpoint_s`` the router reads the audit topic to its end, forgets what
left the reply window and saves its chain heads with the audit positions they are
complete up to. A restart loads the heads and reads only the audit records after
those positions. The router's own audit records are recognised by their exact
bytes when read back (already applied at commit) and are not parsed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from adapters import DirectoryFollower, RetryPolicy
from adapters.kafka import (
    Consumer,
    Fenced,
    KafkaClients,
    OutRecord,
    Partition,
    Record,
    TopicReader,
    TransactionalProducer,
    TransportError,
    sign,
    trace_id,
    traceparent_of,
    with_traceparent,
)
from broker import tracing
from broker.audit import AuditRecord, Verdict, authentic, chain_id
from broker.router._core import RoutingDecision
from broker.router._memory import Batch, RouterMemory, decide_batch
from broker.router._metrics import RouterMetrics
from broker.router._store import RouterSnapshot
from broker.settings import Settings
from keys import STATUS_CONTEXT, Limits, LiveDirectory, RecordSigner
from schemas import Clock, Directory, ServiceRole, TopicNames, utcnow

__all__ = ["Router"]

log = structlog.get_logger("crb.router")


@dataclass
class _Owned:
    """An input partition the group assigned to this router."""

    tp: Partition
    producer: TransactionalProducer | None = None
    """``None`` until (re-)created at the next poll, or while fenced."""
    failures: int = 0
    fenced_at: float | None = None
    """``time.monotonic()`` when another router fenced us here."""


class Router:
    """Runs until ``stop`` is set; then finishes or aborts its open transactions."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory | LiveDirectory,
        *,
        signer: RecordSigner,
        clients: KafkaClients | None = None,
        clock: Clock = utcnow,
        metrics: RouterMetrics | None = None,
        follower: DirectoryFollower | None = None,
        tracer: Any = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer if tracer is not None else tracing.tracer("crb.router")
        """OpenTelemetry tracer for the per-batch spans (see :mod:`broker.tracing`)."""
        self.live = directory if isinstance(directory, LiveDirectory) else LiveDirectory(directory)
        self.follower = follower
        if signer.role is not ServiceRole.ROUTER:
            raise ValueError(f"the router signs with a router key, not a {signer.role} key")
        self.signer = signer
        self.unauthenticated = 0
        """Audit records read back that no router key signed (ignored, logged)."""
        self.clients = clients or KafkaClients(settings.kafka)
        self.clock = clock
        self.metrics = metrics or RouterMetrics()
        self.names = TopicNames(settings.topics.prefix)
        r = settings.router
        self.limits = Limits(max_size=r.max_envelope_bytes, max_age=r.max_age, max_skew=r.max_skew)
        self.memory = RouterMemory(keep=max(r.reply_window, r.max_age + r.max_skew))
        self.snapshot: RouterSnapshot | None = None
        """The local snapshot while running (``router.snapshot``), if any."""
        self.retry = RetryPolicy(initial_s=0.2, max_s=5.0)
        # Settled: a decision on what no router forwarded must not be taken while a
        # transaction (a killed router's) hides later commits (adapters.kafka._reader).
        self._audit = TopicReader(self.clients, self.names.audit, settle=True)
        self._own: set[bytes] = set()
        """Audit records this router committed and has not read back yet."""
        self.restored: dict[str, float | int | bool] = {}
        """How the last start went: from a snapshot or not, tail length, seconds."""
        self._owned: dict[Partition, _Owned] = {}
        self._behind = False
        """A producer was started (a partition taken, or taken back) and the settled
        audit read that must follow it has not succeeded yet: decide nothing."""
        self._catch_up_failures = 0
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()

    @property
    def directory(self) -> Directory:
        """The directory the next batch is decided with."""
        return self.live.current

    # -- the audit trail ----------------------------------------------------------
    async def catch_up(self, *, settle: bool = True) -> int:
        """Read the audit topic to its end into the memory; returns records applied
        (the router's own, already applied at commit, are recognised and skipped).

        ``settle``: to the high watermark, waiting for open transactions — before any
        decision. The start-up read is not settled (nothing is decided until
        partitions are assigned, and then this router's producers abort its own
        earlier incarnation's open transactions before a settled read)."""
        applied = 0
        pending: list[AuditRecord] = []
        directory = self.directory
        own = self._own

        def take(r: Record) -> None:
            nonlocal applied
            if r.value is None:
                return
            if r.value in own:
                own.discard(r.value)
                return
            try:
                record = AuditRecord.model_validate_json(r.value)
            except ValueError:
                record = None
            if record is None or not authentic(record, directory):
                # Never skip input, nor take a message as forwarded, on the word of a
                # record no router key signed. `crb audit verify` reports it too.
                self.unauthenticated += 1
                log.error("audit_record_unauthenticated", source=r.where)
                return
            pending.append(record)
            applied += 1
            if len(pending) >= 5_000:
                self.memory.apply_all(pending)
                pending.clear()

        # Long enough for a dead router's open transaction to time out on the broker.
        wait_s = self.settings.router.transaction_timeout_ms / 1000 + 30
        try:
            await self._audit.read_to_end(take, timeout_s=wait_s, settle=settle)
        finally:
            # Also when the read fails part way: the reader has moved past these
            # (committed) records and will not return them again.
            self.memory.apply_all(pending)
        return applied

    async def _restore(self) -> None:
        """Start the audit reader: from the snapshot's positions when it has them and
        they are still inside the topic, else from the beginning (snapshot emptied)."""
        started = time.monotonic()
        positions: dict[int, int] | None = None
        path = self.settings.router.snapshot
        if path is not None:
            self.snapshot = RouterSnapshot.open(
                path, self.names.audit, cache_mib=self.settings.router.snapshot_cache_mib
            )
            if self.snapshot is None:
                log.warning("router_snapshot_in_use", path=str(path))
            else:
                self.memory = RouterMemory(self.memory.keep, self.snapshot.seen)
                self.memory.heads, positions = self.snapshot.load()
        resumed = await self._audit.start(from_positions=positions)
        if self.snapshot is not None and not resumed:
            if positions is not None:
                log.warning("router_snapshot_discarded", path=str(self.snapshot.path))
            self.snapshot.reset(self.names.audit)
            self.memory.heads = {}
        tail = await self.catch_up(settle=False)
        await self._checkpoint()
        self.restored = {
            "from_snapshot": resumed,
            "audit_records_read": tail,
            "seconds": round(time.monotonic() - started, 3),
            "chains": len(self.memory.heads),
        }
        log.info("router_memory_restored", **self.restored)

    async def _checkpoint(self) -> None:
        """Forget expired messages; save heads and audit positions to the snapshot
        (the caller has just read the audit topic to its end)."""
        self.memory.prune(self.clock())
        # Everything committed so far was read back: what is left here was applied
        # from the topic before its commit returned (harmless, idempotent).
        self._own.clear()
        if self.snapshot is not None:
            self.snapshot.checkpoint(self.memory.heads, await self._audit.positions())

    # -- partition ownership --------------------------------------------------------
    def _transactional_id(self, tp: Partition) -> str:
        return f"{self.settings.router.transactional_id_prefix}.{tp.topic}.{tp.partition}"

    async def _start_producer(self, owned: _Owned) -> None:
        """Own the partition's transactional id (the caller then reads the audit topic
        to its end: the fenced owner's last commit is there)."""
        producer = self.clients.transactional_producer(
            self._transactional_id(owned.tp),
            transaction_timeout_ms=self.settings.router.transaction_timeout_ms,
        )
        await producer.start()  # InitProducerId: fences the previous owner
        owned.producer = producer
        owned.fenced_at = None

    async def _drop_producer(self, owned: _Owned) -> None:
        producer, owned.producer = owned.producer, None
        if producer is not None:
            with contextlib.suppress(TransportError):
                await producer.stop()

    async def _on_assigned(self, assigned: list[Partition]) -> None:
        """Only take note: the main loop starts the producers and reads the audit
        topic before deciding anything. Neither may run here — a callback that
        raises is only logged by aiokafka (the partitions stay assigned, decided on
        a stale memory), and one that waits (an open transaction can hold the audit
        read for a minute) sends no heartbeat and is thrown out of the group."""
        async with self._lock:
            for tp in assigned:
                self._owned.setdefault(tp, _Owned(tp))
            log.info("partitions_assigned", partitions=[str(t) for t in assigned])

    async def _on_revoked(self, revoked: list[Partition]) -> None:
        async with self._lock:
            for tp in revoked:
                owned = self._owned.pop(tp, None)
                if owned is not None:
                    await self._drop_producer(owned)
            log.info("partitions_revoked", partitions=[str(t) for t in revoked])

    async def _ensure_producers(self, consumer: Consumer) -> None:
        """Start the producers of newly assigned partitions, re-create those dropped
        after a failure, and take a fenced partition back once ``fenced_reclaim_s``
        has passed and the group still assigns it here. Any start leaves the router
        :attr:`_behind` until a settled audit read (:meth:`_caught_up`)."""
        now = time.monotonic()
        assigned = consumer.assignment()
        started = False
        for owned in self._owned.values():
            if owned.producer is not None or owned.tp not in assigned:
                continue
            fenced = owned.fenced_at is not None
            if fenced and now - (owned.fenced_at or now) < self.settings.router.fenced_reclaim_s:
                continue
            try:
                await self._start_producer(owned)
                if fenced:
                    # Paused since the fence, past records it never committed.
                    log.warning("partition_reclaimed", partition=str(owned.tp))
                    await consumer.rewind([owned.tp])
                    consumer.resume(owned.tp)
            except TransportError as exc:
                log.warning("producer_start_failed", partition=str(owned.tp), error=str(exc))
                continue
            started = True
        if started:
            self._behind = True

    async def _caught_up(self, consumer: Consumer) -> bool:
        """The settled audit read after a producer start: the fenced owner's last
        commit is there. If it fails (a transaction Kafka cannot resolve yet holds
        the audit partition), nothing is decided: the polled records are read again
        from the committed offsets after the retry policy's pause."""
        try:
            await self.catch_up()
        except TransportError as exc:
            self._catch_up_failures += 1
            log.warning(
                "audit_catch_up_failed",
                error=str(exc),
                retriable=exc.retriable,
                attempt=self._catch_up_failures,
            )
            with contextlib.suppress(TransportError):
                await consumer.rewind(consumer.assignment())
            await asyncio.sleep(self.retry.delay(self._catch_up_failures))
            return False
        self._behind = False
        self._catch_up_failures = 0
        return True

    # -- main loop --------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        r = self.settings.router
        consumer: Consumer | None = None
        try:
            await self._restore()
            next_checkpoint = time.monotonic() + r.checkpoint_s
            consumer = self.clients.consumer(
                group_id=r.group_id,
                max_poll_records=r.max_batch,
                metadata_max_age_ms=5_000,
                session_timeout_ms=r.session_timeout_ms,
            )
            await consumer.start()
            consumer.subscribe(
                pattern=self.names.outbox_pattern,
                on_assigned=self._on_assigned,
                on_revoked=self._on_revoked,
            )
            log.info("router_started", group=r.group_id, pattern=self.names.outbox_pattern)
            while not stop.is_set():
                batch = await consumer.poll(timeout_ms=r.poll_timeout_ms)
                async with self._lock:
                    await self._ensure_producers(consumer)
                # Outside the lock: the rebalance callbacks take it, and this read can
                # wait a minute. Only this loop starts producers, so none starts
                # meanwhile; a revocation meanwhile only drops some.
                if self._behind and not await self._caught_up(consumer):
                    continue
                async with self._lock:
                    if consumer.assignment():
                        self.ready.set()  # partitions owned, audit read: deciding
                    work, unowned = [], []
                    for tp, records in batch.items():
                        owned = self._owned.get(tp)
                        if owned is not None and owned.producer is not None:
                            work.append(self._process(consumer, owned, records))
                        elif owned is not None and owned.fenced_at is None:
                            unowned.append(tp)
                    if unowned:
                        # Its producer did not start: read these again once it has,
                        # rather than skip them.
                        with contextlib.suppress(TransportError):
                            await consumer.rewind(unowned)
                    await asyncio.gather(*work)
                    if time.monotonic() >= next_checkpoint:
                        await self._catch_up_and_checkpoint()
                        next_checkpoint = time.monotonic() + r.checkpoint_s
        finally:
            log.info("router_stopping")
            for owned in list(self._owned.values()):
                await self._drop_producer(owned)
            self._owned.clear()
            if consumer is not None:
                with contextlib.suppress(TransportError):
                    await consumer.stop()
            if self.snapshot is not None and self.restored:
                await self._catch_up_and_checkpoint()
            with contextlib.suppress(TransportError):
                await self._audit.stop()
            if self.snapshot is not None:
                self.snapshot.close()
                self.snapshot = None
            log.info("router_stopped")

    async def _catch_up_and_checkpoint(self) -> None:
        """The periodic checkpoint; a Kafka failure only postpones it."""
        try:
            await self.catch_up()
            await self._checkpoint()
        except TransportError as exc:
            log.warning("checkpoint_postponed", error=str(exc), retriable=exc.retriable)

    async def _process(self, consumer: Consumer, owned: _Owned, records: list[Record]) -> None:
        try:
            batch = await self._transaction(owned, records)
        except Fenced:
            # Another router took this partition: stop owning it, never fence back.
            owned.fenced_at = time.monotonic()
            consumer.pause(owned.tp)
            await self._drop_producer(owned)
            log.warning("partition_fenced", partition=str(owned.tp))
            return
        except TransportError as exc:
            owned.failures += 1
            self.metrics.transaction_failures.inc()
            (log.warning if exc.retriable else log.error)(
                "transaction_failed",
                partition=str(owned.tp),
                error=str(exc),
                retriable=exc.retriable,
                attempt=owned.failures,
            )
            await self._drop_producer(owned)
            await asyncio.sleep(self.retry.delay(owned.failures))
            with contextlib.suppress(TransportError):
                await consumer.rewind([owned.tp])
            return
        owned.failures = 0
        done = time.time()
        self.memory.apply_all(audit for _, _, audit in batch.decided)
        for rec, decision, _ in batch.decided:
            self._observe(decision, rec, done)

    async def _transaction(self, owned: _Owned, records: list[Record]) -> Batch:
        parents = [traceparent_of(r.headers) for r in records]
        with self.tracer.start_as_current_span(
            "router.batch",
            links=tracing.batch_links(parents),
            attributes={
                "messaging.system": "kafka",
                "messaging.source.name": owned.tp.topic,
                "messaging.kafka.source.partition": owned.tp.partition,
                "messaging.batch.message_count": len(records),
            },
        ):
            return await self._transact(owned, records, parents)

    async def _transact(
        self, owned: _Owned, records: list[Record], parents: list[str | None]
    ) -> Batch:
        producer = owned.producer
        assert producer is not None
        batch = await self._decide(owned.tp, records)
        if batch.needs_catch_up:
            # Another router instance may have just forwarded the original (or the
            # same id): read the audit topic to its end and decide again.
            await self.catch_up()
            batch = await self._decide(owned.tp, records)
        if batch.needs_refresh and self.follower is not None and await self.follower.refresh():
            # A newer directory was published since the last refresh (a participant
            # added or reinstated before its first message): decide again with it.
            batch = await self._decide(owned.tp, records)
        outputs: list[OutRecord] = []
        written: list[bytes] = []
        signer = self.signer
        trace = {r.offset: tp for r, tp in zip(records, parents, strict=True)}
        for rec, decision, audit in batch.decided:
            parent = trace.get(rec.offset)  # every output continues its input's trace
            outputs.extend(with_traceparent(f, parent) for f in decision.forwards)
            if decision.dead_letter is not None:
                outputs.append(with_traceparent(decision.dead_letter, parent))
            outputs.extend(
                sign(with_traceparent(s, parent), signer, STATUS_CONTEXT) for s in decision.status
            )
            signed = audit.signed(signer)
            written.append(signed.to_bytes())
            outputs.append(OutRecord(self.names.audit, audit.chain.encode(), written[-1]))
        await producer.commit(
            outputs,
            offsets={owned.tp: records[-1].offset + 1},
            group_id=self.settings.router.group_id,
        )
        self._own.update(written)
        return batch

    async def _decide(self, tp: Partition, records: list[Record]) -> Batch:
        """Decide in a worker thread: the event loop keeps serving Kafka, and the
        signature checks of concurrent partitions overlap (cryptography releases the
        GIL while verifying)."""
        head = self.memory.heads.get(chain_id(tp.topic, tp.partition))
        return await asyncio.to_thread(
            decide_batch,
            records,
            head=head,
            seen=self.memory.seen,
            now=self.clock(),
            directory=self.directory,
            names=self.names,
            limits=self.limits,
            dead_letter_max=self.settings.router.max_dead_letter_bytes,
            redelivery_min=self.settings.router.redelivery_min,
        )

    def _observe(self, decision: RoutingDecision, rec: Record, done: float) -> None:
        header = decision.header
        fields: dict[str, Any] = {
            "source": rec.where,
            "message_id": str(header.message_id) if header else None,
            "case_id": str(header.case_id) if header else None,
            "trace_id": trace_id(traceparent_of(rec.headers)),
        }
        if decision.verdict is Verdict.FORWARDED:
            route = f"{header.sender if header else '?'}->{','.join(decision.audit.recipients)}"
            self.metrics.forwarded.inc()
            for r in decision.audit.recipients:
                self.metrics.deliveries.labels(recipient=r).inc()
            if rec.timestamp_ms is not None:
                self.metrics.latency.observe(max(0.0, done - rec.timestamp_ms / 1000.0))
            # Per-record success is debug: the audit topic is the durable per-record
            # trail, and a log line per forward halves the router's throughput.
            log.debug("forwarded", route=route, orphan=decision.audit.orphan, **fields)
        else:
            reason = decision.reason.value if decision.reason else "unknown"
            self.metrics.rejected.labels(reason=reason).inc()
            log.warning("dead_lettered", reason=reason, **fields)
