"""Read-side queries over handovers — pure functions shared by the CLI and the HTTP API.

A *route* is ``sender → recipient`` (``recipient`` ``None`` for messages the router
dead-lettered before resolving them). Times to receipt are ``received_at -
routed_at`` in seconds, over handovers that have both; the p99 uses the
nearest-rank method (no interpolation: it is always an observed value).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from broker.tracker._machine import Handover
from schemas import Category, HandoverState, Priority

__all__ = [
    "ATTENTION_STATES",
    "BUCKETS",
    "BUCKET_ORDER",
    "Filters",
    "RouteCell",
    "RouteStats",
    "attention_order",
    "by_case",
    "by_message",
    "find",
    "percentile",
    "route_stats",
    "select",
]


def _ordered(handovers: Iterable[Handover]) -> list[Handover]:
    return sorted(handovers, key=lambda h: (str(h.message_id), h.recipient or ""))


def by_case(handovers: Iterable[Handover], case_id: UUID) -> list[Handover]:
    """Every handover of a case, ordered by message id then recipient."""
    return _ordered(h for h in handovers if h.case_id == case_id)


def by_message(handovers: Iterable[Handover], message_id: UUID) -> list[Handover]:
    """Every handover (one per recipient) of a message."""
    return _ordered(h for h in handovers if h.message_id == message_id)


def find(handovers: Iterable[Handover], some_id: UUID) -> tuple[str, list[Handover]]:
    """Look an id up as a case id first, then as a message id: ``(kind, handovers)``."""
    items = list(handovers)
    found = by_case(items, some_id)
    if found:
        return "case", found
    return "message", by_message(items, some_id)


def reached(h: Handover, state: HandoverState) -> bool:
    """Whether ``h`` is in ``state`` or went through it (a decision before the
    receipt counts as received: it implies it)."""
    if h.state is state or any(x.state is state for x in h.history):
        return True
    if state is HandoverState.ROUTED:
        return h.routed_at is not None
    if state is HandoverState.RECEIVED:
        return h.received_at is not None
    return False


def select(
    handovers: Iterable[Handover],
    *,
    overdue: bool | None = None,
    jurisdiction: str | None = None,
    state: HandoverState | None = None,
) -> list[Handover]:
    """Handovers filtered by overdue (raised and still without receipt), jurisdiction
    and current state; ``None`` means "any"."""
    return _ordered(
        h
        for h in handovers
        if (overdue is None or h.overdue == overdue)
        and (jurisdiction is None or h.jurisdiction == jurisdiction)
        and (state is None or h.state is state)
    )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in (0, 100]) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class RouteStats(BaseModel):
    """Counts and time to receipt for one route (sender → recipient)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: str
    recipient: str | None
    sent: int
    """Handovers routed (or seen later in their life) on this route."""
    received: int
    dead_lettered: int
    overdue: int
    """Raised overdue and still without receipt (includes escalated and failed)."""
    failed: int
    median_seconds_to_receipt: float | None
    p99_seconds_to_receipt: float | None


def route_stats(handovers: Iterable[Handover]) -> list[RouteStats]:
    """Per-route counts, median and p99 time to receipt, ordered by route."""
    groups: dict[tuple[str, str | None], list[Handover]] = {}
    for h in handovers:
        groups.setdefault((h.sender, h.recipient), []).append(h)
    out = []
    for (sender, recipient), hs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        times = [t.total_seconds() for h in hs if (t := h.time_to_receipt) is not None]
        dead = sum(1 for h in hs if h.state is HandoverState.DEAD_LETTERED)
        out.append(
            RouteStats(
                sender=sender,
                recipient=recipient,
                sent=len(hs) - dead,
                received=sum(1 for h in hs if h.received_at is not None),
                dead_lettered=dead,
                overdue=sum(1 for h in hs if h.overdue),
                failed=sum(1 for h in hs if h.state is HandoverState.FAILED),
                median_seconds_to_receipt=statistics.median(times) if times else None,
                p99_seconds_to_receipt=percentile(times, 99),
            )
        )
    return out


# ------------------------------------------------------------- operator console

BUCKETS: dict[HandoverState, str] = {
    HandoverState.SUBMITTED: "in_flight",
    HandoverState.ROUTED: "in_flight",
    HandoverState.REDELIVERED: "in_flight",
    HandoverState.RECEIVED: "received",
    HandoverState.OVERDUE: "overdue",
    HandoverState.ESCALATED: "overdue",
    HandoverState.FAILED: "failed",
    HandoverState.DEAD_LETTERED: "failed",
    HandoverState.ACCEPTED: "done",
    HandoverState.REJECTED: "done",
    HandoverState.MOVED: "done",
    HandoverState.ACTIONED: "done",
    HandoverState.CLOSED: "done",
}
"""The route board's buckets, by current state: ``in_flight`` (routed, no receipt
yet, within its SLA), ``received`` (receipt in, the case decision awaited),
``overdue`` (no receipt past the SLA, escalated or not), ``failed`` (failed or
dead-lettered) and ``done`` (a case decision taken)."""
BUCKET_ORDER = ("in_flight", "received", "overdue", "failed", "done")
ATTENTION_STATES = frozenset(
    {HandoverState.OVERDUE, HandoverState.ESCALATED, HandoverState.FAILED,
     HandoverState.DEAD_LETTERED}
)  # fmt: skip
"""What the needs-attention list shows."""
PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.ROUTINE: 2, None: 2}


@dataclass(frozen=True)
class Filters:
    """A search over handovers; every field set must match (``None``: any).
    ``participant`` matches as sender, recipient or escalation recipient;
    ``since``/``until`` bound when the handover was routed (first seen if never)."""

    message_id: UUID | None = None
    case_id: UUID | None = None
    participant: str | None = None
    sender: str | None = None
    recipient: str | None = None
    jurisdiction: str | None = None
    state: HandoverState | None = None
    bucket: str | None = None
    """One of :data:`BUCKET_ORDER`: any state of that bucket."""
    priority: Priority | None = None
    category: Category | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.bucket is not None and self.bucket not in BUCKET_ORDER:
            raise ValueError(f"bucket: one of {', '.join(BUCKET_ORDER)}")

    def matches(self, h: Handover) -> bool:
        """The same test the store answers from its indexes (pure, for checking it)."""
        at = h.routed_at or h.updated_at
        return (
            (self.message_id is None or h.message_id == self.message_id)
            and (self.case_id is None or h.case_id == self.case_id)
            and (
                self.participant is None
                or self.participant in (h.sender, h.recipient, h.escalated_to)
            )
            and (self.sender is None or h.sender == self.sender)
            and (self.recipient is None or h.recipient == self.recipient)
            and (self.jurisdiction is None or h.jurisdiction == self.jurisdiction)
            and (self.state is None or h.state is self.state)
            and (self.bucket is None or BUCKETS[h.state] == self.bucket)
            and (self.priority is None or h.priority is self.priority)
            and (self.category is None or h.category is self.category)
            and (self.since is None or at >= self.since)
            and (self.until is None or at < self.until)
        )

    def query(self) -> dict[str, str]:
        """The filters as URL query parameters (what is set only)."""
        out: dict[str, str] = {}
        for name, value in vars(self).items():
            if value is None:
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return out


@dataclass
class RouteCell:
    """One sender → recipient cell of the route board."""

    sender: str
    recipient: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKET_ORDER, 0))
    median_s: float | None = None
    p95_s: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def attention_order(h: Handover) -> tuple[int, datetime]:
    """Urgent first, then the oldest first."""
    return PRIORITY_RANK.get(h.priority, 2), h.routed_at or h.updated_at
