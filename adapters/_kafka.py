"""Producing to a participant's own outbox: idempotent, ``acks=all``, patient.

:class:`Outbox` sends exact envelope bytes keyed by case id and returns only when
Kafka acknowledged them on all in-sync replicas. Through a broker restart or a
leader election it retries the SAME bytes (``retriable`` errors and timeouts)
until ``send_deadline_s`` has passed, then raises ``SendError``. A retry can write
a second copy of a record that was in fact stored; both copies carry one message
id and the router forwards the first and dead-letters the other as
``duplicate_message`` — never two deliveries.

The producer is injected (anything with aiokafka's ``start``/``stop``/
``send_and_wait``), so the retry logic is tested without a broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from uuid import UUID

import structlog

from adapters._errors import SendError
from broker.settings import Settings, client_kwargs
from broker.topics import TopicNames

__all__ = ["Outbox", "ProducerLike", "is_retriable"]

log = structlog.get_logger("crb.adapter")


class ProducerLike(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...


def is_retriable(exc: BaseException) -> bool:
    """Kafka's own verdict (``retriable``), plus timeouts: the broker may be restarting."""
    from aiokafka.errors import KafkaTimeoutError

    return isinstance(exc, KafkaTimeoutError | TimeoutError) or bool(
        getattr(exc, "retriable", False)
    )


def _aiokafka_producer(settings: Settings) -> ProducerLike:
    from aiokafka import AIOKafkaProducer

    producer: ProducerLike = AIOKafkaProducer(
        **client_kwargs(settings.kafka),
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.kafka.max_message_bytes,
        linger_ms=0,
    )
    return producer


class Outbox:
    """The participant's outbox producer (use as ``async with``)."""

    def __init__(
        self,
        settings: Settings,
        participant: str,
        *,
        producer_factory: Callable[[], ProducerLike] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = TopicNames(settings.topics.prefix).outbox(participant)
        self.deadline_s = settings.adapter.send_deadline_s
        self._factory = producer_factory or (lambda: _aiokafka_producer(settings))
        self._producer: ProducerLike | None = None
        self._sleep = sleep
        self._monotonic = monotonic

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def _started(self) -> ProducerLike:
        if self._producer is None:
            producer = self._factory()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def send(self, envelope: bytes, *, case_id: UUID, message_id: UUID) -> None:
        """Produce and wait for the acknowledgement; retry the same bytes until the deadline."""
        from aiokafka.errors import KafkaError

        deadline = self._monotonic() + self.deadline_s
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                producer = await self._started()
                await producer.send_and_wait(
                    self.topic,
                    envelope,
                    key=str(case_id).encode(),
                    headers=[("crb-message-id", str(message_id).encode())],
                )
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                if not is_retriable(exc) and not isinstance(exc, OSError):
                    raise SendError(f"Kafka refused {message_id}: {type(exc).__name__}") from exc
                if self._monotonic() + delay > deadline:
                    raise SendError(
                        f"Kafka did not acknowledge {message_id} within {self.deadline_s:g}s "
                        f"({attempt} attempts, last: {type(exc).__name__})",
                        retriable=True,
                    ) from exc
                log.warning(
                    "produce_retry",
                    message_id=str(message_id),
                    attempt=attempt,
                    error=type(exc).__name__,
                )
                # A producer that timed out may hold a broken sequence: start afresh.
                await self.stop()
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
