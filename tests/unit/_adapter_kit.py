"""Stand-ins for the adapter's logic tests: a recording producer, senders, settings.

The in-memory producer is for testing logic only; delivery claims are shown
against the real Kafka in ``tests/integration/test_adapter_flow.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters import AdapterSettings, Identity, Outbox, Sender
from adapters.kafka import Consumer, OutRecord
from schemas import TopicNames
from tests._fed import LiveFederation, now

NAMES = TopicNames("unit")


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

    def consumer(self, *, group_id: str | None = None) -> Consumer:
        raise AssertionError("unit tests drive Receiver.handle; the loop runs on real Kafka")


class FakeProducer:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    async def start(self) -> None:
        self.kafka.starts += 1

    async def stop(self) -> None:
        return None

    async def send_and_wait(self, record: OutRecord) -> None:
        if self.kafka.failures:
            raise self.kafka.failures.pop(0)
        assert record.value is not None
        self.kafka.sent.append(Sent(record.topic, record.value, record.key, list(record.headers)))


def settings(**adapter: Any) -> AdapterSettings:
    return AdapterSettings(**{"send_deadline_s": 5.0, **adapter})


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
    cfg: AdapterSettings | None = None,
) -> Sender:
    outbox = Outbox(
        kafka,
        NAMES.outbox(participant),
        deadline_s=(cfg or settings()).send_deadline_s,
        sleep=_no_sleep,
    )
    return Sender(identity(fed, participant), outbox, clock=clock)
