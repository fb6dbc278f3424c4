"""One settings object, composed of the sections each layer owns.

``adapters.kafka`` owns ``KafkaSettings`` and ``TopicSettings``, ``adapters`` owns
``AdapterSettings``; the services' sections (:class:`RouterSettings`,
:class:`TrackerSettings`) live here, and :class:`Settings` composes them all.

pydantic-settings does the merging, highest first: keyword arguments (what the
CLI's flags say), environment variables with the ``CRB_`` prefix and ``__``
between section and field (``CRB_KAFKA__BOOTSTRAP``, ``CRB_ROUTER__GROUP_ID``),
then the defaults here. ``home`` (``CRB_HOME``, default ``./.crb``) is the one
home of local state: keys, the signed directory, adapter state, the local Kafka.
Tests construct ``Settings(...)`` directly.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters import AdapterSettings
from adapters.kafka import KafkaSettings, Section, TopicSettings

__all__ = [
    "AdapterSettings",
    "KafkaSettings",
    "RouterSettings",
    "Settings",
    "TopicSettings",
    "TrackerSettings",
]


class RouterSettings(Section):
    group_id: str = "crb-router"
    transactional_id_prefix: str = "crb-router"
    max_batch: int = Field(default=500, ge=1)
    poll_timeout_ms: int = 200
    max_envelope_bytes: int = Field(default=1 << 20, ge=1024)
    max_dead_letter_bytes: int = Field(default=(1 << 20) + (512 << 10), ge=8192)
    """The largest dead letter kept as is; a larger record is dead-lettered as its
    size, SHA-256 and first 4 KiB (must fit the dead-letter topic's
    ``max.message.bytes`` and ``kafka.max_message_bytes``)."""
    max_age: timedelta = timedelta(hours=24)
    max_skew: timedelta = timedelta(minutes=5)
    transaction_timeout_ms: int = 60_000
    reply_window: timedelta = timedelta(days=90)
    """How long the router remembers a forwarded message (from when it forwarded
    it), so that receipts and case decisions answering it can be authorised; a
    later reply is refused as ``unknown_original``. Memory grows with traffic
    times this window."""
    redelivery_min: timedelta = timedelta(minutes=1)
    """Least time between two forwards of one message id: a sender's authorised
    redelivery (its referral sealed again under the same id) sooner than this is a
    duplicate (``broker.router.redelivery_allowed``)."""
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    """How long the group waits for a silent router (crashed, frozen) before its
    partitions go to the others."""
    fenced_reclaim_s: float = Field(default=30.0, gt=0)
    """After another router fenced this one on a partition the group still assigns
    here, wait this long before taking it back (a zombie is out of the group by
    then); never sooner, so two routers cannot fence each other in turn."""
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    snapshot: Path | None = None
    """The router's local snapshot of its memory (``broker.router._store``): a
    restart reads only the audit records written since its last checkpoint. ``crb
    router run`` defaults to ``$CRB_HOME/router/memory.sqlite``; unset (the
    library default) keeps the memory in RAM and replays the audit topic at start."""
    snapshot_cache_mib: int = Field(default=32, ge=1, le=4096)
    """SQLite's page cache for the snapshot, at most: the router's memory for what
    it forwarded grows to this and stays there (the rest is read from the file)."""
    checkpoint_s: float = Field(default=5.0, gt=0)
    """How often the router reads the audit topic to its end, forgets expired
    messages and saves a checkpoint to its snapshot."""


class TrackerSettings(Section):
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
    tokens_file: Path | None = None
    """The HTTP API's bearer tokens (hashed), default ``$CRB_HOME/tokens.json``."""
    health_probe_s: float = Field(default=5.0, gt=0)
    """How often the tracker asks Kafka for the status topic's end (``/healthz``)."""
    health_grace_s: float = Field(default=30.0, gt=0)
    """``/healthz`` answers 503 once Kafka has not answered for this long."""
    handover_retention: timedelta = timedelta(days=365)
    """A handover with nothing pending (no timer running) and no change for this long
    is forgotten: tombstoned on the tracker and status topics, deleted from the
    store. Its decisions stay on the audit topic."""
    retention_check_s: float = Field(default=3600.0, gt=0)
    """How often the tracker looks for handovers to forget."""
    alert_interval_s: float = Field(default=10.0, gt=0)
    """How often the tracker looks around for the health strip and the alerts."""
    alert_webhook: str | None = None
    """Where alert notices are POSTed as JSON (fired and resolved), if anywhere."""
    dead_letter_alert_per_hour: int = Field(default=10, ge=0)
    """More dead letters than this in the last hour raises an alert."""
    silent_after: timedelta = timedelta(minutes=15)
    """A participant whose inbox backlog has not moved for this long is silent."""
    key_warning_days: int = Field(default=30, ge=1)
    """Keys ending within this many days raise an alert."""
    snapshot: Path | None = None
    """The tracker's local snapshot of its handovers (``broker.tracker._store``): a
    restart reads only the tracker-topic records written since, and memory holds
    only running timers. ``crb tracker run`` defaults to
    ``$CRB_HOME/tracker/state.sqlite``; unset (the library default) keeps the
    handovers in an in-memory database and reads the whole topic at start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRB_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    home: Path = Path(".crb")
    """Local state: keys, directory, trust store, adapter state, the local Kafka."""
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    adapter: AdapterSettings = AdapterSettings()
    router: RouterSettings = RouterSettings()
    tracker: TrackerSettings = TrackerSettings()
    directory_refresh_s: float = Field(default=1.0, gt=0, le=300)
    """How often the services and adapters look for a newer signed directory on the
    directory topic (they also look before refusing an unknown participant)."""

    @property
    def tokens_path(self) -> Path:
        """The tracker API's token store: ``tracker.tokens_file``, else under home."""
        return self.tracker.tokens_file or self.home / "tokens.json"
