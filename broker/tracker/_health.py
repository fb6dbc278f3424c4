"""Whether the tracker is doing its job: what ``/healthz`` and the metrics say.

Up is not enough: a tracker that cannot reach Kafka still answers HTTP, and its
views go stale without a word. So the tracker probes Kafka every
``TrackerSettings.health_probe_s`` (the end offsets of the status topic: one
round trip, bounded by a timeout) and records the answer here; every committed
transaction counts as a sign of life too. Pure: times are ``time.monotonic()``
values passed in.

- ``ready``: the state is rebuilt and the status topic assigned.
- ``kafka_seen_s``: seconds since Kafka last answered.
- ``lag_records``: status records not folded yet, at the last probe.
- ``stale_s``: seconds since the tracker was last caught up (0 when it is).

``status`` is ``ok``, or ``starting`` (not ready), or ``degraded`` when Kafka has
not answered within the grace period — then ``/healthz`` answers 503 and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HealthReport", "TrackerHealth"]


@dataclass(frozen=True)
class HealthReport:
    status: str
    ready: bool
    kafka_seen_s: float | None
    lag_records: int | None
    stale_s: float | None
    detail: str


@dataclass
class TrackerHealth:
    """What the tracker last learnt about itself (updated by its loop)."""

    ready: bool = False
    kafka_ok_at: float | None = None
    lag_records: int | None = None
    caught_up_at: float | None = None
    error: str | None = None

    def kafka_answered(self, now: float) -> None:
        self.kafka_ok_at = now
        self.error = None

    def probed(self, now: float, lag_records: int) -> None:
        """A probe's answer: Kafka is there, and this many records are not folded."""
        self.kafka_answered(now)
        self.lag_records = lag_records
        if lag_records == 0:
            self.caught_up_at = now

    def failed(self, error: str) -> None:
        self.error = error

    def report(self, now: float, grace_s: float) -> HealthReport:
        seen = None if self.kafka_ok_at is None else round(now - self.kafka_ok_at, 1)
        stale = None if self.caught_up_at is None else round(now - self.caught_up_at, 1)
        if self.lag_records == 0:
            stale = 0.0
        if not self.ready:
            return HealthReport("starting", False, seen, self.lag_records, stale,
                                "rebuilding state or waiting for Kafka")  # fmt: skip
        if seen is None or seen > grace_s:
            why = f"Kafka has not answered for {seen:g} s" if seen is not None else (
                "Kafka has not answered yet")  # fmt: skip
            if self.error:
                why += f" (last error: {self.error})"
            return HealthReport("degraded", True, seen, self.lag_records, stale, why)
        return HealthReport("ok", True, seen, self.lag_records, stale, "")
