"""Alerts: what an operator must hear about without looking — pure.

Every ``TrackerSettings.alert_interval_s`` the tracker gathers an
:class:`Observation` (from its store, the directory and Kafka) and
:meth:`Alerting.evaluate` turns it into :class:`Notice` s: an alert *fires* the
first time its condition holds and *resolves* when it no longer does — once each,
never repeated while it stands, so a webhook receiver (a chat room, a pager, an
incident tool) gets one message per change. Conditions:

- ``urgent_overdue``: an urgent handover without a receipt past its SLA
  (overdue, escalated or failed), one alert per handover;
- ``key_expiring``: a participant's or service's key whose validity ends within
  ``key_warning`` (30 days by default), one per key;
- ``dead_letters_growing``: more than ``dead_letter_threshold`` dead letters in
  the last hour;
- ``participant_silent``: a participant's inbox holds records its adapter has not
  collected for longer than ``silent_after`` (which agency has stopped reading);
- ``tracker_degraded``: Kafka has not answered the tracker within its grace.

Alerts carry header-level facts only (ids, participants, counts) — never case
content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["Alert", "AlertKind", "Alerting", "Notice", "Observation"]


class AlertKind(StrEnum):
    URGENT_OVERDUE = "urgent_overdue"
    KEY_EXPIRING = "key_expiring"
    DEAD_LETTERS_GROWING = "dead_letters_growing"
    PARTICIPANT_SILENT = "participant_silent"
    TRACKER_DEGRADED = "tracker_degraded"


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    subject: str
    """What it is about: a handover key, a key id, a participant id, ``dlq``."""
    summary: str


@dataclass(frozen=True)
class Notice:
    """An alert that fired or resolved at ``at``."""

    alert: Alert
    status: str
    """``firing`` or ``resolved``."""
    at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.alert.kind.value,
            "subject": self.alert.subject,
            "summary": self.alert.summary,
            "status": self.status,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Observation:
    """What the tracker sees now (gathered by its shell)."""

    now: datetime
    urgent_overdue: tuple[tuple[str, str, str | None], ...] = ()
    """(handover key, sender, recipient) of urgent handovers past their SLA."""
    keys_not_after: tuple[tuple[str, str, datetime], ...] = ()
    """(owner, key id, end of validity) of every valid key."""
    dead_letters_last_hour: int = 0
    inbox_backlog: tuple[tuple[str, int, float], ...] = ()
    """(participant, records not collected, seconds the oldest has waited)."""
    degraded: str | None = None
    """Why the tracker is degraded, if it is."""


@dataclass
class Alerting:
    """The alerts standing now; :meth:`evaluate` says what changed."""

    key_warning: timedelta = timedelta(days=30)
    dead_letter_threshold: int = 10
    silent_after: timedelta = timedelta(minutes=15)
    standing: dict[tuple[AlertKind, str], Alert] = field(default_factory=dict)

    def conditions(self, o: Observation) -> list[Alert]:
        """Every alert whose condition holds in ``o``."""
        found = [
            Alert(
                AlertKind.URGENT_OVERDUE,
                key,
                f"urgent handover {key} ({sender} -> {recipient or '-'}) has no receipt "
                "past its deadline",
            )
            for key, sender, recipient in o.urgent_overdue
        ]
        for owner, key_id, not_after in o.keys_not_after:
            if not_after - o.now <= self.key_warning:
                days = max(0, (not_after - o.now).days)
                found.append(
                    Alert(
                        AlertKind.KEY_EXPIRING,
                        key_id,
                        f"key {key_id} of {owner} expires on {not_after:%Y-%m-%d} (in {days} days)",
                    )
                )
        if o.dead_letters_last_hour > self.dead_letter_threshold:
            found.append(
                Alert(
                    AlertKind.DEAD_LETTERS_GROWING,
                    "dlq",
                    f"{o.dead_letters_last_hour} dead letters in the last hour "
                    f"(threshold {self.dead_letter_threshold})",
                )
            )
        for participant, records, waited_s in o.inbox_backlog:
            if records > 0 and waited_s >= self.silent_after.total_seconds():
                found.append(
                    Alert(
                        AlertKind.PARTICIPANT_SILENT,
                        participant,
                        f"{participant} has not collected {records} records from its "
                        f"inbox for {waited_s / 60:.0f} min",
                    )
                )
        if o.degraded is not None:
            found.append(Alert(AlertKind.TRACKER_DEGRADED, "tracker", o.degraded))
        return found

    def evaluate(self, o: Observation) -> list[Notice]:
        """Fire what newly holds, resolve what no longer does (each once)."""
        now = {(a.kind, a.subject): a for a in self.conditions(o)}
        notices = [Notice(a, "firing", o.now) for k, a in now.items() if k not in self.standing]
        notices += [Notice(a, "resolved", o.now) for k, a in self.standing.items() if k not in now]
        # A standing alert keeps its first summary (a count that moves is not news).
        self.standing = {k: self.standing.get(k, a) for k, a in now.items()}
        return notices
