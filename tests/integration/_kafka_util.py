"""Small helpers for the real-Kafka tests: create topics, read a topic, and wait on
real conditions (a predicate, a group's committed offsets, a group's assignment)
instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from adapters.kafka import KafkaClients, OutRecord, Partition, Record, read_topic
from tests._kafka import kafka_kwargs, kafka_settings


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication: int = 1,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create topics (name -> partitions) and wait until their metadata is visible."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name, partitions, replication, topic_configs=dict(configs or {}))
                for name, partitions in topics.items()
            ]
        )
    finally:
        await admin.close()


async def drain(
    bootstrap: str,
    topic: str,
    *,
    isolation_level: str = "read_committed",
    expect: int | None = None,
    timeout_s: float = 20.0,
    idle_s: float = 2.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the beginning until ``expect`` records or ``idle_s`` of silence."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_kwargs(bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got = [r for rs in batch.values() for r in rs]
            if got:
                records.extend(got)
                last_new = time.monotonic()
            if expect is not None and len(records) >= expect:
                break
            if expect is None and time.monotonic() - last_new > idle_s:
                break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return records


def _clients(bootstrap: str) -> KafkaClients:
    return KafkaClients(kafka_settings(bootstrap))


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every committed record of ``topic`` up to the end each partition has now.

    Unlike :func:`drain` without ``expect`` this never waits for silence: it reads
    to the end offsets (``read_committed``: the last stable offsets) and stops."""
    records: list[Record] = []
    await read_topic(_clients(bootstrap), topic, records.append)
    return records


async def record_ends(bootstrap: str, *topics: str) -> dict[Partition, int]:
    """Per partition holding committed records: the offset after its last one.

    That, not the end offset, is what a consumer that has processed everything
    commits (``last offset + 1``): a transaction's commit marker takes an offset
    of its own after the last record, so the end offset can lie beyond."""
    ends: dict[Partition, int] = {}

    def take(r: Record) -> None:
        ends[r.tp] = max(ends.get(r.tp, 0), r.offset + 1)

    for topic in topics:
        await read_topic(_clients(bootstrap), topic, take)
    return ends


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
) -> None:
    """Check ``predicate`` (sync or async) until it holds; ``AssertionError`` naming
    ``what`` if it does not within ``timeout_s``. The pause between checks is a
    polling interval, not the synchronisation: only the condition ends the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for: {what}")
        await asyncio.sleep(interval_s)


async def wait_committed(
    bootstrap: str,
    group_id: str,
    targets: Mapping[Partition, int],
    *,
    what: str,
    timeout_s: float = 60.0,
) -> None:
    """Wait until ``group_id`` has committed at least ``targets`` on every partition
    (asked of the group coordinator, as ``kafka-consumer-groups --describe`` does)."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    seen: dict[Partition, int] = {}

    async def reached() -> bool:
        try:
            offsets = await admin.list_consumer_group_offsets(group_id)
        except KafkaError as exc:
            if exc.retriable:  # the coordinator is moving or loading: ask again
                return False
            raise
        seen.clear()
        seen.update({Partition(tp.topic, tp.partition): m.offset for tp, m in offsets.items()})
        return all(seen.get(p, -1) >= target for p, target in targets.items())

    try:
        await wait_until(reached, what=what, timeout_s=timeout_s, interval_s=0.1)
    except AssertionError as exc:
        wanted = {str(p): o for p, o in targets.items()}
        got = {str(p): seen.get(p) for p in targets}
        raise AssertionError(f"{exc} (committed {got}, wanted {wanted})") from None
    finally:
        await admin.close()


async def wait_group_caught_up(
    bootstrap: str, group_id: str, *topics: str, what: str, timeout_s: float = 60.0
) -> dict[Partition, int]:
    """Wait until ``group_id`` has committed past every record ``topics`` hold now
    (see :func:`record_ends`); returns those ends."""
    ends = await record_ends(bootstrap, *topics)
    await wait_committed(bootstrap, group_id, ends, what=what, timeout_s=timeout_s)
    return ends


async def group_assignment(bootstrap: str, group_id: str) -> tuple[str, list[set[Partition]]]:
    """The group's state (``Stable``, ``PreparingRebalance``, ...) and the partitions
    its coordinator assigned to each member."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    [group] = response.to_object()["groups"]
    members = [
        {
            Partition(tp.topic, tp.partition)
            for tp in ConsumerProtocolMemberAssignment.decode(m["member_assignment"]).partitions()
        }
        if m["member_assignment"]
        else set()
        for m in group["members"]
    ]
    return str(group["state"]), members


@contextlib.asynccontextmanager
async def running(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], ready: asyncio.Event, what: str
) -> AsyncIterator[asyncio.Task[None]]:
    """A service's ``run(stop)`` as a task, once ``ready`` is set (its start-up error,
    if it died first, is raised); stopped and awaited on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    started = asyncio.create_task(ready.wait())
    try:
        await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped the service
        assert ready.is_set(), f"{what} not ready within 60 s"
        yield task
    finally:
        stop.set()
        started.cancel()
        if not task.done():
            await asyncio.wait_for(task, 60)


def free_port() -> int:
    """A loopback port free right now (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def send_raw(bootstrap: str, topic: str, value: bytes, key: bytes = b"k") -> None:
    """Produce one record (acks=all) and wait for Kafka's acknowledgement."""
    producer = _clients(bootstrap).producer()
    await producer.start()
    try:
        await producer.send_and_wait(OutRecord(topic, key, value))
    finally:
        await producer.stop()
