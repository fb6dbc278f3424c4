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
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from broker.tracker._machine import Handover
from schemas import HandoverState

__all__ = [
    "RouteStats",
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
