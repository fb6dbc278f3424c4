"""Proof that the project's local Apache Kafka is real and does what we build on.

These are the evidence for the Kafka version choice (see
broker/dev/kafka_local/README.md): if aiokafka's transactional consume-transform-produce
stopped working on the pinned version, ``test_transactional_consume_transform_produce``
fails.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from tests._kafka import kafka_kwargs
from tests.conftest import KafkaEndpoint, Names
from tests.integration._kafka_util import create_topics, drain

pytestmark = pytest.mark.kafka


async def test_idempotent_acks_all_round_trip(kafka: KafkaEndpoint, names: Names) -> None:
    """Records written by an idempotent acks=all producer come back once, in key order."""
    topic = names.topic()
    await create_topics(kafka.bootstrap, {topic: 3})
    producer = AIOKafkaProducer(
        **kafka_kwargs(kafka.bootstrap), acks="all", enable_idempotence=True
    )
    await producer.start()
    sent: dict[bytes, list[bytes]] = {}
    try:
        for i in range(300):
            key = f"case-{i % 7}".encode()
            value = f"referral-{i}".encode()
            await producer.send(topic, value, key=key)
            sent.setdefault(key, []).append(value)
        await producer.flush()
    finally:
        await producer.stop()

    records = await drain(kafka.bootstrap, topic, expect=300)
    got: dict[bytes, list[bytes]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.key is not None
        assert r.value is not None
        got.setdefault(r.key, []).append(r.value)
    assert sent == got


async def test_transactional_consume_transform_produce(kafka: KafkaEndpoint, names: Names) -> None:
    """A committed transaction is seen once by read_committed, an aborted one never,
    and the input offsets commit with the transaction (aiokafka's v0 txn requests)."""
    src, dst, group = names.topic("in"), names.topic("out"), names.group()
    await create_topics(kafka.bootstrap, {src: 1, dst: 1})
    plain = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), acks="all")
    await plain.start()
    for i in range(10):
        await plain.send_and_wait(src, f"m{i}".encode())
    await plain.stop()

    consumer = AIOKafkaConsumer(
        src,
        **kafka_kwargs(kafka.bootstrap),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=5,
    )
    txn = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), transactional_id=names.topic("tx"))
    await consumer.start()
    await txn.start()
    tp = TopicPartition(src, 0)
    try:
        # First batch: transform and commit.
        first = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
        assert len(first) == 5
        async with txn.transaction():
            for r in first:
                assert r.value is not None
                await txn.send(dst, r.value.upper())
            await txn.send_offsets_to_transaction({tp: first[-1].offset + 1}, group)
        # Second batch: transform, then abort.
        second = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
        assert len(second) == 5
        await txn.begin_transaction()
        for r in second:
            assert r.value is not None
            await txn.send(dst, b"ABORTED-" + r.value)
        await txn.send_offsets_to_transaction({tp: second[-1].offset + 1}, group)
        await txn.abort_transaction()
    finally:
        await txn.stop()
        await consumer.stop()

    committed_view = [r.value for r in await drain(kafka.bootstrap, dst)]
    assert committed_view == [b"M0", b"M1", b"M2", b"M3", b"M4"]
    # The aborted records were really written: an uncommitted reader sees them.
    raw_view = [
        r.value for r in await drain(kafka.bootstrap, dst, isolation_level="read_uncommitted")
    ]
    assert [v for v in raw_view if v and v.startswith(b"ABORTED-")] == [
        f"ABORTED-m{i}".encode() for i in range(5, 10)
    ]
    probe = AIOKafkaConsumer(**kafka_kwargs(kafka.bootstrap), group_id=group)
    await probe.start()
    try:
        assert await probe.committed(tp) == 5
    finally:
        await probe.stop()


@pytest.mark.cluster
@pytest.mark.slow
async def test_acked_writes_survive_sigkill_of_a_broker(
    kafka_cluster: KafkaEndpoint, names: Names, capsys: pytest.CaptureFixture[str]
) -> None:
    """On three brokers (replication 3, min ISR 2) a SIGKILLed broker loses no
    acknowledged record: every acked write is read back."""
    assert kafka_cluster.launcher is not None
    topic = names.topic()
    await create_topics(kafka_cluster.bootstrap, {topic: 3}, replication=3)
    producer = AIOKafkaProducer(
        **{**kafka_kwargs(kafka_cluster.bootstrap), "request_timeout_ms": 15_000},
        acks="all",
        enable_idempotence=True,
        retry_backoff_ms=200,
    )
    await producer.start()
    total, kill_at = 3000, 1000
    acked: set[bytes] = set()
    failed = 0
    killed_node = 0
    deadline = time.monotonic() + 120

    async def one(value: bytes) -> None:
        nonlocal failed
        try:
            await (await producer.send(topic, value, key=value[-1:]))
        except KafkaError:
            failed += 1
        else:
            acked.add(value)

    pending: list[asyncio.Task[None]] = []
    try:
        for i in range(total):
            if time.monotonic() > deadline:
                break
            if i == kill_at:
                # Kill the leader of partition 0 while writes are in flight.
                leader = producer.client.cluster.leader_for_partition(TopicPartition(topic, 0))
                killed_node = int(leader) if leader is not None else 1
                await asyncio.to_thread(
                    kafka_cluster.launcher.kill_node, killed_node, signal.SIGKILL
                )
                # The others still list it until its session times out; the
                # launcher asks each node itself, so it knows it is gone.
                rows = await asyncio.to_thread(kafka_cluster.launcher.status)
                row = next(r for r in rows if r["node"] == killed_node)
                assert (row["running"], row["answering"]) == (False, False)
            pending.append(asyncio.create_task(one(f"rec-{i:06d}".encode())))
            if len(pending) >= 50:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()

    records = await drain(kafka_cluster.bootstrap, topic, expect=len(acked), timeout_s=60)
    read_back = {r.value for r in records if r.value is not None}
    lost = acked - read_back
    with capsys.disabled():
        print(
            f"\n[3-broker kill] node {killed_node} SIGKILLed after {kill_at} sends: "
            f"sent={total} acked={len(acked)} failed={failed} "
            f"read_back={len(read_back)} lost={len(lost)}"
        )
    assert killed_node != 0
    assert len(acked) > kill_at  # writes continued after the kill
    assert lost == set()
    # Restart the killed broker so the cluster is whole again for other tests.
    # `up` returns once every node answers itself and lists all three: the next
    # test gets a whole cluster, not one whose restarted node is still starting.
    await asyncio.to_thread(kafka_cluster.launcher.up, nodes=3)
    rows = kafka_cluster.launcher.status()
    assert {1, 2, 3} == {row["node"] for row in rows if row["running"] and row["answering"]}
