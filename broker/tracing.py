"""OpenTelemetry spans per batch (not per record), linked to each record's trace.

A span per record costs 12-23 µs, paid on the hot path for every referral, so
the router opens one span per transaction (``router.batch``) with a *link* to
the ``traceparent`` of every record in it: a tracing backend shows the batch from
any referral's trace. The OpenTelemetry API (installed with FastAPI) is a no-op
until an SDK is configured (``opentelemetry-instrument``, or a ``TracerProvider``
set by the embedding process), so without one this costs nearly nothing. The
trace ids in logs (:mod:`adapters.kafka` ``following``) work without OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from adapters.kafka import trace_id

__all__ = ["batch_links", "tracer"]


def tracer(name: str) -> Any:
    """The global tracer ``name`` (a no-op unless an SDK is configured)."""
    from opentelemetry import trace

    return trace.get_tracer(name)


def batch_links(traceparents: Iterable[str | None]) -> list[Any]:
    """Span links to each well-formed ``traceparent`` (duplicates once)."""
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    links = []
    seen: set[str] = set()
    for tp in traceparents:
        tid = trace_id(tp)
        if tid is None or tp is None or tp in seen:
            continue
        seen.add(tp)
        span_id = tp.split("-")[2]
        context = SpanContext(
            trace_id=int(tid, 16),
            span_id=int(span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(tp[-2:], 16)),
        )
        links.append(Link(context))
    return links
