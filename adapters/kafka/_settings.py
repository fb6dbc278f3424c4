"""The Kafka sections of the settings, and the aiokafka keyword arguments they imply.

These are the adapters' own sections (a participant's adapter needs exactly
these); ``broker.settings.Settings`` composes them with the services' sections.
:func:`client_kwargs` is pure: every security setting lives in this one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["KafkaSettings", "Section", "TopicSettings", "client_kwargs"]


class Section(BaseModel):
    """Base of every settings section: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(Section):
    """How to reach and authenticate to the cluster."""

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    request_timeout_ms: int = Field(default=30_000, ge=100)
    linger_ms: int = Field(default=5, ge=0, le=1000)
    """How long a producer waits to fill a batch: a few ms turn many concurrent sends
    (a batch of receipts, a bulk upload) into few requests."""
    fetch_min_bytes: int = Field(default=1, ge=1)
    fetch_max_wait_ms: int = Field(default=500, ge=0)
    """A fetch returns once ``fetch_min_bytes`` are there or after this wait: raise
    the first to trade a little latency for bigger batches (fewer transactions and
    commits) under load."""
    connect_timeout_ms: int = Field(default=10_000, ge=100)
    """How long the administration client waits for a first answer from the cluster
    before reporting it unreachable."""
    max_message_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)


class TopicSettings(Section):
    """Topic names (the prefix) and how ``crb topics apply`` creates them."""

    prefix: str = Field(default="crb", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    partitions: int = Field(default=3, ge=1, le=1000)
    replication: int | None = Field(default=None, ge=1, le=7)
    """Replicas of each topic; ``None``: as many as the cluster has brokers, at most
    3 (decided by ``crb topics apply`` from the cluster's metadata)."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """``None``: 2 for topics with 3 or more replicas (an acknowledged write is on
    two brokers), else the broker's default."""
    audit_retention_ms: int = -1
    """Audit records are kept forever by default: the chain must stay verifiable."""
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    """Dead letters (original bytes, sealed) are kept 30 days: time to fix and redrive."""
    outbox_retention_ms: int = 7 * 24 * 3600 * 1000
    """Outbox records (sealed envelopes) are kept 7 days: the router takes them within
    seconds; the rest is room to replay after an incident."""
    inbox_retention_ms: int = 30 * 24 * 3600 * 1000
    """Inbox records (sealed envelopes) are kept 30 days: an agency's adapter that is
    down longer than that loses mail, so keep it above ``adapter.max_inbox_lag`` and
    the longest outage you plan for."""
    message_max_bytes: int = Field(default=(1 << 20) + (64 << 10), ge=1024)
    """``max.message.bytes`` of outboxes and inboxes: a 1 MiB envelope (the router's
    limit) plus headers and batch overhead."""
    dlq_message_max_bytes: int = Field(default=2 << 20, ge=1024)
    """``max.message.bytes`` of the dead-letter topic: room for any outbox record as
    is (the router dead-letters a larger one in a truncated form that fits)."""
    directory_message_max_bytes: int = Field(default=2 << 20, ge=1024)
    """``max.message.bytes`` of the directory topic: one signed version per record
    (2 MiB holds several hundred participants with hybrid keys; raise it together
    with ``kafka.max_message_bytes``)."""


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka connection keyword arguments for this section (pure)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.sasl_mechanism is not None:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        kwargs["ssl_context"] = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
    return kwargs
