"""The tracker's watch: the console's health strip and the alerts' webhook.

Every ``TrackerSettings.alert_interval_s`` it gathers, with the tracker's own
Kafka login (describe-only grants on the groups it looks at):

- the directory version, and every valid key that ends within 30 days;
- brokers the cluster's metadata lists;
- the router's lag: records on the outboxes its group has not committed past;
- each participant's inbox backlog: records its adapter group has not committed
  past, and for how long that backlog has not moved (which agency has stopped
  collecting);
- dead letters, in all and in the last hour; urgent handovers past their SLA;
- the tracker's own health (:mod:`._health`).

That is the :class:`HealthStrip` the console shows, and the
:class:`~broker.tracker._alerts.Observation` the alerting judges; each notice
(fired or resolved) is POSTed as JSON to ``TrackerSettings.alert_webhook`` when
one is set, retried by the retry policy, logged either way. Failures to look are
reported in the strip (``errors``), never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from adapters import RetryPolicy
from adapters.kafka import Partition, TransportError
from broker.tracker._alerts import Alert, Alerting, Notice, Observation
from broker.tracker._health import HealthReport
from schemas import Directory

if TYPE_CHECKING:
    from broker.tracker._service import Tracker

__all__ = ["HealthStrip", "Watch", "expiring_keys"]

log = structlog.get_logger("crb.tracker")


@dataclass(frozen=True)
class HealthStrip:
    """What the console's health strip shows (operators only)."""

    at: datetime
    directory_version: int
    tracker: HealthReport
    brokers: int | None = None
    router_lag: int | None = None
    router_stalled_s: float | None = None
    """While the router has a lag: seconds since its group last moved (the tracker
    may not read outboxes to date the oldest record, so it times the standstill)."""
    dead_letters: int = 0
    dead_letters_last_hour: int = 0
    keys_expiring: tuple[tuple[str, str, datetime], ...] = ()
    inbox_backlog: tuple[tuple[str, int, float], ...] = ()
    alerts: tuple[Alert, ...] = ()
    errors: tuple[str, ...] = ()


def expiring_keys(
    directory: Directory, now: datetime, within: timedelta
) -> tuple[tuple[str, str, datetime], ...]:
    """(owner, key id, end of validity) of every key valid now that ends within
    ``within`` — participants' and services' (pure)."""
    found: list[tuple[str, str, datetime]] = []
    for p in directory.participants:
        found += [(p.participant_id, k.key_id, k.not_after) for k in p.keys
                  if k.is_valid_at(now) and k.not_after - now <= within]  # fmt: skip
    for s in directory.services:
        found += [(s.role.value, k.key_id, k.not_after) for k in s.keys_valid_at(now)
                  if k.not_after - now <= within]  # fmt: skip
    return tuple(sorted(found, key=lambda f: f[2]))


@dataclass
class _Backlog:
    committed: int = -1
    since: float = field(default_factory=time.monotonic)


class Watch:
    """Runs beside the tracker (see the module docstring)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        t = tracker.settings.tracker
        self.alerting = Alerting(
            key_warning=timedelta(days=t.key_warning_days),
            dead_letter_threshold=t.dead_letter_alert_per_hour,
            silent_after=t.silent_after,
        )
        self.strip: HealthStrip | None = None
        self.sent: list[dict[str, str]] = []
        """Notices the webhook accepted (the last 100)."""
        self._backlog: dict[str, _Backlog] = {}
        self._retry = RetryPolicy(initial_s=0.5, max_s=5.0)

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.tracker.settings.tracker.alert_interval_s
        while not stop.is_set():
            try:
                notices = await self.once()
                if notices:
                    await self._post(notices)
            except Exception as exc:  # never take the tracker down for a look around
                log.exception("watch_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def once(self) -> list[Notice]:
        """Look once: update :attr:`strip`, return the alert notices that changed."""
        t = self.tracker
        now = t.clock()
        directory = t.live.current
        store = t.handovers()
        errors: list[str] = []
        brokers: int | None = None
        router_lag: int | None = None
        stalled: float | None = None
        backlog: tuple[tuple[str, int, float], ...] = ()
        try:
            async with asyncio.timeout(10):
                brokers, router_lag, stalled, backlog = await self._kafka()
        except (TransportError, TimeoutError) as exc:
            errors.append(f"Kafka: {exc or 'no answer within 10 s'}")
        report = t.health_report()
        observation = Observation(
            now=now,
            urgent_overdue=tuple(store.urgent_overdue()),
            keys_not_after=expiring_keys(directory, now, self.alerting.key_warning),
            dead_letters_last_hour=store.count_dead_letters(since=now - timedelta(hours=1)),
            inbox_backlog=backlog,
            degraded=report.detail if report.status == "degraded" else None,
        )
        notices = self.alerting.evaluate(observation)
        self.strip = HealthStrip(
            at=now, directory_version=directory.version, tracker=report, brokers=brokers,
            router_lag=router_lag, router_stalled_s=stalled,
            dead_letters=store.count_dead_letters(),
            dead_letters_last_hour=observation.dead_letters_last_hour,
            keys_expiring=observation.keys_not_after, inbox_backlog=backlog,
            alerts=tuple(self.alerting.standing.values()), errors=tuple(errors),
        )  # fmt: skip
        return notices

    async def _kafka(self) -> tuple[int, int, float | None, tuple[tuple[str, int, float], ...]]:
        t = self.tracker
        names = t.names
        participants = [p.participant_id for p in t.live.current.participants]
        outboxes = [names.outbox(pid) for pid in participants]
        inboxes = [names.inbox(pid) for pid in participants]
        async with t.clients.admin() as admin:
            brokers = await admin.brokers()
            counts = await admin.partition_counts([*outboxes, *inboxes])
            router = await admin.group_offsets(t.settings.router.group_id)
            prefix = t.settings.adapter.group_id_prefix
            inbox_groups = {
                pid: await admin.group_offsets(f"{prefix}.{pid}") for pid in participants
            }
        consumer = t.clients.consumer(group_id=None)
        await consumer.start()
        try:
            parts = [Partition(topic, p) for topic, n in counts.items() for p in range(n)]
            ends = await consumer.end_offsets(parts)
        finally:
            with contextlib.suppress(TransportError):
                await consumer.stop()
        markers = t.redrive_markers
        router_lag = 0
        for p, end in ends.items():
            if p.topic in outboxes:
                at = router.get(p, 0)
                # Participants' adapters write outboxes without transactions; only a
                # redrive leaves a commit marker there, which is not a record.
                router_lag += 0 if markers.get(p) == at and end == at + 1 else max(0, end - at)
        clock = time.monotonic()
        moved = sum(router.values())
        seen = self._backlog.setdefault("\0router", _Backlog(moved, clock))
        if router_lag == 0 or moved != seen.committed:
            self._backlog["\0router"] = seen = _Backlog(moved, clock)
        stalled = round(clock - seen.since, 1) if router_lag else None
        backlog: list[tuple[str, int, float]] = []
        for pid in participants:
            committed = inbox_groups[pid]
            inbox = names.inbox(pid)
            mine = {p: end for p, end in ends.items() if p.topic == inbox}
            # The router writes inboxes in transactions: the commit marker after the
            # last record takes an offset too, so a reader that has taken every
            # record stands one short of the end (the tracker may not read inboxes
            # to tell markers from records).
            lag = sum(max(0, end - committed.get(p, 0) - 1) for p, end in mine.items())
            done = sum(committed.get(p, 0) for p in mine)
            seen = self._backlog.setdefault(pid, _Backlog(done, clock))
            if lag == 0 or done != seen.committed:
                self._backlog[pid] = seen = _Backlog(done, clock)
            backlog.append((pid, lag, round(clock - seen.since, 1) if lag else 0.0))
        return brokers, router_lag, stalled, tuple(backlog)

    async def _post(self, notices: list[Notice]) -> None:
        url = self.tracker.settings.tracker.alert_webhook
        body: dict[str, Any] = {"source": "crb-tracker", "notices": [n.to_json() for n in notices]}
        for n in notices:
            (log.warning if n.status == "firing" else log.info)(
                "alert", kind=n.alert.kind.value, subject=n.alert.subject, status=n.status,
                summary=n.alert.summary,
            )  # fmt: skip
        if url is None:
            return
        for attempt in range(1, 4):
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = await client.post(url, json=body)
                if answer.status_code < 300:
                    self.sent = [*self.sent, *body["notices"]][-100:]
                    return
                problem = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                problem = str(exc) or type(exc).__name__
            log.warning("alert_webhook_failed", url=url, attempt=attempt, error=problem)
            await asyncio.sleep(self._retry.delay(attempt))
