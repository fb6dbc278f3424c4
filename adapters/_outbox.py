"""Producing to a participant's own outbox: idempotent, ``acks=all``, patient.

:class:`Outbox` sends exact envelope bytes keyed by case id and returns only when
Kafka acknowledged them on all in-sync replicas. Through a broker restart or a
leader election it retries the SAME bytes (the retry policy acts on
``Unavailable``) until ``deadline_s`` has passed, then raises a retriable
``SendError``. A retry can write a second copy of a record that was in fact
stored; both copies carry one message id and the router forwards the first and
dead-letters the other as ``duplicate_message`` — never two deliveries.

The producer comes from an injected factory (``adapters.kafka.KafkaClients`` or
a stand-in), so the retry logic is tested without a broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol
from uuid import UUID

import structlog

from adapters._errors import SendError
from adapters._retry import RetryPolicy
from adapters._settings import AdapterSettings
from adapters.kafka import (
    TRACEPARENT,
    OutRecord,
    TransportError,
    child_traceparent,
    current_traceparent,
    following,
    new_traceparent,
)
from schemas import TopicNames

__all__ = ["Outbox", "ProducerFactory", "ProducerLike"]

log = structlog.get_logger("crb.adapter")


class ProducerLike(Protocol):
    """What the outbox needs of a producer."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(self, record: OutRecord) -> None: ...


class ProducerFactory(Protocol):
    """Builds outbox producers (``adapters.kafka.KafkaClients`` or a stand-in)."""

    def producer(self) -> ProducerLike: ...


class Outbox:
    """The participant's outbox producer (use as ``async with``)."""

    def __init__(
        self,
        clients: ProducerFactory,
        topic: str,
        *,
        deadline_s: float = 300.0,
        max_wait_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.deadline_s = deadline_s
        self._clients = clients
        self._retry = RetryPolicy(max_s=max_wait_s, deadline_s=deadline_s)
        self._producer: ProducerLike | None = None
        self._lock = asyncio.Lock()
        self._sleep = sleep
        self._monotonic = monotonic

    @classmethod
    def of(
        cls,
        clients: ProducerFactory,
        names: TopicNames,
        participant: str,
        settings: AdapterSettings,
    ) -> Outbox:
        """``participant``'s outbox under ``names``, patient for ``settings.send_deadline_s``."""
        return cls(clients, names.outbox(participant), deadline_s=settings.send_deadline_s)

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except TransportError as exc:
                log.warning("producer_stop_failed", error=str(exc))

    async def _started(self) -> ProducerLike:
        # Concurrent sends (a batch of receipts) must share one producer: without
        # the lock each would start its own and all but one would leak.
        async with self._lock:
            if self._producer is None:
                producer = self._clients.producer()
                await producer.start()
                self._producer = producer
            return self._producer

    async def send(self, envelope: bytes, *, case_id: UUID, message_id: UUID) -> str:
        """Produce and wait for the acknowledgement; retry the same bytes until the
        deadline. Returns the record's ``traceparent``: a child of the record being
        handled (a receipt continues its referral's trace), else a new trace."""
        parent = current_traceparent()
        traceparent = child_traceparent(parent) if parent else new_traceparent()
        record = OutRecord(
            self.topic,
            key=str(case_id).encode(),
            value=envelope,
            headers=(
                ("crb-message-id", str(message_id).encode()),
                (TRACEPARENT, traceparent.encode("ascii")),
            ),
        )
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            producer = await self._started()
            await producer.send_and_wait(record)

        async def on_retry(exc: BaseException, attempt_no: int, wait: float) -> None:
            log.warning(
                "produce_retry", message_id=str(message_id), attempt=attempt_no, error=str(exc)
            )
            # A producer that timed out may hold a broken sequence: start afresh.
            await self.stop()

        try:
            with following(traceparent):
                await self._retry.run(
                    attempt, on_retry=on_retry, sleep=self._sleep, clock=self._monotonic
                )
        except TransportError as exc:
            if exc.retriable:
                raise SendError(
                    f"Kafka did not acknowledge {message_id} within {self.deadline_s:g}s "
                    f"({attempts} attempts, last: {exc})",
                    retriable=True,
                ) from exc
            raise SendError(f"Kafka refused {message_id}: {exc}") from exc
        return traceparent
