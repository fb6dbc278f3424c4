"""The tracker's pure core: the transition table (every state x every event), the SLA
timers with injected time, the ledger's batch step, and the read-side views."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from broker.settings import TrackerSettings
from broker.tracker import (
    TABLE,
    Disposition,
    Handover,
    Ledger,
    Policy,
    apply,
    by_case,
    by_message,
    find,
    next_deadline,
    percentile,
    policy_from,
    route_stats,
    select,
    tick,
)
from broker.tracker._machine import _GRID, _NOTES, _parse_grid
from schemas import (
    HandoverState,
    Priority,
    Reason,
    RoutingRules,
    StatusEvent,
    uuid7,
)

S = HandoverState
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(escalation_recipient="int.coordinator")


def mid(at: datetime = T0) -> UUID:
    return uuid7(at, rng=os.urandom)


MESSAGE = mid()
CASE = mid()


def ev(
    state: HandoverState,
    at: datetime,
    *,
    message_id: UUID = MESSAGE,
    case_id: UUID = CASE,
    sender: str = "de.hotline",
    recipient: str | None = "nl.hotline",
    priority: Priority | None = None,
    jurisdiction: str | None = None,
    reason: Reason | None = None,
) -> StatusEvent:
    return StatusEvent(
        message_id=message_id,
        case_id=case_id,
        sender=sender,
        recipient=recipient,
        state=state,
        at=at,
        reason=reason,
        escalated_to="int.coordinator" if state is S.ESCALATED else None,
        priority=priority,
        jurisdiction=jurisdiction,
    )


def fold(*events: StatusEvent, policy: Policy = POLICY) -> Handover:
    h: Handover | None = None
    for e in events:
        h, _ = apply(h, e, policy)
    assert h is not None
    return h


# ------------------------------------------------------------------ the table

ROWS: list[HandoverState | None] = [None, *HandoverState]
PAIRS = [(s, e) for s in ROWS for e in HandoverState]
# How to reach each state with events in their usual order.
PATHS: dict[HandoverState, list[HandoverState]] = {
    S.SUBMITTED: [S.SUBMITTED],
    S.ROUTED: [S.SUBMITTED, S.ROUTED],
    S.DEAD_LETTERED: [S.SUBMITTED, S.DEAD_LETTERED],
    S.RECEIVED: [S.ROUTED, S.RECEIVED],
    S.ACCEPTED: [S.ROUTED, S.RECEIVED, S.ACCEPTED],
    S.REJECTED: [S.ROUTED, S.RECEIVED, S.REJECTED],
    S.MOVED: [S.ROUTED, S.RECEIVED, S.MOVED],
    S.ACTIONED: [S.ROUTED, S.RECEIVED, S.ACCEPTED, S.ACTIONED],
    S.CLOSED: [S.ROUTED, S.RECEIVED, S.ACCEPTED, S.ACTIONED, S.CLOSED],
    S.OVERDUE: [S.ROUTED, S.OVERDUE],
    S.REDELIVERED: [S.ROUTED, S.OVERDUE, S.REDELIVERED],
    S.ESCALATED: [S.ROUTED, S.OVERDUE, S.ESCALATED],
    S.FAILED: [S.ROUTED, S.OVERDUE, S.ESCALATED, S.FAILED],
}
APPLIED, NOTED, IGNORED, DUPLICATE = (
    Disposition.APPLIED,
    Disposition.NOTED,
    Disposition.IGNORED,
    Disposition.DUPLICATE,
)


def reach(state: HandoverState | None) -> tuple[Handover | None, datetime]:
    """The handover in ``state`` by its usual path, and a time after its last event."""
    if state is None:
        return None, T0
    steps = PATHS[state]
    h = fold(*(ev(s, T0 + timedelta(seconds=i)) for i, s in enumerate(steps)))
    assert state is h.state
    return h, T0 + timedelta(seconds=len(steps))


def pair_id(state: HandoverState | None, event: HandoverState) -> str:
    return f"{state.value if state else 'new'}+{event.value}"


def _drop_last_cell(line: str) -> str:
    return line.rsplit(maxsplit=1)[0] if line.strip() else line


BROKEN: dict[str, tuple[str, Mapping[str, str], str]] = {
    "cell without footnote": (_GRID.replace("~t", "~ "), _NOTES, "bad cell"),
    "footnote without kind": (_GRID.replace("~t", "t "), _NOTES, "bad cell"),
    "applied with footnote": (_GRID.replace("~t", ">t"), _NOTES, "bad cell"),
    "unknown kind": (_GRID.replace("~t", "+t"), _NOTES, "bad cell"),
    "unknown footnote in cell": (_GRID.replace("~t", "~A"), _NOTES, "bad cell"),
    "footnote missing": (_GRID, {k: v for k, v in _NOTES.items() if k != "t"}, "bad cell"),
    "footnote unused": (_GRID, {**_NOTES, "zz": "never used"}, "footnotes not used"),
    "unknown column": (_GRID.replace("rec", "rcv", 1), _NOTES, "unknown state"),
    "unknown row": (_GRID.replace("\nrec ", "\nrcv "), _NOTES, "unknown state"),
    "column twice": (_GRID.replace("fai", "esc", 1), _NOTES, "want each of"),
    "row twice": (_GRID.replace("\nfai ", "\nesc "), _NOTES, "want each of"),
    "new as a column": (_GRID.replace("sub", "(new)", 1), _NOTES, "want each of"),
    "column missing": (
        "\n".join(_drop_last_cell(line) for line in _GRID.splitlines()),
        _NOTES,
        "want each of",
    ),
    "row missing": (
        "\n".join(line for line in _GRID.splitlines() if not line.startswith("fai")),
        _NOTES,
        "want each of",
    ),
    "row short": (
        "\n".join(
            _drop_last_cell(line) if line.startswith("fai") else line for line in _GRID.splitlines()
        ),
        _NOTES,
        "has 12 cells",
    ),
    "row long": (_GRID.replace("\nfai ", "\nfai = "), _NOTES, "has 14 cells"),
    "empty": ("  \n", _NOTES, "empty grid"),
}


@pytest.mark.parametrize(("grid", "notes", "error"), BROKEN.values(), ids=BROKEN.keys())
def test_the_grid_parser_is_strict(grid: str, notes: Mapping[str, str], error: str) -> None:
    """A malformed cell, an unknown or unused footnote, an unknown, missing or repeated
    row or column, or a row of the wrong length stops the import."""
    assert (grid, notes) != (_GRID, _NOTES)
    with pytest.raises(ValueError, match=error):
        _parse_grid(grid, notes)


def test_the_table_covers_every_state_and_event() -> None:
    """Every (state or not-seen-yet, event) pair has a rule, and nothing else does."""
    assert set(PAIRS) == set(TABLE)
    assert (len(HandoverState) + 1) * len(HandoverState) == len(TABLE)


def test_an_applied_rule_always_moves_to_the_event_state() -> None:
    """A transition that is taken lands in the state the event names; one that is
    not taken (ignored, duplicate) keeps the state; noted and ignored carry a note."""
    for (_, event), rule in TABLE.items():
        if rule.disposition in (APPLIED, NOTED):
            assert event == rule.to
        else:
            assert rule.to is None
        assert (rule.note is not None) == (rule.disposition in (NOTED, IGNORED))


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[pair_id(s, e) for s, e in PAIRS])
def test_every_state_times_every_event(state: HandoverState | None, event: HandoverState) -> None:
    """The handover reached through its usual path reacts to each event as its grid
    cell says (state, disposition, note); a refused event never changes state or
    timestamps, and is recorded unless a duplicate."""
    rule = TABLE[state, event]
    before, at = reach(state)
    after, disposition = apply(before, ev(event, at), POLICY)
    assert rule.disposition is disposition
    if rule.to is not None:
        assert rule.to is after.state
        last = after.history[-1]
        assert (event, disposition, rule.note) == (last.state, last.disposition, last.note)
    else:
        assert before is not None
        assert before.state is after.state
        ignore = {"history", "history_dropped", "updated_at"}
        assert before.model_dump(exclude=ignore) == after.model_dump(exclude=ignore)
        if disposition is DUPLICATE:
            assert before is after
        else:
            assert len(before.history) + 1 == len(after.history)
            assert (IGNORED, rule.note) == (after.history[-1].disposition, after.history[-1].note)
    # Once set, the transport timestamps never move.
    if before is not None:
        for name in ("routed_at", "received_at", "decided_at"):
            if getattr(before, name) is not None:
                assert getattr(before, name) == getattr(after, name)


# Written out by hand, apart from the grid, so that a wrong cell fails a test:
# (state, event) -> (disposition, state after, note).
SPOT_CHECKS: dict[
    tuple[HandoverState, HandoverState], tuple[Disposition, HandoverState, str | None]
] = {
    (S.FAILED, S.RECEIVED): (NOTED, S.RECEIVED, "received after failed"),
    (S.FAILED, S.ACCEPTED): (NOTED, S.ACCEPTED, "decision after failed"),
    (S.ROUTED, S.ACCEPTED): (NOTED, S.ACCEPTED, "decision before receipt"),
    (S.ESCALATED, S.CLOSED): (NOTED, S.CLOSED, "closed before receipt"),
    (S.RECEIVED, S.ACTIONED): (NOTED, S.ACTIONED, "actioned without accepted"),
    (S.SUBMITTED, S.ROUTED): (APPLIED, S.ROUTED, None),
    (S.ROUTED, S.RECEIVED): (APPLIED, S.RECEIVED, None),
    (S.OVERDUE, S.RECEIVED): (APPLIED, S.RECEIVED, None),
    (S.ROUTED, S.OVERDUE): (APPLIED, S.OVERDUE, None),
    (S.OVERDUE, S.ESCALATED): (APPLIED, S.ESCALATED, None),
    (S.ESCALATED, S.FAILED): (APPLIED, S.FAILED, None),
    (S.ACCEPTED, S.ACTIONED): (APPLIED, S.ACTIONED, None),
    (S.ACTIONED, S.CLOSED): (APPLIED, S.CLOSED, None),
    (S.RECEIVED, S.ROUTED): (IGNORED, S.RECEIVED, "late routed"),
    (S.ACCEPTED, S.RECEIVED): (
        IGNORED,
        S.ACCEPTED,
        "late receipt: already implied by a case decision",
    ),
    (S.RECEIVED, S.OVERDUE): (IGNORED, S.RECEIVED, "timer event after the receipt"),
    (S.ESCALATED, S.OVERDUE): (IGNORED, S.ESCALATED, "stale overdue: already escalated"),
    (S.FAILED, S.ESCALATED): (IGNORED, S.FAILED, "stale escalated: already failed"),
    (S.SUBMITTED, S.OVERDUE): (IGNORED, S.SUBMITTED, "overdue before routing"),
    (S.ROUTED, S.DEAD_LETTERED): (IGNORED, S.ROUTED, "dead-lettered after routing"),
    (S.REJECTED, S.ACTIONED): (IGNORED, S.REJECTED, "actioned after rejected or moved"),
    (S.ACTIONED, S.REJECTED): (IGNORED, S.ACTIONED, "decision after actioned"),
}
SPOT_IDS = [pair_id(s, e) for s, e in SPOT_CHECKS]


@pytest.mark.parametrize(("state", "event"), SPOT_CHECKS, ids=SPOT_IDS)
def test_the_important_rules(state: HandoverState, event: HandoverState) -> None:
    """Each hand-written rule above holds: disposition, resulting state and note."""
    before, at = reach(state)
    after, disposition = apply(before, ev(event, at), POLICY)
    assert SPOT_CHECKS[state, event] == (disposition, after.state, after.history[-1].note)


def outcome(state: HandoverState, event: HandoverState) -> tuple[Disposition, Handover, Handover]:
    """Apply ``event`` to the handover reached in ``state``: disposition, before, after."""
    before, at = reach(state)
    assert before is not None
    after, disposition = apply(before, ev(event, at), POLICY)
    return disposition, before, after


# Blocks of the grid that the module docstring's rules cover as a whole.
WAITING = [S.SUBMITTED, S.ROUTED, S.OVERDUE, S.REDELIVERED, S.ESCALATED]
RECEIVED_OPEN = [S.RECEIVED, S.ACCEPTED, S.REJECTED, S.MOVED, S.ACTIONED]
CASE_EVENTS = [S.ACCEPTED, S.REJECTED, S.MOVED, S.ACTIONED, S.CLOSED]
TIMER_EVENTS = [S.OVERDUE, S.REDELIVERED, S.ESCALATED, S.FAILED]


def test_nothing_goes_back_to_before_routing() -> None:
    """Once routed, a late submitted, routed or dead-lettered is ignored and recorded."""
    for state in [S.ROUTED, *RECEIVED_OPEN, *TIMER_EVENTS]:
        for event in (S.SUBMITTED, S.ROUTED, S.DEAD_LETTERED):
            if event is not state:
                disposition, before, after = outcome(state, event)
                assert (IGNORED, state) == (disposition, after.state), (state, event)
                assert len(before.history) + 1 == len(after.history)


def test_a_timer_event_after_the_receipt_is_ignored() -> None:
    """After the receipt (and before closed) overdue, redelivered, escalated and failed
    are ignored with the same note."""
    for state in RECEIVED_OPEN:
        for event in TIMER_EVENTS:
            disposition, _, after = outcome(state, event)
            note = "timer event after the receipt"
            assert (IGNORED, state, note) == (disposition, after.state, after.history[-1].note)


def test_a_receipt_or_case_event_while_waiting_counts_as_the_receipt() -> None:
    """Without a receipt, received is applied and a case event is noted; both set
    received_at to their time (stopping the timers). After failed both are noted."""
    for state in [*WAITING, S.FAILED]:
        for event in [S.RECEIVED, *CASE_EVENTS]:
            disposition, before, after = outcome(state, event)
            usual = event is S.RECEIVED and state is not S.FAILED
            assert (APPLIED if usual else NOTED, event) == (disposition, after.state)
            assert (None, after.history[-1].at) == (before.received_at, after.received_at)
            assert next_deadline(after, POLICY) is None


@pytest.mark.parametrize("event", list(HandoverState), ids=[e.value for e in HandoverState])
def test_a_first_event_is_always_applied(event: HandoverState) -> None:
    """Whatever event a handover is first seen with, it starts in that state."""
    h, disposition = apply(None, ev(event, T0), POLICY)
    assert (APPLIED, event, 1) == (disposition, h.state, len(h.history))


@pytest.mark.parametrize("event", list(HandoverState), ids=[e.value for e in HandoverState])
def test_anything_after_closed_or_dead_lettered_is_ignored(event: HandoverState) -> None:
    """closed and dead-lettered are final: any other event is ignored and recorded with
    a note saying so (a submitted after dead-lettered: "late submitted"); the same
    state again is a duplicate."""
    for final, note in ((S.CLOSED, "closed is final"), (S.DEAD_LETTERED, "dead-lettered is final")):
        before, at = reach(final)
        assert before is not None
        after, disposition = apply(before, ev(event, at), POLICY)
        assert final is after.state
        if event is final:
            assert (DUPLICATE, before) == (disposition, after)
        elif (final, event) == (S.DEAD_LETTERED, S.SUBMITTED):
            assert (IGNORED, "late submitted") == (disposition, after.history[-1].note)
        else:
            assert (IGNORED, note) == (disposition, after.history[-1].note)


def test_the_first_decision_stands() -> None:
    """After accepted, rejected or moved a different decision is ignored, as is any
    decision after actioned; only an accepted case is actioned."""
    decisions = (S.ACCEPTED, S.REJECTED, S.MOVED)
    for first in (*decisions, S.ACTIONED):
        for second in decisions:
            if second is not first:
                disposition, _, after = outcome(first, second)
                note = (
                    "decision after actioned"
                    if first is S.ACTIONED
                    else "conflicting decision: the first decision stands"
                )
                assert (IGNORED, first, note) == (disposition, after.state, after.history[-1].note)
    for refused in (S.REJECTED, S.MOVED):
        disposition, _, after = outcome(refused, S.ACTIONED)
        note = "actioned after rejected or moved"
        assert (IGNORED, refused, note) == (disposition, after.state, after.history[-1].note)


def test_after_the_receipt_the_case_runs_its_course() -> None:
    """From received or any decision, closed is applied; a receipt after a decision
    is ignored (the decision implied it)."""
    for state in RECEIVED_OPEN:
        disposition, _, after = outcome(state, S.CLOSED)
        assert (APPLIED, S.CLOSED) == (disposition, after.state)
        assert after.history[-1].at == after.closed_at
        if state is not S.RECEIVED:
            disposition, _, after = outcome(state, S.RECEIVED)
            assert (IGNORED, state) == (disposition, after.state)


def test_timer_events_run_from_routing_to_failed() -> None:
    """After routing and before the receipt the timer events are applied, except a
    stale overdue after escalated; before routing and after failed they are ignored."""
    for state in (S.ROUTED, S.OVERDUE, S.REDELIVERED, S.ESCALATED):
        for event in TIMER_EVENTS:
            if event is not state and (state, event) != (S.ESCALATED, S.OVERDUE):
                disposition, _, after = outcome(state, event)
                assert (APPLIED, event) == (disposition, after.state), (state, event)
    for state in (S.SUBMITTED, S.FAILED):
        for event in TIMER_EVENTS:
            if event is not state:
                disposition, _, after = outcome(state, event)
                assert (IGNORED, state) == (disposition, after.state), (state, event)


@pytest.mark.parametrize("state", list(HandoverState), ids=[s.value for s in HandoverState])
def test_the_same_state_again_is_a_duplicate_that_records_nothing(state: HandoverState) -> None:
    """A second event of the current state (at a new time) changes and records nothing;
    only actioned and redelivered repeat, because every action and attempt counts."""
    before, at = reach(state)
    after, disposition = apply(before, ev(state, at), POLICY)
    if state in (S.ACTIONED, S.REDELIVERED):
        assert before is not None
        assert (APPLIED, state) == (disposition, after.state)
        assert len(before.history) + 1 == len(after.history)
    else:
        assert (DUPLICATE, before) == (disposition, after)


def test_closed_and_dead_lettered_are_final() -> None:
    """After closed (or dead-lettered) no event changes the state."""
    for final in (S.CLOSED, S.DEAD_LETTERED):
        h = fold(*(ev(s, T0 + timedelta(seconds=i)) for i, s in enumerate(PATHS[final])))
        for i, event in enumerate(HandoverState):
            h, _ = apply(h, ev(event, T0 + timedelta(minutes=10 + i)), POLICY)
            assert final is h.state


def test_late_routed_after_received_is_ignored_and_recorded() -> None:
    """A routed event arriving after the receipt neither rewinds the state nor moves
    routed_at; the history says why it was ignored."""
    h = fold(ev(S.ROUTED, T0), ev(S.RECEIVED, T0 + timedelta(seconds=30)))
    h2, d = apply(h, ev(S.ROUTED, T0 + timedelta(minutes=1)), POLICY)
    assert Disposition.IGNORED is d
    assert S.RECEIVED is h2.state
    assert T0 == h2.routed_at
    assert "late routed" == h2.history[-1].note


def test_a_decision_before_the_receipt_implies_it() -> None:
    """accepted without a receipt is taken (noted), and sets received_at to its time,
    which stops the timers."""
    t = T0 + timedelta(minutes=2)
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT), ev(S.ACCEPTED, t))
    assert S.ACCEPTED is h.state
    assert t == h.received_at
    assert Disposition.NOTED is h.history[-1].disposition
    assert next_deadline(h, POLICY) is None


def test_actioned_is_repeatable_and_counted() -> None:
    """Each actioned event counts; the state stays actioned until closed."""
    h = fold(
        ev(S.ROUTED, T0),
        ev(S.RECEIVED, T0 + timedelta(seconds=1)),
        ev(S.ACCEPTED, T0 + timedelta(seconds=2)),
        ev(S.ACTIONED, T0 + timedelta(seconds=3)),
        ev(S.ACTIONED, T0 + timedelta(seconds=4)),
        ev(S.CLOSED, T0 + timedelta(seconds=5)),
    )
    assert 2 == h.actions
    assert S.CLOSED is h.state
    assert T0 + timedelta(seconds=5) == h.closed_at


def test_the_same_event_twice_is_a_silent_duplicate() -> None:
    """Replaying an event already in the history (e.g. the tracker's own timer event
    read back from the status topic) changes nothing at all, even after the
    handover has moved on."""
    overdue = ev(S.OVERDUE, T0 + timedelta(minutes=5), reason=Reason.RECEIPT_OVERDUE)
    escalated = ev(S.ESCALATED, T0 + timedelta(minutes=10), reason=Reason.RECEIPT_OVERDUE)
    h = fold(ev(S.ROUTED, T0), overdue, escalated)
    again, d = apply(h, overdue, POLICY)
    assert Disposition.DUPLICATE is d
    assert h is again


def test_priority_and_jurisdiction_come_from_the_routed_event() -> None:
    """The router's routed event carries priority and jurisdiction; later events that
    lack them do not erase them."""
    h = fold(
        ev(S.ROUTED, T0, priority=Priority.HIGH, jurisdiction="NL"),
        ev(S.RECEIVED, T0 + timedelta(seconds=1)),
    )
    assert Priority.HIGH is h.priority
    assert "NL" == h.jurisdiction


def test_history_is_bounded() -> None:
    """History keeps the last max_history entries and counts the dropped ones."""
    policy = Policy(max_history=3)
    events = [ev(S.ROUTED, T0), ev(S.RECEIVED, T0 + timedelta(seconds=1))]
    events += [ev(S.ACTIONED, T0 + timedelta(seconds=2 + i)) for i in range(5)]
    h = fold(*events, policy=policy)
    assert 3 == len(h.history)
    assert 4 == h.history_dropped
    assert 5 == h.actions


def test_the_handover_round_trips_through_json() -> None:
    """The tracker topic stores the handover as JSON; reading it back is equal."""
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT, jurisdiction="NL"))
    h, _ = tick(h, T0 + timedelta(minutes=5), POLICY)
    assert h == Handover.model_validate_json(h.model_dump_json())


# ----------------------------------------------------------------------- timers


def test_urgent_without_receipt_goes_overdue_escalated_failed() -> None:
    """Urgent: nothing before 5 min; overdue at 5 min (receipt_overdue); escalated to
    the escalation recipient 5 min after that; failed (retries_exhausted) 5 min
    later; then nothing more. Each event is raised at the injected now."""
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT))
    assert (T0 + timedelta(minutes=5), S.OVERDUE) == (h.due_at, h.due_state)
    h, out = tick(h, T0 + timedelta(minutes=4, seconds=59), POLICY)
    assert [] == out
    t1 = T0 + timedelta(minutes=5, seconds=3)
    h, out = tick(h, t1, POLICY)
    assert [(S.OVERDUE, Reason.RECEIPT_OVERDUE, t1)] == [(e.state, e.reason, e.at) for e in out]
    assert h.overdue
    h, out = tick(h, t1, POLICY)
    assert [] == out
    t2 = t1 + timedelta(minutes=5)
    h, out = tick(h, t2, POLICY)
    assert [(S.ESCALATED, "int.coordinator")] == [(e.state, e.escalated_to) for e in out]
    assert ("int.coordinator", t2) == (h.escalated_to, h.escalated_at)
    h, out = tick(h, t2 + timedelta(minutes=4), POLICY)
    assert [] == out
    t3 = t2 + timedelta(minutes=5)
    h, out = tick(h, t3, POLICY)
    assert [(S.FAILED, Reason.RETRIES_EXHAUSTED)] == [(e.state, e.reason) for e in out]
    assert S.FAILED is h.state
    h, out = tick(h, t3 + timedelta(days=30), POLICY)
    assert [] == out
    assert (None, None) == (h.due_at, h.due_state)
    assert [S.ROUTED, S.OVERDUE, S.ESCALATED, S.FAILED] == [x.state for x in h.history]


@pytest.mark.parametrize(
    ("priority", "sla"),
    [
        (Priority.URGENT, timedelta(minutes=5)),
        (Priority.HIGH, timedelta(hours=1)),
        (Priority.ROUTINE, timedelta(hours=24)),
        (None, timedelta(hours=24)),
    ],
)
def test_receipt_deadline_by_priority(priority: Priority | None, sla: timedelta) -> None:
    """The default receipt SLA per priority; no priority means routine."""
    h = fold(ev(S.ROUTED, T0, priority=priority))
    _, out = tick(h, T0 + sla - timedelta(microseconds=1), POLICY)
    assert [] == out
    _, out = tick(h, T0 + sla, POLICY)
    assert [S.OVERDUE] == [e.state for e in out]


def test_the_sla_is_configurable() -> None:
    """Settings set the per-priority SLA and the graces of the later steps."""
    settings = TrackerSettings(
        receipt_sla_urgent=timedelta(seconds=30), escalate_after=2.0, fail_after=0.5
    )
    policy = policy_from(settings, "int.coordinator")
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT), policy=policy)
    h, out = tick(h, T0 + timedelta(seconds=30), policy)
    assert [S.OVERDUE] == [e.state for e in out]
    assert (T0 + timedelta(seconds=90), S.ESCALATED) == next_deadline(h, policy)
    h, _ = tick(h, T0 + timedelta(seconds=90), policy)
    assert (T0 + timedelta(seconds=105), S.FAILED) == next_deadline(h, policy)


def test_policy_takes_the_escalation_recipient_from_the_rules() -> None:
    """The routing rules or a bare participant id name the escalation recipient."""
    rules = RoutingRules(coordinator="int.coordinator", escalation_recipient="int.escalation")
    assert "int.escalation" == policy_from(TrackerSettings(), rules).escalation_recipient
    assert "x.y" == policy_from(TrackerSettings(), "x.y").escalation_recipient
    assert policy_from(TrackerSettings(), None).escalation_recipient is None


def test_a_receipt_stops_the_timers() -> None:
    """Received before the deadline: no timer runs, however late the tick."""
    h = fold(
        ev(S.ROUTED, T0, priority=Priority.URGENT),
        ev(S.RECEIVED, T0 + timedelta(minutes=1)),
    )
    assert next_deadline(h, POLICY) is None
    _, out = tick(h, T0 + timedelta(days=2), POLICY)
    assert [] == out


def test_a_receipt_after_failed_is_taken_and_noted() -> None:
    """A late receipt after failed moves the handover to received, with a note, and
    it is no longer overdue."""
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT))
    for minutes in (5, 10, 15):
        h, _ = tick(h, T0 + timedelta(minutes=minutes), POLICY)
    assert S.FAILED is h.state
    h, d = apply(h, ev(S.RECEIVED, T0 + timedelta(hours=1)), POLICY)
    assert (Disposition.NOTED, S.RECEIVED) == (d, h.state)
    assert "received after failed" == h.history[-1].note
    assert not h.overdue
    assert timedelta(hours=1) == h.time_to_receipt


def test_without_escalation_recipient_overdue_is_followed_by_failed() -> None:
    """No one to escalate to: overdue, then failed after both graces."""
    policy = Policy()
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT), policy=policy)
    h, _ = tick(h, T0 + timedelta(minutes=5), policy)
    h, out = tick(h, T0 + timedelta(minutes=14), policy)
    assert [] == out
    h, out = tick(h, T0 + timedelta(minutes=15), policy)
    assert [S.FAILED] == [e.state for e in out]


def test_a_tracker_that_was_down_raises_one_step_at_a_time() -> None:
    """Ticking a day late raises only overdue; the escalation recipient still gets its
    full window before failed."""
    h = fold(ev(S.ROUTED, T0, priority=Priority.URGENT))
    late = T0 + timedelta(days=1)
    h, out = tick(h, late, POLICY)
    assert [S.OVERDUE] == [e.state for e in out]
    assert late + timedelta(minutes=5) == h.due_at


def test_no_timer_without_routing() -> None:
    """Submitted and dead-lettered handovers have no receipt deadline."""
    for state in (S.SUBMITTED, S.DEAD_LETTERED):
        h = fold(ev(state, T0, recipient=None))
        assert next_deadline(h, POLICY) is None


# ----------------------------------------------------------------------- ledger


def test_ledger_step_changes_nothing_until_committed() -> None:
    """step() computes changes and timer events; the ledger takes them on commit()."""
    ledger = Ledger(POLICY)
    step = ledger.step([ev(S.ROUTED, T0, priority=Priority.URGENT)], T0)
    assert 0 == len(ledger)
    assert [] == step.emitted
    ledger.commit(step.changed.values())
    assert 1 == len(ledger)
    later = T0 + timedelta(minutes=5)
    step = ledger.step([], later)
    assert [S.OVERDUE] == [e.state for e in step.emitted]
    assert S.ROUTED is ledger.handovers[step.emitted[0].key()].state
    ledger.commit(step.changed.values())
    assert S.OVERDUE is ledger.handovers[step.emitted[0].key()].state
    # The tracker's own event read back changes nothing.
    echo = ledger.step(step.emitted, later)
    assert ({}, []) == (echo.changed, echo.emitted)
    assert [Disposition.DUPLICATE] == [d for _, d in echo.dispositions]


def test_ledger_step_ticks_handovers_changed_in_the_same_batch() -> None:
    """A routed event folded in a batch whose now is already past its deadline is
    raised overdue in that same step; one received in the batch is not."""
    ledger = Ledger(POLICY)
    other = mid()
    late = T0 + timedelta(minutes=6)
    step = ledger.step(
        [
            ev(S.ROUTED, T0, priority=Priority.URGENT),
            ev(S.ROUTED, T0, message_id=other, priority=Priority.URGENT),
            ev(S.RECEIVED, T0 + timedelta(minutes=1), message_id=other),
        ],
        late,
    )
    assert [(MESSAGE, S.OVERDUE)] == [(e.message_id, e.state) for e in step.emitted]
    assert 2 == len(step.changed)


def test_ledger_closes_waiting_handovers_of_a_sender_that_cannot_be_answered() -> None:
    """Once the directory says a sender is revoked, its handovers still waiting for a
    receipt close (``sender_revoked``) — not overdue, not failed; its handovers with a
    receipt, and every other sender's, are untouched; nothing is raised twice."""
    ledger = Ledger(POLICY)
    waiting, overdue, receipted, other = mid(), mid(), mid(), mid()
    first = ledger.step(
        [
            ev(S.ROUTED, T0, message_id=waiting),
            ev(S.ROUTED, T0, message_id=overdue, priority=Priority.URGENT),
            ev(S.ROUTED, T0, message_id=receipted),
            ev(S.RECEIVED, T0 + timedelta(minutes=1), message_id=receipted),
            ev(S.ROUTED, T0, message_id=other, sender="nl.hotline", recipient="de.hotline"),
        ],
        T0 + timedelta(minutes=6),
    )
    ledger.commit(first.changed.values())
    assert [S.OVERDUE] == [e.state for e in first.emitted]
    revoked_at = T0 + timedelta(minutes=7)
    asked: list[str] = []

    def answerable(sender: str) -> bool:
        asked.append(sender)
        return sender != "de.hotline"

    step = ledger.step([], revoked_at, answerable=answerable)
    closed = {e.message_id: e for e in step.emitted}
    assert {waiting, overdue} == set(closed)
    for e in closed.values():
        assert (e.state, e.reason, e.at) == (S.CLOSED, Reason.SENDER_REVOKED, revoked_at)
    assert sorted(asked) == ["de.hotline", "nl.hotline"], "asked once per waiting sender"
    ledger.commit(step.changed.values())
    assert S.RECEIVED is ledger.handovers[f"{receipted}/nl.hotline"].state
    assert S.ROUTED is ledger.handovers[f"{other}/de.hotline"].state
    again = ledger.step(step.emitted, revoked_at + timedelta(minutes=1), answerable=answerable)
    assert ([], {}) == (again.emitted, again.changed)


def test_a_handover_routed_after_its_sender_was_revoked_closes_in_the_same_step() -> None:
    """The router forwarded just before the revocation; the routed event arrives after."""
    ledger = Ledger(POLICY)
    step = ledger.step([ev(S.ROUTED, T0)], T0, answerable=lambda _sender: False)
    assert [(S.CLOSED, Reason.SENDER_REVOKED)] == [(e.state, e.reason) for e in step.emitted]
    assert S.CLOSED is next(iter(step.changed.values())).state


# ------------------------------------------------------------------------ views


def _sample() -> list[Handover]:
    m1, m2, m3, c1, c2 = mid(), mid(), mid(), mid(), mid()
    out = []
    for i, recipient in enumerate(("nl.hotline", "nl.police24")):
        out.append(
            fold(
                ev(S.ROUTED, T0, message_id=m1, case_id=c1, recipient=recipient, jurisdiction="NL"),
                ev(
                    S.RECEIVED,
                    T0 + timedelta(seconds=10 * (i + 1)),
                    message_id=m1,
                    case_id=c1,
                    recipient=recipient,
                ),
            )
        )
    urgent = fold(
        ev(
            S.ROUTED,
            T0,
            message_id=m2,
            case_id=c2,
            recipient="de.police",
            priority=Priority.URGENT,
            jurisdiction="DE",
        )
    )
    urgent, _ = tick(urgent, T0 + timedelta(minutes=5), POLICY)
    out.append(urgent)
    out.append(fold(ev(S.DEAD_LETTERED, T0, message_id=m3, case_id=c2, recipient=None)))
    return out


def test_views_by_case_and_message() -> None:
    """A case id finds every handover of the case; a message id every recipient of
    the message; find() tells which it was."""
    hs = _sample()
    c1, m1 = hs[0].case_id, hs[0].message_id
    assert ["nl.hotline", "nl.police24"] == [h.recipient for h in by_case(hs, c1)]
    assert ["nl.hotline", "nl.police24"] == [h.recipient for h in by_message(hs, m1)]
    assert ("case", by_case(hs, c1)) == find(hs, c1)
    assert ("message", by_message(hs, m1)) == find(hs, m1)
    assert ("message", []) == find(hs, mid())
    assert 2 == len(by_case(hs, hs[2].case_id))


def test_views_select_filters() -> None:
    """Filters by overdue, jurisdiction and state, alone and combined."""
    hs = _sample()
    assert [hs[2]] == select(hs, overdue=True)
    assert 3 == len(select(hs, overdue=False))
    assert 2 == len(select(hs, jurisdiction="NL"))
    assert [hs[2]] == select(hs, jurisdiction="DE", overdue=True)
    assert [hs[3]] == select(hs, state=S.DEAD_LETTERED)
    assert [] == select(hs, jurisdiction="FR")
    assert 4 == len(select(hs))


def test_route_stats_counts_and_times() -> None:
    """Per route: sent, received, dead-lettered, overdue, median and p99 time to
    receipt in seconds."""
    stats = {(s.sender, s.recipient): s for s in route_stats(_sample())}
    hot = stats["de.hotline", "nl.hotline"]
    assert (1, 1, 0, 0, 10.0, 10.0) == (
        hot.sent,
        hot.received,
        hot.dead_lettered,
        hot.overdue,
        hot.median_seconds_to_receipt,
        hot.p99_seconds_to_receipt,
    )
    assert 20.0 == stats["de.hotline", "nl.police24"].median_seconds_to_receipt
    late = stats["de.hotline", "de.police"]
    assert (1, 0, 1, None) == (late.sent, late.received, late.overdue, late.p99_seconds_to_receipt)
    dead = stats["de.hotline", None]
    assert (0, 1) == (dead.sent, dead.dead_lettered)


def test_route_stats_median_and_p99_over_many() -> None:
    """Times 1..100 s on one route: median 50.5 s, p99 99 s (nearest rank)."""
    hs = []
    for i in range(1, 101):
        m = mid()
        hs.append(
            fold(
                ev(S.ROUTED, T0, message_id=m),
                ev(S.RECEIVED, T0 + timedelta(seconds=i), message_id=m),
            )
        )
    [route] = route_stats(hs)
    assert (100, 100, 50.5, 99.0) == (
        route.sent,
        route.received,
        route.median_seconds_to_receipt,
        route.p99_seconds_to_receipt,
    )


def test_percentile_nearest_rank() -> None:
    """Nearest rank: always an observed value; None for no values."""
    assert percentile([], 99) is None
    assert 7.0 == percentile([7.0], 99)
    assert 3.0 == percentile([1.0, 2.0, 3.0, 4.0], 75)
    assert 4.0 == percentile([4.0, 1.0, 3.0, 2.0], 100)


def test_the_first_receipt_and_decision_are_kept_as_evidence() -> None:
    """The reply that moved a handover (its id and verified envelope digest) is kept:
    the first receipt, and the acknowledgement carrying the first decision."""
    receipt, again, ack = mid(), mid(), mid()

    def reply(state: HandoverState, at: datetime, reply_id: UUID, digit: str) -> StatusEvent:
        return ev(state, at).model_copy(update={"reply_id": reply_id, "reply_sha256": digit * 64})

    h = fold(
        ev(S.ROUTED, T0),
        reply(S.RECEIVED, T0 + timedelta(seconds=1), receipt, "a"),
        reply(S.RECEIVED, T0 + timedelta(seconds=2), again, "b"),
        reply(S.ACCEPTED, T0 + timedelta(seconds=3), ack, "c"),
    )
    assert (receipt, "a" * 64) == (h.receipt_id, h.receipt_sha256)
    assert (ack, "c" * 64) == (h.decision_id, h.decision_sha256)
    assert (None, None) == (fold(ev(S.ROUTED, T0)).receipt_id, fold(ev(S.ROUTED, T0)).decision_id)


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_quiet_handovers_past_the_retention_are_forgotten(store: str) -> None:
    """Nothing pending (no timer) and no change since the cutoff: forgotten; a
    handover with a running timer, or changed in the same batch, is kept."""
    from broker.tracker._store import SqliteHandovers

    backing = None
    if store == "sqlite":
        backing = SqliteHandovers.open(None, "unit.tracker", "policy")
    ledger = Ledger(POLICY, backing)
    done, waiting, busy = mid(), mid(), mid()
    first = [
        ev(S.ROUTED, T0, message_id=done),
        ev(S.RECEIVED, T0 + timedelta(seconds=5), message_id=done),
        ev(S.ROUTED, T0, message_id=waiting),
        ev(S.ROUTED, T0, message_id=busy),
        ev(S.RECEIVED, T0 + timedelta(seconds=5), message_id=busy),
    ]
    ledger.commit(ledger.step(first, T0 + timedelta(seconds=5)).changed.values())
    later = T0 + timedelta(days=400)
    step = ledger.step(
        [ev(S.ACCEPTED, later, message_id=busy)],
        later,
        forget_before=later - timedelta(days=365),
    )
    assert [f"{done}/nl.hotline"] == step.forgotten
    ledger.commit(step.changed.values(), step.forgotten)
    assert ledger.get(f"{done}/nl.hotline") is None
    assert ledger.get(f"{waiting}/nl.hotline") is not None, "its timer runs"
    assert ledger.get(f"{busy}/nl.hotline") is not None, "changed in this batch"
