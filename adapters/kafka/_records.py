"""Plain values that cross the plumbing's boundary: partitions and records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["OutRecord", "Partition", "Record"]


class Partition(NamedTuple):
    """A topic partition (equal to, and hashed like, aiokafka's ``TopicPartition``)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None
    """The record's Kafka timestamp, when it has one."""

    @property
    def tp(self) -> Partition:
        return Partition(self.topic, self.partition)

    @property
    def where(self) -> str:
        """``topic/partition@offset`` — the coordinates logs and reports name."""
        return f"{self.topic}/{self.partition}@{self.offset}"

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (``None`` if absent)."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @classmethod
    def of(cls, raw: Any) -> Record:
        """From an aiokafka ``ConsumerRecord``."""
        ts = raw.timestamp
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value,
            headers=tuple(raw.headers or ()),
            timestamp_ms=ts if ts is not None and ts > 0 else None,
        )


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
