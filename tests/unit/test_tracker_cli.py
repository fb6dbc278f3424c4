"""``crb status`` / ``crb handovers`` refuse bad input before touching Kafka, the
text rendering of a handover, and the public surface of ``broker.tracker``."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from broker.cli._tracker import format_handover
from broker.tracker import Policy, apply, tick
from schemas import HandoverState, Priority, StatusEvent, uuid7
from tests._cli import crb

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("status", "not-a-uuid"),
            "not a case or message id (UUID): 'not-a-uuid'; to find a case by its reference, "
            "give --as PARTICIPANT (only participants that sent or opened a reference know it)",
        ),
        (("handovers", "--jurisdiction", "EU"), "not an ISO 3166-1 alpha-2 country code: 'EU'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    message: str,
) -> None:
    """A malformed id or country is refused with one line on stderr and exit code 2,
    before any Kafka connection (the bootstrap given is unreachable)."""
    monkeypatch.delenv("CRB_DEBUG", raising=False)
    code, out, err = crb(capsys, *argv, "--bootstrap", "127.0.0.1:1")
    assert 2 == code
    assert "" == out
    assert f"crb: error: {message}\n" == err


def test_unknown_state_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--state takes only handover states."""
    code, _, err = crb(capsys, "handovers", "--state", "lost", "--bootstrap", "127.0.0.1:1")
    assert 2 == code
    assert "lost" in err


def test_format_handover_shows_state_flags_and_history() -> None:
    """The text line carries route, state, priority, jurisdiction and the overdue
    and escalation flags; with history, one indented line per event."""
    m = uuid7(T0, rng=os.urandom)
    policy = Policy(escalation_recipient="int.coordinator")
    h, _ = apply(
        None,
        StatusEvent(
            message_id=m,
            case_id=m,
            sender="de.hotline",
            recipient="nl.police24",
            state=HandoverState.ROUTED,
            at=T0,
            priority=Priority.URGENT,
            jurisdiction="NL",
        ),
        policy,
    )
    # Not overdue yet: says when it will be, never "overdue".
    [fresh] = format_handover(h)
    assert "[becomes overdue at 2026-11-23T12:05:00Z unless received]" in fresh
    assert "OVERDUE" not in fresh
    h, _ = tick(h, T0 + timedelta(minutes=5), policy)
    h, _ = tick(h, T0 + timedelta(minutes=10), policy)
    [line, *history] = format_handover(h, history=True)
    assert line.startswith(f"{m}/nl.police24  case {m}  de.hotline -> nl.police24  escalated")
    assert "priority urgent  jurisdiction NL" in line
    assert (
        "[OVERDUE since 2026-11-23T12:05:00Z; escalated to int.coordinator at "
        "2026-11-23T12:10:00Z; fails at 2026-11-23T12:15:00Z unless received]"
    ) in line
    assert [
        "    2026-11-23T12:00:00Z  routed",
        "    2026-11-23T12:05:00Z  overdue  reason=receipt_overdue",
        "    2026-11-23T12:10:00Z  escalated  reason=receipt_overdue to=int.coordinator",
    ] == history
