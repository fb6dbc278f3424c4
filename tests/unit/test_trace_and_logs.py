"""Trace context across records, logs in one format per mode, and repetition held
back during outages (pure or in-process; no Kafka)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog

from adapters.kafka import (
    TRACEPARENT,
    OutRecord,
    child_traceparent,
    current_traceparent,
    following,
    new_traceparent,
    trace_id,
    traceparent_of,
    with_traceparent,
)
from broker.logs import Repetition, configure_logging
from broker.tracing import batch_links

W3C = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def test_a_new_trace_and_its_children() -> None:
    """A new traceparent is W3C-shaped; a child keeps the trace id with a new span."""
    root = new_traceparent()
    assert W3C.match(root)
    child = child_traceparent(root)
    assert W3C.match(child)
    assert trace_id(child) == trace_id(root)
    assert child.split("-")[2] != root.split("-")[2]
    assert trace_id(new_traceparent()) != trace_id(root)


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "00-xyz",
        "01-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(bad: str | None) -> None:
    assert trace_id(bad) is None
    assert W3C.match(child_traceparent(bad))
    headers = [(TRACEPARENT, (bad or "").encode())]
    assert traceparent_of(headers) is None
    record = OutRecord("t", None, b"v")
    assert record == with_traceparent(record, bad)


def test_records_continue_the_trace_and_keep_other_headers() -> None:
    parent = new_traceparent()
    record = OutRecord("t", b"k", b"v", (("crb-message-id", b"m"), (TRACEPARENT, b"old")))
    out = with_traceparent(record, parent)
    assert ("crb-message-id", b"m") in out.headers
    assert 1 == sum(1 for name, _ in out.headers if name == TRACEPARENT)
    assert trace_id(traceparent_of(out.headers)) == trace_id(parent)


def test_following_binds_the_trace_id_into_logs_and_the_context() -> None:
    """Inside ``following`` logs carry ``trace_id`` and produced records continue
    the trace; outside, neither."""
    parent = new_traceparent()
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    log = structlog.get_logger("t")
    with following(parent):
        assert parent == current_traceparent()
        log.info("inside")
    log.info("outside")
    assert current_traceparent() is None
    inside, outside = capture.entries
    assert trace_id(parent) == inside["trace_id"]
    assert "trace_id" not in outside
    structlog.reset_defaults()


def test_batch_links_point_at_each_record_trace() -> None:
    """The router's batch span links to every record's traceparent, once each."""
    a, b = new_traceparent(), new_traceparent()
    links = batch_links([a, None, b, a, "garbage"])
    assert [int(trace_id(a) or "0", 16), int(trace_id(b) or "0", 16)] == [
        link.context.trace_id for link in links
    ]
    assert all(link.context.is_remote for link in links)


def test_repetition_holds_back_and_counts() -> None:
    """The first of a kind passes; repeats within the interval are held back; the
    next one to pass says how many were."""
    now = [0.0]
    rep = Repetition(60.0, clock=lambda: now[0])
    assert 0 == rep.admit("k")
    assert [None] * 5 == [rep.admit("k") for _ in range(5)]
    assert 0 == rep.admit("other")
    now[0] = 61.0
    assert 5 == rep.admit("k")
    assert rep.admit("k") is None


def test_an_outage_is_a_few_lines_not_thousands() -> None:
    """11 minutes of three warnings repeating every few milliseconds (as during a
    Kafka outage) and of per-referral info lines: every info line is kept, each
    warning appears once a minute with the count held back."""
    now = [0.0]
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    rep_clock = Repetition(60.0, clock=lambda: now[0])
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            rep_clock.processor,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=lambda *_: structlog.PrintLogger(out),
    )
    log = structlog.get_logger("crb.router")
    warnings = 0
    t = 0.0
    while t < 11 * 60:
        now[0] = t
        for event in ("transaction_failed", "producer_start_failed", "partition_fenced"):
            log.warning(event, error="KafkaConnectionError")
            warnings += 1
        t += 0.02
    for i in range(100):
        log.info("delivered", n=i)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    warned = [x for x in lines if x["level"] == "warning"]
    assert warnings > 90_000
    assert len(warned) <= 3 * 12
    reported = sum(x.get("repeated", 0) for x in warned) + len(warned)
    # Only what was held back in the last minute is not counted yet (no later line).
    assert 0 <= warnings - reported <= 3 * int(60 / 0.02)
    assert 100 == sum(1 for x in lines if x["event"] == "delivered")
    structlog.reset_defaults()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_library_lines_share_the_format_and_carry_time_and_level(fmt: str) -> None:
    """An aiokafka line goes through the same renderer with timestamp and level;
    its repeats are held back like ours."""
    out = io.StringIO()
    configure_logging(fmt=fmt, stream=out)  # type: ignore[arg-type]
    try:
        lib = logging.getLogger("aiokafka.conn")
        for _ in range(50):
            lib.warning("Unable connect to %r: %s", "127.0.0.1:1", "refused")
        lines = out.getvalue().splitlines()
        assert 1 == len(lines)
        if fmt == "json":
            line = json.loads(lines[0])
            assert ("warning", "aiokafka.conn") == (line["level"], line["logger"])
            assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["timestamp"])
            assert "127.0.0.1:1" in line["event"]
        else:
            assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[warning\s*\] Unable connect", lines[0])
    finally:
        structlog.reset_defaults()
        for h in list(logging.getLogger().handlers):
            if getattr(h, "_crb", False):
                logging.getLogger().removeHandler(h)
