"""Small helpers for the real-Kafka tests: create topics, drain a topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication: int = 1,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create topics (name -> partitions) and wait until their metadata is visible."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
        bootstrap_servers=bootstrap,
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
