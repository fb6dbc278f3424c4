"""Logs: one format per mode, on stderr, with repetition held back during outages.

- **Services** (router, tracker, inbox, drop folder) write JSON lines; **commands**
  people run write readable console lines — both on stderr, so stdout carries only
  results (``ID=$(crb send …)`` captures the id alone). ``CRB_LOG_FORMAT=json`` (or
  ``console``) overrides the mode's default.
- Library lines (aiokafka, uvicorn) go through the same renderer, with a timestamp
  and level, instead of bare text.
- **Repetition is rate-limited**: a warning or error repeated with the same event
  (same logger and message template for library lines) passes once per
  ``repeat_interval_s``; the next one to pass carries ``repeated=N``, the number
  held back meanwhile. An 11-minute Kafka outage is then a few dozen lines, not tens
  of thousands; information-level events (one per referral) are never held back.

Events carry message id, case id, route and reason — never payload or key
material: the services only ever log header fields and reason codes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["LogFormat", "Repetition", "configure_logging"]

LogFormat = Literal["json", "console"]
_HELD = logging.WARNING


class Repetition:
    """Once per interval per key; counts what it held back (thread-safe)."""

    def __init__(
        self, interval_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def admit(self, key: object) -> int | None:
        """None to hold this one back; else how many were held back before it."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            if len(self._last) > 10_000:  # a flood of distinct keys: start afresh
                self._last = {key: now}
                self._held.clear()
            return self._held.pop(key, 0)

    def processor(
        self, _: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: hold back repeated warnings and errors."""
        if logging.getLevelNamesMapping().get(method.upper(), 0) < _HELD:
            return event
        held = self.admit(("structlog", method, event.get("event")))
        if held is None:
            raise structlog.DropEvent
        if held:
            event["repeated"] = held
        return event

    def filter(self, record: logging.LogRecord) -> bool:
        """logging filter: the same for library lines (keyed by message template)."""
        if record.levelno < _HELD:
            return True
        held = self.admit(("logging", record.name, record.levelno, str(record.msg)))
        if held is None:
            return False
        if held:
            record.repeated = held
        return True


def _add_repeated(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None and getattr(record, "repeated", None):
        event["repeated"] = record.repeated
    return event


def configure_logging(
    level: int | str = logging.INFO,
    *,
    fmt: LogFormat | None = None,
    stream: TextIO | None = None,
    repeat_interval_s: float = 60.0,
    library_warnings: bool = True,
) -> None:
    """Configure structlog and the standard library's logging for this process.

    ``fmt`` defaults to ``CRB_LOG_FORMAT``, else JSON. Logs go to ``stream``
    (default: stderr, resolved at each line so a swapped stderr is followed).
    ``library_warnings=False`` keeps aiokafka quiet (a one-off command reports the
    outcome in its own line)."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    chosen = fmt or os.environ.get("CRB_LOG_FORMAT", "json")
    if chosen not in ("json", "console"):
        chosen = "json"

    def out() -> TextIO:
        return stream if stream is not None else sys.stderr

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if chosen == "json"
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    repetition = Repetition(repeat_interval_s)
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            repetition.processor,
            stamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolve the stream when a logger is made, and do not cache: a caller that
        # swaps stderr (tests, embedding) must not leave loggers on a closed stream.
        logger_factory=lambda *_: structlog.PrintLogger(out()),
        cache_logger_on_first_use=False,
    )

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                target = out()
                target.write(self.format(record) + "\n")
                target.flush()
            except Exception:  # logging must never raise
                self.handleError(record)

    handler = _Handler()
    handler.addFilter(repetition.filter)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _add_repeated,
                stamp,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_crb", False):
            root.removeHandler(old)
    handler._crb = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # A long-running service wants aiokafka's warnings (broker gone, rebalances).
    if library_warnings or os.environ.get("CRB_DEBUG"):
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    else:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("kafka").setLevel(logging.WARNING if library_warnings else logging.CRITICAL)
    # kafka-python (ACL and SCRAM administration) warns that SCRAM "exchanges
    # credentials in the clear" on any connection without TLS; SCRAM never sends the
    # password, so the line only misleads.
    logging.getLogger("kafka.net.sasl").setLevel(logging.ERROR)
