"""An undecodable record batch ends in one stand-in record (adapters.kafka._undecodable).

Pure: batches are built with aiokafka's own record builder and read through its
fetcher's ``PartitionRecords`` — the code path every consumer takes — without a
broker. The real-Kafka case is ``test_a_header_key_that_is_not_utf8_…`` in
``tests/integration/test_hostile_records.py``."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.structs import TopicPartition

from adapters.kafka import Record, _undecodable
from tests.hostile.corpus import batch_builder, raw_key

TP = TopicPartition("crb.outbox.de.hotline", 0)
BASE = 10
READ_UNCOMMITTED = 0


def _batch(records: Sequence[tuple[bytes, bytes | None]], base: int = BASE) -> bytes:
    """One v2 batch of ``(value, raw header key or None)`` at offsets ``base…``."""
    builder = batch_builder()
    for i, (value, raw) in enumerate(records):
        headers = [(raw_key(raw), b"v")] if raw is not None else [("ok", b"v")]
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"k", value=value, headers=headers)
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the broker assigns it; the CRC does not cover it
    return bytes(data)


def _read(data: bytes) -> tuple[list[Any], int]:
    """What a consumer gets from a fetch of ``data``, and where it fetches next."""
    records = fetcher.MemoryRecords(data)
    partition = fetcher.PartitionRecords(TP, records, [], BASE, None, None, True, READ_UNCOMMITTED)
    return list(partition), partition.next_fetch_offset


@pytest.fixture(autouse=True)
def _installed() -> None:
    _undecodable.install()


def test_without_the_wrapper_aiokafka_raises_from_every_read() -> None:
    original = fetcher.MemoryRecords.original
    records = original(_batch([(b"a", None), (b"b", b"\xff\xfe")]))
    partition = fetcher.PartitionRecords(TP, records, [], BASE, None, None, True, 0)
    with pytest.raises(UnicodeDecodeError):
        list(partition)


def test_a_readable_batch_is_untouched() -> None:
    got, next_offset = _read(_batch([(b"a", None), (b"b", None), (b"c", None)]))
    assert [(r.offset, r.value, r.headers) for r in got] == [
        (10, b"a", (("ok", b"v"),)),
        (11, b"b", (("ok", b"v"),)),
        (12, b"c", (("ok", b"v"),)),
    ]
    assert next_offset == 13


@pytest.mark.parametrize("bad_at", [0, 1, 3])
def test_the_rest_of_the_batch_from_the_bad_record_is_one_stand_in(bad_at: int) -> None:
    values = [b"a", b"b", b"c", b"d"]
    batch = [(v, b"\xff\xfe" if i == bad_at else None) for i, v in enumerate(values)]
    got, next_offset = _read(_batch(batch))
    readable, stand_in = got[:-1], got[-1]
    assert [(r.offset, r.value) for r in readable] == [(BASE + i, values[i]) for i in range(bad_at)]
    # At the batch's last offset, so a commit after it moves past the whole batch.
    assert stand_in.offset == BASE + len(values) - 1
    assert stand_in.key is None
    assert stand_in.headers == ((_undecodable.UNREADABLE_HEADER, b"1"),)
    doc = json.loads(stand_in.value)
    assert doc["unreadable"] is True
    assert (doc["first_offset"], doc["last_offset"]) == (BASE + bad_at, BASE + len(values) - 1)
    assert doc["error"].startswith("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff")
    assert next_offset == BASE + len(values)  # the fetch goes on after the batch
    # What the plumbing hands the router: a record like any other, to be refused.
    record = Record.of(stand_in)
    assert (record.offset, record.value) == (stand_in.offset, stand_in.value)


def test_a_fetch_resumed_inside_the_batch_still_moves_past_it() -> None:
    """After a restart the consumer fetches from its committed offset, inside the
    batch: records before it are skipped, the stand-in is not before it."""
    data = _batch([(b"a", None), (b"b", b"\xff"), (b"c", None)])
    records = fetcher.MemoryRecords(data)
    partition = fetcher.PartitionRecords(TP, records, [], BASE + 1, None, None, True, 0)
    got = list(partition)
    assert [r.offset for r in got] == [BASE + 2]
    assert json.loads(got[0].value)["first_offset"] == BASE + 1
    assert partition.next_fetch_offset == BASE + 3


def test_installing_twice_wraps_once() -> None:
    wrapped = fetcher.MemoryRecords
    _undecodable.install()
    assert fetcher.MemoryRecords is wrapped


def test_the_pure_python_reader_s_error_is_handled_the_same() -> None:
    """Without aiokafka's C extension the same record raises CorruptRecordException."""
    from aiokafka.record.memory_records import _MemoryRecordsPy

    data = _batch([(b"a", None), (b"b", b"\xff\xfe")])
    records = _undecodable._Records(_MemoryRecordsPy(data))
    partition = fetcher.PartitionRecords(TP, records, [], BASE, None, None, True, 0)
    got = list(partition)
    assert [r.offset for r in got] == [BASE, BASE + 1]
    assert json.loads(got[1].value)["first_offset"] == BASE + 1
    assert partition.next_fetch_offset == BASE + 2


def test_old_format_batches_pass_through() -> None:
    """v0/v1 batches have no headers (and no base offset): not wrapped, still read."""
    from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(BASE, timestamp=1_700_000_000_000, key=b"k", value=b"old")
    got, next_offset = _read(bytes(builder.build()))
    assert [(r.offset, r.value) for r in got] == [(BASE, b"old")]
    assert next_offset == BASE + 1
