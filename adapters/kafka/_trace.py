"""Following one referral across services: a W3C ``traceparent`` in a Kafka header.

The sender's outbox record gets a fresh ``traceparent`` (W3C Trace Context,
``00-<trace id>-<span id>-01``); every record produced because of it — the
router's forwards, dead letter and status events, the recipient's receipt and
case decision, the tracker's timer events — carries the same trace id with a new
span id. The header is outside the signed envelope bytes: it proves nothing and
is only a correlation key; a malformed one is ignored (a fresh trace begins).

Each service binds ``trace_id`` into its log context while it handles a record
(``structlog.contextvars``), so ``grep <trace id>`` over the sender's, router's,
receiver's and tracker's logs follows one referral end to end. Pure, except for
the random ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
from collections.abc import Iterable, Iterator
from typing import Final

import structlog

from adapters.kafka._records import OutRecord

__all__ = [
    "TRACEPARENT",
    "child_traceparent",
    "current_traceparent",
    "following",
    "new_traceparent",
    "trace_id",
    "traceparent_of",
    "with_traceparent",
]

TRACEPARENT: Final = "traceparent"
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "crb_traceparent", default=None
)
_FORMAT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    """A new trace: random trace id and span id, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a well-formed ``traceparent`` (all-zero ids are invalid)."""
    if traceparent is None:
        return None
    m = _FORMAT.match(traceparent)
    if m is None or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return m.group(1)


def child_traceparent(parent: str | None) -> str:
    """The same trace with a new span id; a new trace if ``parent`` is not valid."""
    tid = trace_id(parent)
    if tid is None or parent is None:
        return new_traceparent()
    flags = parent[-2:]
    return f"00-{tid}-{secrets.token_hex(8)}-{flags}"


def traceparent_of(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The ``traceparent`` header's value if present and well-formed (a Kafka header
    may have no value at all: whoever wrote the record chose its headers)."""
    for name, value in headers:
        if name == TRACEPARENT:
            if value is None:
                return None
            text = value.decode("ascii", errors="replace")
            return text if trace_id(text) is not None else None
    return None


def with_traceparent(record: OutRecord, parent: str | None) -> OutRecord:
    """``record`` carrying a child of ``parent`` (unchanged if ``parent`` is None)."""
    if parent is None or trace_id(parent) is None:
        return record
    headers = tuple(h for h in record.headers if h[0] != TRACEPARENT)
    child = child_traceparent(parent).encode("ascii")
    return OutRecord(record.topic, record.key, record.value, (*headers, (TRACEPARENT, child)))


def current_traceparent() -> str | None:
    """The ``traceparent`` of the record being handled in this context, if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def following(traceparent: str | None) -> Iterator[None]:
    """Handle a record of trace ``traceparent``: logs inside carry its ``trace_id``,
    and records produced inside (``Outbox.send``) continue the trace."""
    tid = trace_id(traceparent)
    token = _CURRENT.set(traceparent if tid is not None else None)
    try:
        if tid is None:
            yield
        else:
            with structlog.contextvars.bound_contextvars(trace_id=tid):
                yield
    finally:
        _CURRENT.reset(token)
