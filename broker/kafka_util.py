"""Small Kafka helpers shared by the services."""

from __future__ import annotations

from typing import Any

__all__ = ["partitions_of"]


async def partitions_of(client_kwargs: dict[str, Any], topic: str) -> list[int]:
    """Partition ids of ``topic`` from a fresh metadata request (empty if it is absent)."""
    from aiokafka.client import AIOKafkaClient

    wanted = {
        k: v
        for k, v in client_kwargs.items()
        if k in ("bootstrap_servers", "security_protocol", "ssl_context", "request_timeout_ms")
        or k.startswith("sasl_")
    }
    client = AIOKafkaClient(**wanted)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return sorted(metadata.partitions_for_topic(topic) or ())
    finally:
        await client.close()
