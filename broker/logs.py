"""Structured JSON logs (structlog) for the long-running services.

Events carry message id, case id, route and reason — never payload or key
material: the services only ever log header fields and reason codes.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: int | str = logging.INFO) -> None:
    """JSON lines on stderr, one per event, with an ISO timestamp."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    # A long-running service wants aiokafka's warnings (broker gone, rebalances).
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolve sys.stderr when a logger is made, and do not cache: a caller that
        # swaps stderr (tests, embedding) must not leave loggers on a closed stream.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
