"""The adapter's own settings section (``CRB_ADAPTER__*``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from adapters.kafka import Section

__all__ = ["AdapterSettings"]


class AdapterSettings(Section):
    """A participant's adapter: local state, inbox consumer, outbox producer, HTTP sink."""

    state_dir: Path | None = None
    """Dedupe store, received-message records, quarantine, drop folder state
    (default: ``$CRB_HOME/adapters/<participant>``)."""
    group_id_prefix: str = "crb-adapter"
    """Inbox consumer group: ``<prefix>.<participant>``."""
    poll_timeout_ms: int = Field(default=500, ge=1)
    max_inbox_lag: timedelta = timedelta(days=7)
    """How far back an inbox record's Kafka timestamp may set the envelope's
    verification time (an adapter that was down for a day still opens its mail)."""
    keep_sent: timedelta = timedelta(0)
    """How long the drop folder keeps a sent file's plaintext in ``sent/`` (default:
    not at all; the ``.sent.json`` record of its message ids always stays)."""
    redeliver_after_urgent: timedelta = timedelta(minutes=10)
    """An urgent referral a recipient has not receipted this long after it was sent
    is sent again — the same message id, sealed again (an authorised redelivery the
    router forwards once more); each further attempt waits twice as long."""
    redeliver_after_high: timedelta = timedelta(hours=2)
    redeliver_after_routine: timedelta = timedelta(hours=48)
    redeliver_max: int = Field(default=3, ge=0, le=3)
    """Redeliveries per message at most (the router forwards an id four times at most)."""
    redeliver_check_s: float = Field(default=30.0, gt=0)
    """How often the inbox loop looks for referrals due to be sent again."""
    record_retention: timedelta = timedelta(days=90)
    """How long records of bare ids are kept: the drop folder's ``.sent.json`` notes
    and delivery records whose content is gone (or that had none: receipts, case
    decisions). Keep it above the inbox topic's retention (30 days): a record Kafka
    may still deliver again must still be recognised as a duplicate."""
    pending_retention: timedelta = timedelta(days=30)
    """How long a copy of a referral kept for escalation and redelivery waits for its
    receipts before it is deleted anyway."""
    send_deadline_s: float = Field(default=300.0, gt=0)
    """How long one produce keeps retrying through broker outages before failing."""
    retry_max_s: float = Field(default=30.0, gt=0)
    """Longest pause between two attempts (Kafka, the local system)."""
    http_attempts: int = Field(default=5, ge=1, le=100)
    http_backoff_s: float = Field(default=0.5, gt=0)
    http_backoff_max_s: float = Field(default=30.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)
