"""One settings object with typed sections, built once by the CLI and passed down.

Values come from (highest first) explicit arguments, environment variables with the
``CRB_`` prefix and ``__`` between section and field (``CRB_KAFKA__BOOTSTRAP``), and
the defaults here. Tests construct ``Settings(...)`` directly.

The aiokafka keyword arguments are built from the typed section by pure functions
(:func:`client_kwargs`), so security settings live in one place.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AdapterSettings",
    "HttpSettings",
    "KafkaSettings",
    "KeySettings",
    "RouterSettings",
    "Settings",
    "TopicSettings",
    "TrackerSettings",
    "client_kwargs",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    request_timeout_ms: int = 30_000
    max_message_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)


class TopicSettings(_Section):
    prefix: str = Field(default="crb", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    partitions: int = Field(default=3, ge=1, le=1000)
    replication: int = Field(default=1, ge=1, le=7)
    min_insync_replicas: int | None = Field(default=None, ge=1)
    audit_retention_ms: int = -1
    """Audit records are kept forever by default: the chain must stay verifiable."""
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000


class KeySettings(_Section):
    home: Path = Path(".crb")
    passphrase: SecretStr | None = None


class RouterSettings(_Section):
    group_id: str = "crb-router"
    transactional_id_prefix: str = "crb-router"
    max_batch: int = Field(default=500, ge=1)
    poll_timeout_ms: int = 200
    max_envelope_bytes: int = Field(default=1 << 20, ge=1024)
    max_age: timedelta = timedelta(hours=24)
    max_skew: timedelta = timedelta(minutes=5)
    transaction_timeout_ms: int = 60_000
    reply_window: timedelta = timedelta(days=90)
    """How long the router remembers a forwarded message, so that receipts and case
    decisions answering it can be authorised; a later reply is refused as
    ``unknown_original``. Memory grows with traffic times this window."""
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8080


class AdapterSettings(_Section):
    """A participant's adapter (``adapters``): local state, inbox consumer, HTTP sink."""

    state_dir: Path | None = None
    """Dedupe store, received-message records, quarantine, drop folder state
    (default: ``$CRB_HOME/adapters/<participant>``)."""
    group_id_prefix: str = "crb-adapter"
    """Inbox consumer group: ``<prefix>.<participant>``."""
    poll_timeout_ms: int = Field(default=500, ge=1)
    max_inbox_lag: timedelta = timedelta(days=7)
    """How far back an inbox record's Kafka timestamp may set the envelope's
    verification time (an adapter that was down for a day still opens its mail)."""
    send_deadline_s: float = Field(default=300.0, gt=0)
    """How long one produce keeps retrying through broker outages before failing."""
    http_attempts: int = Field(default=5, ge=1, le=100)
    http_backoff_s: float = Field(default=0.5, gt=0)
    http_backoff_max_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)


class TrackerSettings(_Section):
    """The tracker: SLA timers by priority, its consumer group and transactional id."""

    group_id: str = "crb-tracker"
    transactional_id: str | None = None
    """Default ``<prefix>-tracker``: one id, so a new instance fences the old one."""
    receipt_sla_urgent: timedelta = timedelta(minutes=5)
    receipt_sla_high: timedelta = timedelta(hours=1)
    receipt_sla_routine: timedelta = timedelta(hours=24)
    escalate_after: float = Field(default=1.0, gt=0)
    """Grace after ``overdue`` before escalating, as a multiple of the priority's SLA."""
    fail_after: float = Field(default=1.0, gt=0)
    """Grace after escalation (or overdue, if no one to escalate to) before ``failed``."""
    max_batch: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    transaction_timeout_ms: int = 60_000
    max_history: int = Field(default=100, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRB_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    keys: KeySettings = KeySettings()
    router: RouterSettings = RouterSettings()
    http: HttpSettings = HttpSettings()
    tracker: TrackerSettings = TrackerSettings()
    adapter: AdapterSettings = AdapterSettings()


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
