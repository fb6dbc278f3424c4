"""A record batch aiokafka cannot decode becomes one stand-in record, not a stuck consumer.

Kafka takes a header key of any bytes (the Java client decodes it leniently);
aiokafka decodes header keys as strict UTF-8 while iterating a fetched batch and
raises ``UnicodeDecodeError`` out of ``getmany``. The consumer's position does not
move, so every later poll fetches the same batch and raises again: one record a
participant writes into its own outbox would stop the router for everyone, on
every restart (``tests/hostile``).

:func:`install` wraps the record sets aiokafka's fetcher builds (its module-level
``MemoryRecords``, the one place records are parsed for every consumer). Each batch
is iterated as before; if decoding raises ``UnicodeDecodeError`` (aiokafka's
pure-Python reader says ``CorruptRecordException``), the rest of that batch — the
record that failed and those after it in the same batch, which cannot be reached
without decoding it — is replaced by one stand-in record at the batch's last
offset, and the fetch goes on with the next batch. Only v2 batches are wrapped
(v0/v1 have no headers). The stand-in has no key,
the header ``crb-unreadable: 1`` and as value a small JSON document naming the
offsets it stands for and the decoder's error. Every reader treats it as the
malformed input it is (the router dead-letters it as ``malformed`` and commits past
the batch; readers of internal topics ignore it as unauthenticated).

Records already yielded from the batch before the failing one are delivered
normally. The wrapper is installed once per process, before the first consumer
is built (:class:`adapters.kafka.KafkaClients`), and relies on aiokafka's fetcher
iterating batches with ``for record in batch`` / ``next(batch)``, which
``tests/integration/test_hostile_records.py`` exercises against a real broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException

__all__ = ["UNREADABLE_HEADER", "install"]

UNREADABLE_HEADER = "crb-unreadable"


@dataclass(frozen=True, slots=True)
class _StandIn:
    """Shaped like aiokafka's record (what its fetcher reads off a record)."""

    offset: int
    timestamp: int
    timestamp_type: int
    value: bytes
    key: bytes | None = None
    checksum: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [(UNREADABLE_HEADER, b"1")])


def stand_in_value(first: int, last: int, error: str) -> bytes:
    """The stand-in's value: which offsets it replaces and why (canonical JSON)."""
    doc = {"error": error[:300], "first_offset": first, "last_offset": last, "unreadable": True}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class _Batch:
    """One v2 batch as the fetcher sees it; decoding failures end it with a stand-in."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch
        self._records: Iterator[Any] | None = None
        self._next: int = batch.base_offset
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> _Batch:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._records is None:
            self._records = iter(self._batch)
        try:
            record = next(self._records)
        # aiokafka's pure-Python reader (no C extension) says CorruptRecordException.
        except (UnicodeDecodeError, CorruptRecordException) as exc:
            self._done = True
            last = self._batch.next_offset - 1
            return _StandIn(
                offset=last,
                timestamp=self._batch.max_timestamp,
                timestamp_type=self._batch.timestamp_type,
                value=stand_in_value(self._next, last, f"{type(exc).__name__}: {exc}"),
            )
        self._next = record.offset + 1
        return record


class _Records:
    """A fetched record set whose batches are :class:`_Batch`."""

    def __init__(self, records: Any) -> None:
        self._records = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def next_batch(self, *args: Any, **kwargs: Any) -> Any:
        batch = self._records.next_batch(*args, **kwargs)
        # Only the v2 format has header keys (v0/v1 batches have no base offset).
        if batch is None or not hasattr(batch, "base_offset"):
            return batch
        return _Batch(batch)


def install() -> None:
    """Wrap the record sets of aiokafka's fetcher (once per process)."""
    original = fetcher.MemoryRecords
    if isinstance(original, _Tolerant):
        return
    fetcher.MemoryRecords = _Tolerant(original)


class _Tolerant:
    """Stands in for aiokafka's ``MemoryRecords`` class in its fetcher module."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def __call__(self, data: Any) -> _Records:
        return _Records(self.original(data))
