"""A reader that decides on absence must wait for open transactions (real Kafka).

Found by the chaos run (``bench/chaos.py``): a router SIGKILLed in the middle of a
commit leaves its transaction open until its successor takes the transactional
id or the broker times it out. Under ``read_committed`` that one open transaction
hides every record committed after it in the partition; the other router read
the audit topic "to its end", did not find a forward committed there, and
dead-lettered the receipts answering it as ``unknown_original``.
``TopicReader(settle=True)`` — the router's audit reader — reads to the high
watermark: it returns only once the open transaction is resolved, with the later
commit read."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from adapters.kafka import KafkaClients, Record, TopicReader
from tests._kafka import kafka_kwargs, kafka_settings
from tests.conftest import KafkaEndpoint, Names
from tests.integration._kafka_util import create_topics

pytestmark = pytest.mark.kafka


async def _transactional(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), transactional_id=transactional_id)
    await producer.start()
    return producer


async def test_settled_read_waits_for_a_dead_writers_open_transaction(
    kafka: KafkaEndpoint, names: Names
) -> None:
    topic = names.topic("audit")
    await create_topics(kafka.bootstrap, {topic: 1})
    dead_id, live_id = names.topic("dead"), names.topic("live")
    # The "killed router": a transaction begun and written to, never finished.
    dead = await _transactional(kafka.bootstrap, dead_id)
    await dead.begin_transaction()
    await (await dead.send(topic, b"uncommitted", key=b"k"))
    # The other router commits a forward after it.
    live = await _transactional(kafka.bootstrap, live_id)
    try:
        async with live.transaction():
            await (await live.send(topic, b"committed-after", key=b"k"))
    finally:
        await live.stop()
    clients = KafkaClients(kafka_settings(kafka.bootstrap))

    # Not settled: stops at the last stable offset, the later commit not seen.
    plain: list[Record] = []
    async with TopicReader(clients, topic) as reader:
        await reader.read_to_end(plain.append)
    assert [r.value for r in plain] == []

    settled: list[Record] = []
    reader = TopicReader(clients, topic, settle=True)
    await reader.start()
    try:
        reading = asyncio.create_task(reader.read_to_end(settled.append, timeout_s=120))
        # Still waiting while the transaction is open (bounded look, not a sync).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), 3)
        # The successor takes the transactional id: the open transaction is aborted.
        successor = await _transactional(kafka.bootstrap, dead_id)
        await successor.stop()
        await asyncio.wait_for(reading, 60)
    finally:
        await reader.stop()
        await dead.stop()
    assert [r.value for r in settled] == [b"committed-after"]
