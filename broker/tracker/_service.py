"""The tracker's Kafka shell: rebuild, poll, fold, tick, produce — one transaction.

Start-up: a transactional producer with one id (``<prefix>-tracker`` unless set) is
started first; its InitProducerId fences any previous instance and aborts that
instance's open transaction. Only then is the compacted ``<prefix>.tracker`` topic
read from the beginning to its end (``read_committed``, no group): that is the
state. The ``<prefix>.status`` partitions are then assigned by hand and read from
the tracker group's committed offsets (earliest if none).

Per poll: :meth:`Ledger.step` folds the status events and ticks the timers
(``now`` from the injected clock) without changing the ledger; then, in one Kafka
transaction, every changed handover's JSON goes to the tracker topic (key
``<message_id>/<recipient>``), every timer event to the status topic (same key as
the router's events, header ``crb-source: tracker``) and the consumed status
offsets to the group. Only after the commit does the ledger take the changes. So
the tracker topic and the committed offsets always agree, and a restarted tracker
rebuilds exactly the state the previous one had committed. On a failed
transaction: abort, new producer, rewind to the committed offsets, fold again.

The tracker reads its own timer events back from the status topic; they are
already in the handover's history, so they fold as duplicates (no write).

One instance at a time: a second one fences the first, whose next transaction
fails with ``ProducerFenced`` — it then stops with :class:`TrackerFenced`.

Errors::

    TrackerError            the tracker cannot run (topic missing) — operator's fix
     └── TrackerFenced      another tracker instance took over
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from pydantic import ValidationError

from broker.kafka_util import partitions_of
from broker.settings import KafkaSettings, Settings, TrackerSettings, client_kwargs
from broker.topics import TopicNames
from broker.tracker._machine import Handover, Ledger, Policy, Sla, Step
from schemas import Directory, Priority, RoutingRules, StatusEvent

__all__ = [
    "Tracker",
    "TrackerError",
    "TrackerFenced",
    "policy_from",
    "read_state",
]

log = structlog.get_logger("crb.tracker")


class TrackerError(Exception):
    """The tracker cannot run as configured (e.g. a topic is missing)."""


class TrackerFenced(TrackerError):
    """Another tracker instance with the same transactional id took over."""


def utcnow() -> datetime:
    return datetime.now(UTC)


Escalation = Directory | RoutingRules | str | None


def policy_from(settings: TrackerSettings, escalation: Escalation) -> Policy:
    """The pure core's policy from the settings and the routing rules (pure)."""
    if isinstance(escalation, Directory):
        escalation = escalation.rules
    if isinstance(escalation, RoutingRules):
        escalation = escalation.escalation_recipient
    sla = Sla(
        receipt={
            Priority.URGENT: settings.receipt_sla_urgent,
            Priority.HIGH: settings.receipt_sla_high,
            Priority.ROUTINE: settings.receipt_sla_routine,
        },
        escalate_after=settings.escalate_after,
        fail_after=settings.fail_after,
    )
    return Policy(sla=sla, escalation_recipient=escalation, max_history=settings.max_history)


async def _read_to_end(
    kwargs: dict[str, Any], topic: str, on_record: Callable[[bytes | None, bytes | None], None]
) -> int:
    """Feed every committed record of ``topic`` to ``on_record``; returns the count."""
    partitions = await partitions_of(kwargs, topic)
    if not partitions:
        raise TrackerError(f"topic {topic} does not exist: run `crb topics apply`")
    consumer = AIOKafkaConsumer(
        **kwargs,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    count = 0
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)  # the last stable offsets
        while behind := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*behind, timeout_ms=500)
            for records in batch.values():
                for r in records:
                    on_record(r.key, r.value)
                    count += 1
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return count


async def read_state(kafka: KafkaSettings, topic: str) -> dict[str, Handover]:
    """The committed handovers on a tracker topic, by key (a tombstone deletes)."""
    state: dict[str, Handover] = {}

    def take(key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            state.pop(key.decode(errors="replace"), None)
            return
        try:
            h = Handover.model_validate_json(value)
        except ValidationError:
            log.warning("bad_state_record", key=key.decode(errors="replace"))
            return
        state[h.key] = h

    await _read_to_end(client_kwargs(kafka), topic, take)
    return state


class Tracker:
    """Runs until ``stop`` is set. ``ledger`` holds the committed state (read it for
    views); ``ready`` is set once the state is rebuilt and the status topic assigned."""

    def __init__(
        self,
        settings: Settings,
        escalation: Escalation,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topics.prefix)
        self.policy = policy_from(settings.tracker, escalation)
        self.ledger = Ledger(self.policy)
        self.clock = clock
        self.ready = asyncio.Event()
        self.transactions = 0
        self._kwargs = client_kwargs(settings.kafka)
        t = settings.tracker
        self.transactional_id = t.transactional_id or f"{settings.topics.prefix}-tracker"

    def snapshot(self) -> list[Handover]:
        """The committed handovers (a copy: safe to read while the tracker runs)."""
        return list(self.ledger.handovers.values())

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._kwargs,
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self.settings.tracker.transaction_timeout_ms,
            max_request_size=self.settings.kafka.max_message_bytes,
            linger_ms=2,
        )
        await producer.start()  # InitProducerId: fences the previous instance
        return producer

    async def rebuild(self) -> int:
        """Replace the ledger with the committed state of the tracker topic."""
        state = await read_state(self.settings.kafka, self.names.tracker)
        self.ledger = Ledger(self.policy)
        for h in state.values():
            self.ledger.load(h)
        log.info("tracker_rebuilt", handovers=len(state), topic=self.names.tracker)
        return len(state)

    async def run(self, stop: asyncio.Event) -> None:
        t = self.settings.tracker
        producer = await self._new_producer()
        consumer: AIOKafkaConsumer | None = None
        try:
            await self.rebuild()
            partitions = await partitions_of(self._kwargs, self.names.status)
            if not partitions:
                raise TrackerError(
                    f"topic {self.names.status} does not exist: run `crb topics apply`"
                )
            consumer = AIOKafkaConsumer(
                **self._kwargs,
                group_id=t.group_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                max_poll_records=t.max_batch,
            )
            await consumer.start()
            tps = [TopicPartition(self.names.status, p) for p in partitions]
            consumer.assign(tps)
            await self._rewind(consumer, tps)
            self.ready.set()
            log.info("tracker_started", group=t.group_id, transactional_id=self.transactional_id)
            while not stop.is_set():
                batch = await consumer.getmany(*tps, timeout_ms=t.poll_timeout_ms)
                events, offsets = self._parse(batch)
                step = self.ledger.step(events, self.clock())
                if not (step.changed or step.emitted or offsets):
                    continue
                try:
                    await self._transaction(producer, step, offsets)
                except ProducerFenced as exc:
                    raise TrackerFenced(
                        f"another tracker took over transactional id {self.transactional_id}"
                    ) from exc
                except (KafkaError, TimeoutError) as exc:
                    log.warning(
                        "transaction_failed",
                        error=type(exc).__name__,
                        retriable=getattr(exc, "retriable", False),
                    )
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    await asyncio.sleep(0.5)
                    producer = await self._new_producer()
                    await self._rewind(consumer, tps)
                    continue
                self.ledger.commit(step.changed.values())
                self.transactions += 1
                for e in step.emitted:
                    log.info(
                        "timer_event",
                        state=e.state.value,
                        message_id=str(e.message_id),
                        case_id=str(e.case_id),
                        route=f"{e.sender}->{e.recipient}",
                        escalated_to=e.escalated_to,
                    )
        finally:
            log.info("tracker_stopping")
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            log.info("tracker_stopped")

    async def _rewind(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    @staticmethod
    def _parse(
        batch: Mapping[TopicPartition, list[Any]],
    ) -> tuple[list[StatusEvent], dict[TopicPartition, int]]:
        events: list[StatusEvent] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for r in records:
                offsets[tp] = r.offset + 1
                if r.value is None:
                    continue  # a tombstone on the status topic: nothing to fold
                try:
                    events.append(StatusEvent.model_validate_json(r.value))
                except ValidationError:
                    log.warning("bad_status_event", source=f"{tp.topic}/{tp.partition}@{r.offset}")
        return events, offsets

    async def _transaction(
        self, producer: AIOKafkaProducer, step: Step, offsets: dict[TopicPartition, int]
    ) -> None:
        await producer.begin_transaction()
        try:
            futures = []
            for key, h in step.changed.items():
                futures.append(
                    await producer.send(
                        self.names.tracker,
                        h.model_dump_json().encode(),
                        key=key.encode(),
                        headers=[("crb-state", h.state.value.encode())],
                    )
                )
            for e in step.emitted:
                futures.append(
                    await producer.send(
                        self.names.status,
                        e.model_dump_json().encode(),
                        key=e.key().encode(),
                        headers=[
                            ("crb-state", e.state.value.encode()),
                            ("crb-source", b"tracker"),
                        ],
                    )
                )
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.settings.tracker.group_id)
            await asyncio.gather(*futures)
            await producer.commit_transaction()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
