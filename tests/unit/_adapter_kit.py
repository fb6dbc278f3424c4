"""Stand-ins for the adapter's logic tests: a recording producer, senders, settings.

The in-memory producer is for testing logic only; delivery claims are shown
against the real Kafka in ``tests/integration/test_adapter_flow.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters import Identity, Outbox, Sender
from broker.settings import AdapterSettings, Settings, TopicSettings
from tests.integration._fed import LiveFederation, now


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class FakeKafka:
    """Records acknowledged sends; ``failures`` are raised (in order) before succeeding."""

    sent: list[Sent] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    starts: int = 0

    def producer(self) -> FakeProducer:
        return FakeProducer(self)


class FakeProducer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    async def start(self) -> None:
        self.kafka.starts += 1

    async def stop(self) -> None:
        return None

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        if self.kafka.failures:
            raise self.kafka.failures.pop(0)
        assert value is not None
        self.kafka.sent.append(Sent(topic, value, key, list(headers or [])))
        return None


def settings(**adapter: Any) -> Settings:
    return Settings(
        topics=TopicSettings(prefix="unit"),
        adapter=AdapterSettings(**{"send_deadline_s": 5.0, **adapter}),
    )


def identity(fed: LiveFederation, participant: str) -> Identity:
    return Identity(
        participant, fed.signing[participant], (fed.opening[participant],), fed.directory()
    )


async def _no_sleep(_: float) -> None:
    return None


def sender(
    fed: LiveFederation,
    participant: str,
    kafka: FakeKafka,
    *,
    clock: Callable[[], datetime] = now,
    cfg: Settings | None = None,
) -> Sender:
    outbox = Outbox(
        cfg or settings(), participant, producer_factory=kafka.producer, sleep=_no_sleep
    )
    return Sender(identity(fed, participant), outbox, clock=clock)
