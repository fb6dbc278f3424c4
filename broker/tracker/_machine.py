"""The handover state machine and its SLA timers — pure: no I/O, time passed in.

A *handover* is one (message, recipient) pair, keyed ``"<message_id>/<recipient>"``
like :meth:`schemas.StatusEvent.key`. Its ``state`` is one :class:`HandoverState`:
transport states first (submitted → routed → received; dead_lettered; overdue →
redelivered / escalated → failed), then the case decision (accepted / rejected /
moved → actioned (repeatable) → closed). ``None`` stands for "not seen yet".

:data:`TABLE` maps every ``(state or None, event state)`` to a :class:`Rule`: the
new state and a :class:`Disposition`; it is written out below as a grid, a row per
state and a column per event. Nothing an event says can corrupt a handover:

- ``applied``: the usual order.
- ``noted``: applied, but out of the usual order, with a note — ``received`` after
  ``failed`` (a late receipt still counts), a case decision before the receipt
  (the decision implies the receipt: ``received_at`` is set to its time).
- ``ignored``: recorded in the history, state unchanged — a late ``routed`` after
  ``received``, anything after ``closed`` (final), a decision contradicting an
  earlier one (the first decision stands), a timer event after the receipt.
- ``duplicate``: the same state again; nothing changes and nothing is recorded.
  An event equal (state, time, reason) to one already in the history is a
  duplicate too, so folding the tracker's own events back in is a no-op.

Timers (:func:`tick`): the SLA clock runs from ``routed_at`` while the handover is
routed / overdue / redelivered / escalated and has no receipt. Receipt due
``routed_at + SLA(priority)`` (no priority ⇒ routine) → ``overdue`` (reason
``receipt_overdue``); ``escalate_after * SLA`` later → ``escalated`` to the
escalation recipient the routing rules name; ``fail_after * SLA`` after that →
``failed`` (reason ``retries_exhausted``). Each step counts from the time the
previous one was *raised*, not from its due time, so a tracker that was down does
not raise overdue, escalated and failed in one go: the escalation recipient
always gets its full window. With no escalation recipient, overdue is followed by
failed after both graces. A receipt at any time stops the timers. A handover
whose sender the directory says can no longer be answered (revoked or suspended)
is closed instead (reason ``sender_revoked``): the recipient cannot seal a
receipt to it, and records the same reason on its side.

Redelivery is not driven from here: Kafka keeps the record, so a recipient that
was down reads it when it comes back; and a *sender* sends a referral that stays
unanswered again under its id (``AdapterSettings.redeliver_after_*``), which the
router forwards as an authorised redelivery and reports as ``redelivered`` — an
event that keeps the timers running and counts ``redeliveries``. The tracker's
job is to make the overdue visible and to escalate.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas import (
    CaseId,
    Category,
    CountryCode,
    Deconfliction,
    HandoverState,
    MessageId,
    ParticipantId,
    Priority,
    Reason,
    StatusEvent,
    StatusReason,
    UtcDatetime,
)

__all__ = [
    "CASE_STATES",
    "TABLE",
    "TIMED_STATES",
    "Disposition",
    "Handover",
    "HandoverStore",
    "HistoryEntry",
    "InMemoryHandovers",
    "Ledger",
    "Policy",
    "Rule",
    "Sla",
    "Step",
    "apply",
    "handover_key",
    "next_deadline",
    "tick",
]

S = HandoverState


class Disposition(StrEnum):
    """What an event did to a handover (see the module docstring)."""

    APPLIED = "applied"
    NOTED = "noted"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Rule:
    to: HandoverState | None
    """The new state; ``None`` keeps the current one."""
    disposition: Disposition
    note: str | None = None


TIMED_STATES: frozenset[HandoverState] = frozenset(
    {S.ROUTED, S.OVERDUE, S.REDELIVERED, S.ESCALATED}
)
"""States in which the SLA clock runs."""
DECISIONS: frozenset[HandoverState] = frozenset({S.ACCEPTED, S.REJECTED, S.MOVED})
CASE_STATES: frozenset[HandoverState] = DECISIONS | {S.ACTIONED, S.CLOSED}
_RECEIVED_OR_LATER: frozenset[HandoverState] = CASE_STATES | {S.RECEIVED}


# The transition table, read as a spec: a row per current state (``(new)``: not seen
# yet), a column per event state. A cell is
#   >   applied: becomes the event's (column's) state
#   ~x  noted: becomes the event's state out of the usual order, note x
#   -x  ignored: state unchanged, recorded in the history with note x
#   =   duplicate: nothing changes, nothing is recorded
# ``act`` after ``act`` and ``red`` after ``red`` are applied, not duplicates: every
# action and every redelivery attempt counts.
_ABBREVIATIONS: Mapping[str, HandoverState] = {
    "sub": S.SUBMITTED,
    "rou": S.ROUTED,
    "dl": S.DEAD_LETTERED,
    "rec": S.RECEIVED,
    "acc": S.ACCEPTED,
    "rej": S.REJECTED,
    "mov": S.MOVED,
    "act": S.ACTIONED,
    "clo": S.CLOSED,
    "ovd": S.OVERDUE,
    "red": S.REDELIVERED,
    "esc": S.ESCALATED,
    "fai": S.FAILED,
}
_GRID = """
      sub  rou  dl   rec  acc  rej  mov  act  clo  ovd  red  esc  fai
(new) >    >    >    >    >    >    >    >    >    >    >    >    >
sub   =    >    >    >    ~a   ~a   ~a   ~b   ~c   -d   -e   -f   -g
rou   -h   =    -i   >    ~a   ~a   ~a   ~b   ~c   >    >    >    >
dl    -h   -j   =    -j   -j   -j   -j   -j   -j   -j   -j   -j   -j
rec   -h   -k   -i   =    >    >    >    ~l   >    -m   -m   -m   -m
acc   -h   -k   -i   -n   =    -o   -o   >    >    -m   -m   -m   -m
rej   -h   -k   -i   -n   -o   =    -o   -p   >    -m   -m   -m   -m
mov   -h   -k   -i   -n   -o   -o   =    -p   >    -m   -m   -m   -m
act   -h   -k   -i   -n   -q   -q   -q   >    >    -m   -m   -m   -m
clo   -r   -r   -r   -r   -r   -r   -r   -r   =    -r   -r   -r   -r
ovd   -h   -k   -i   >    ~a   ~a   ~a   ~b   ~c   =    >    >    >
red   -h   -k   -i   >    ~a   ~a   ~a   ~b   ~c   >    >    >    >
esc   -h   -k   -i   >    ~a   ~a   ~a   ~b   ~c   -s   >    =    >
fai   -h   -k   -i   ~t   ~u   ~u   ~u   ~v   ~w   -x   -y   -z   =
"""
_NOTES: Mapping[str, str] = {
    "a": "decision before receipt",
    "b": "actioned before receipt",
    "c": "closed before receipt",
    "d": "overdue before routing",
    "e": "redelivered before routing",
    "f": "escalated before routing",
    "g": "failed before routing",
    "h": "late submitted",
    "i": "dead-lettered after routing",
    "j": "dead-lettered is final",
    "k": "late routed",
    "l": "actioned without accepted",
    "m": "timer event after the receipt",
    "n": "late receipt: already implied by a case decision",
    "o": "conflicting decision: the first decision stands",
    "p": "actioned after rejected or moved",
    "q": "decision after actioned",
    "r": "closed is final",
    "s": "stale overdue: already escalated",
    "t": "received after failed",
    "u": "decision after failed",
    "v": "actioned after failed",
    "w": "closed after failed",
    "x": "stale overdue: already failed",
    "y": "redelivered after failed",
    "z": "stale escalated: already failed",
}


def _parse_grid(
    grid: str, notes: Mapping[str, str]
) -> dict[tuple[HandoverState | None, HandoverState], Rule]:
    """Read the grid above; raise ``ValueError`` unless it is complete and well formed."""
    used: set[str] = set()

    def state(label: str) -> HandoverState | None:
        if label == "(new)":
            return None
        if label not in _ABBREVIATIONS:
            raise ValueError(f"unknown state abbreviation {label!r}")
        return _ABBREVIATIONS[label]

    def once_each(got: list[HandoverState | None], want: list[HandoverState | None]) -> None:
        if len(got) != len(want) or set(got) != set(want):
            raise ValueError(f"want each of {want} once, got {got}")

    def rule(cell: str, event: HandoverState) -> Rule:
        if cell == ">":
            return Rule(event, Disposition.APPLIED)
        if cell == "=":
            return Rule(None, Disposition.DUPLICATE)
        kind, key = cell[:1], cell[1:]
        if kind in ("~", "-") and key in notes:
            used.add(key)
            if kind == "~":
                return Rule(event, Disposition.NOTED, notes[key])
            return Rule(None, Disposition.IGNORED, notes[key])
        raise ValueError(f"bad cell {cell!r} in column {event}")

    lines = [line.split() for line in grid.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty grid")
    header, *rows = lines
    columns = [state(label) for label in header]
    once_each(columns, [*HandoverState])
    events = [e for e in columns if e is not None]  # all of them: checked just above
    once_each([state(row[0]) for row in rows], [None, *HandoverState])
    table: dict[tuple[HandoverState | None, HandoverState], Rule] = {}
    for label, *cells in rows:
        if len(cells) != len(events):
            raise ValueError(f"row {label} has {len(cells)} cells, want {len(events)}")
        for event, cell in zip(events, cells, strict=True):
            table[state(label), event] = rule(cell, event)
    if unused := set(notes) - used:
        raise ValueError(f"footnotes not used in the grid: {sorted(unused)}")
    return table


TABLE: Mapping[tuple[HandoverState | None, HandoverState], Rule] = _parse_grid(_GRID, _NOTES)
"""Every ``(current state or None, event state)`` → :class:`Rule`, as :data:`_GRID` says."""


# ----------------------------------------------------------------- the handover


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HistoryEntry(_Model):
    """One event as the tracker saw it, and what it did."""

    state: HandoverState
    at: UtcDatetime
    reason: StatusReason | None = None
    escalated_to: ParticipantId | None = None
    disposition: Disposition
    note: str | None = None


class Handover(_Model):
    """What the tracker knows about one (message, recipient) handover.

    This is also the value written (as JSON) to the compacted tracker topic.
    """

    schema_version: Literal[1] = 1
    message_id: MessageId
    recipient: ParticipantId | None
    case_id: CaseId
    sender: ParticipantId
    priority: Priority | None = None
    jurisdiction: CountryCode | None = None
    category: Category | None = None
    deconfliction: Deconfliction | None = None
    """The referral's keyed tags (from its ``routed`` event), for matching."""
    escalation_of: MessageId | None = None
    """When this referral escalates another (the sender re-sealed an overdue one to
    the escalation recipient): that one's message id."""
    state: HandoverState
    receipt_id: MessageId | None = None
    """The receiving agency's signed receipt, as the router forwarded it."""
    receipt_sha256: str | None = None
    decision_id: MessageId | None = None
    """The case acknowledgement carrying the first decision."""
    decision_sha256: str | None = None
    routed_at: UtcDatetime | None = None
    received_at: UtcDatetime | None = None
    decided_at: UtcDatetime | None = None
    closed_at: UtcDatetime | None = None
    overdue_at: UtcDatetime | None = None
    escalated_at: UtcDatetime | None = None
    escalated_to: ParticipantId | None = None
    failed_at: UtcDatetime | None = None
    due_at: UtcDatetime | None = None
    """When the next timer fires (``due_state``), if one runs."""
    due_state: HandoverState | None = None
    actions: int = 0
    redeliveries: int = 0
    updated_at: UtcDatetime
    history: tuple[HistoryEntry, ...] = ()
    history_dropped: int = Field(default=0, ge=0)
    """Entries dropped from the front of ``history`` to keep it bounded."""

    @property
    def key(self) -> str:
        return handover_key(str(self.message_id), self.recipient)

    @property
    def overdue(self) -> bool:
        """Raised overdue and still without a receipt (includes escalated, failed)."""
        return self.overdue_at is not None and self.received_at is None

    @property
    def time_to_receipt(self) -> timedelta | None:
        if self.routed_at is None or self.received_at is None:
            return None
        return self.received_at - self.routed_at


def handover_key(message_id: str, recipient: str | None) -> str:
    """Same as :meth:`schemas.StatusEvent.key`."""
    return f"{message_id}/{recipient or '-'}"


# ----------------------------------------------------------------- the policy


@dataclass(frozen=True, slots=True)
class Sla:
    """Receipt deadlines by priority and the graces of the later steps."""

    receipt: Mapping[Priority, timedelta] = field(
        default_factory=lambda: {
            Priority.URGENT: timedelta(minutes=5),
            Priority.HIGH: timedelta(hours=1),
            Priority.ROUTINE: timedelta(hours=24),
        }
    )
    escalate_after: float = 1.0
    """Multiple of the priority's SLA between overdue and escalated."""
    fail_after: float = 1.0
    """Multiple of the priority's SLA between escalated and failed."""

    def receipt_within(self, priority: Priority | None) -> timedelta:
        return self.receipt[priority or Priority.ROUTINE]


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the pure core needs besides the events and the time."""

    sla: Sla = field(default_factory=Sla)
    escalation_recipient: str | None = None
    max_history: int = 100


# ------------------------------------------------------------------ transitions


def _fill(h: Handover, event: StatusEvent) -> dict[str, object]:
    """Fields the event may complete (priority and jurisdiction arrive with routed)."""
    update: dict[str, object] = {}
    if h.priority is None and event.priority is not None:
        update["priority"] = event.priority
    if h.jurisdiction is None and event.jurisdiction is not None:
        update["jurisdiction"] = event.jurisdiction
    if h.category is None and event.category is not None:
        update["category"] = event.category
    if h.deconfliction is None and event.deconfliction is not None:
        update["deconfliction"] = event.deconfliction
    if h.escalation_of is None and event.escalation_of is not None:
        update["escalation_of"] = event.escalation_of
    return update


def _effects(h: Handover, event: StatusEvent, rule: Rule) -> dict[str, object]:
    """Timestamps and counters an applied event sets."""
    at, e = event.at, event.state
    u: dict[str, object] = {}
    if rule.to is None:
        return u
    u["state"] = rule.to
    if e is S.ROUTED and h.routed_at is None:
        u["routed_at"] = at
    if (e is S.RECEIVED or e in CASE_STATES) and h.received_at is None:
        u["received_at"] = at  # a case decision implies the receipt
    if e is S.RECEIVED and event.reply_id is not None and h.receipt_id is None:
        u["receipt_id"], u["receipt_sha256"] = event.reply_id, event.reply_sha256
    if e in DECISIONS and event.reply_id is not None and h.decision_id is None:
        u["decision_id"], u["decision_sha256"] = event.reply_id, event.reply_sha256
    if e in DECISIONS and h.decided_at is None:
        u["decided_at"] = at
    if e is S.ACTIONED:
        u["actions"] = h.actions + 1
    if e is S.CLOSED:
        u["closed_at"] = at
    if e is S.OVERDUE and h.overdue_at is None:
        u["overdue_at"] = at
    if e is S.REDELIVERED:
        u["redeliveries"] = h.redeliveries + 1
    if e is S.ESCALATED:
        u["escalated_at"] = at
        u["escalated_to"] = event.escalated_to
        if h.overdue_at is None:
            u["overdue_at"] = at
    if e is S.FAILED:
        u["failed_at"] = at
        if h.overdue_at is None:
            u["overdue_at"] = at
    return u


def _new(event: StatusEvent) -> Handover:
    return Handover(
        message_id=event.message_id,
        recipient=event.recipient,
        case_id=event.case_id,
        sender=event.sender,
        priority=event.priority,
        jurisdiction=event.jurisdiction,
        category=event.category,
        deconfliction=event.deconfliction,
        escalation_of=event.escalation_of,
        state=event.state,
        updated_at=event.at,
    )


def _seen(h: Handover, event: StatusEvent) -> bool:
    return any(
        x.state is event.state and x.at == event.at and x.reason == event.reason for x in h.history
    )


def apply(h: Handover | None, event: StatusEvent, policy: Policy) -> tuple[Handover, Disposition]:
    """Fold one status event into a handover (``None``: first event of this key).

    Returns the handover unchanged (the same object) for a duplicate.
    """
    if h is not None and _seen(h, event):
        return h, Disposition.DUPLICATE
    rule = TABLE[(h.state if h is not None else None), event.state]
    if rule.disposition is Disposition.DUPLICATE and h is not None:
        return h, Disposition.DUPLICATE
    base = h if h is not None else _new(event)
    entry = HistoryEntry(
        state=event.state,
        at=event.at,
        reason=event.reason,
        escalated_to=event.escalated_to,
        disposition=rule.disposition,
        note=rule.note,
    )
    history = (*base.history, entry)
    dropped = base.history_dropped
    if len(history) > policy.max_history:
        dropped += len(history) - policy.max_history
        history = history[-policy.max_history :]
    update: dict[str, object] = {"history": history, "history_dropped": dropped}
    update["updated_at"] = max(base.updated_at, event.at)
    if rule.disposition is not Disposition.IGNORED:
        update |= _fill(base, event)
        update |= _effects(base, event, rule)
    out = base.model_copy(update=update)
    return _with_deadline(out, policy), rule.disposition


# ----------------------------------------------------------------------- timers


def next_deadline(h: Handover, policy: Policy) -> tuple[datetime, HandoverState] | None:
    """When the next timer fires and what it raises, or ``None`` if none runs."""
    if h.state not in TIMED_STATES or h.received_at is not None or h.routed_at is None:
        return None
    sla = policy.sla.receipt_within(h.priority)
    if h.overdue_at is None:
        return h.routed_at + sla, S.OVERDUE
    if h.escalated_at is None and policy.escalation_recipient is not None:
        return h.overdue_at + sla * policy.sla.escalate_after, S.ESCALATED
    if h.escalated_at is not None:
        return h.escalated_at + sla * policy.sla.fail_after, S.FAILED
    return h.overdue_at + sla * (policy.sla.escalate_after + policy.sla.fail_after), S.FAILED


def _with_deadline(h: Handover, policy: Policy) -> Handover:
    nd = next_deadline(h, policy)
    due_at, due_state = nd if nd is not None else (None, None)
    if (h.due_at, h.due_state) == (due_at, due_state):
        return h
    return h.model_copy(update={"due_at": due_at, "due_state": due_state})


_TIMER_REASONS: Mapping[HandoverState, Reason] = {
    S.OVERDUE: Reason.RECEIPT_OVERDUE,
    S.ESCALATED: Reason.RECEIPT_OVERDUE,
    S.FAILED: Reason.RETRIES_EXHAUSTED,
}


def tick(
    h: Handover, now: datetime, policy: Policy, *, sender_revoked: bool = False
) -> tuple[Handover, list[StatusEvent]]:
    """Raise the timer events due at ``now`` (each at ``now``); apply them to ``h``.

    ``sender_revoked``: the directory says the sender can no longer be answered
    (revoked or suspended). A handover still waiting for its receipt is then closed
    (reason ``sender_revoked``) instead of going overdue: no receipt can come, and
    that is not the recipient's failure."""
    events: list[StatusEvent] = []
    if sender_revoked and next_deadline(h, policy) is not None:
        event = _timer_event(h, S.CLOSED, now, Reason.SENDER_REVOKED, None)
        h, _ = apply(h, event, policy)
        return h, [event]
    while (nd := next_deadline(h, policy)) is not None and now >= nd[0]:
        state = nd[1]
        escalated_to = policy.escalation_recipient if state is S.ESCALATED else None
        event = _timer_event(h, state, now, _TIMER_REASONS[state], escalated_to)
        h, _ = apply(h, event, policy)
        events.append(event)
    return h, events


def _timer_event(
    h: Handover, state: HandoverState, now: datetime, reason: Reason, escalated_to: str | None
) -> StatusEvent:
    return StatusEvent(
        message_id=h.message_id,
        case_id=h.case_id,
        sender=h.sender,
        recipient=h.recipient,
        state=state,
        at=now,
        reason=reason,
        escalated_to=escalated_to,
        priority=h.priority,
        jurisdiction=h.jurisdiction,
    )


# ----------------------------------------------------------------------- ledger


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one batch: changed handovers and timer events to publish."""

    changed: dict[str, Handover]
    emitted: list[StatusEvent]
    dispositions: list[tuple[str, Disposition]]
    forgotten: list[str] = field(default_factory=list)
    """Keys of handovers quiet past the retention, to forget (tombstones)."""


class HandoverStore(Mapping[str, Handover]):
    """Where the ledger keeps its handovers, by key: in memory
    (:class:`InMemoryHandovers`) or in the tracker's local snapshot on disk
    (``broker.tracker._store``), so that memory stays bounded."""

    @abstractmethod
    def put(self, handovers: Sequence[Handover], /) -> None:
        """Store these (replacing any with the same key)."""

    @abstractmethod
    def waiting(self) -> Iterable[tuple[str, str, datetime]]:
        """``(key, sender, due_at)`` of every handover with a running timer."""

    @abstractmethod
    def quiet(self, before: datetime, limit: int) -> list[str]:
        """Keys of up to ``limit`` handovers last updated before ``before`` with no
        timer running: nothing is pending on them."""

    @abstractmethod
    def delete(self, keys: Sequence[str], /) -> None:
        """Forget these handovers."""

    def tagged(self, epoch: int, tags: Sequence[str], *, limit: int) -> list[tuple[UUID, int]]:
        """``(message id, tags shared)`` of up to ``limit`` referrals sharing a tag of
        ``epoch`` with ``tags``, earliest routed first (deconfliction). A store on
        disk answers from an index; this default scans."""
        wanted = set(tags)
        first: dict[UUID, tuple[datetime, int]] = {}
        for h in self.values():
            d = h.deconfliction
            if d is None or d.epoch != epoch or h.message_id in first:
                continue
            shared = len(wanted.intersection(d.tags))
            if shared:
                first[h.message_id] = (h.routed_at or h.updated_at, shared)
        ordered = sorted(first.items(), key=lambda kv: (kv[1][0], kv[0]))
        return [(mid, shared) for mid, (_, shared) in ordered[:limit]]

    def matching(
        self,
        *,
        case_id: UUID | None = None,
        message_id: UUID | None = None,
        participant: str | None = None,
        state: HandoverState | None = None,
        jurisdiction: str | None = None,
        overdue: bool | None = None,
    ) -> Iterable[Handover]:
        """Handovers matching every given filter (``participant``: as sender,
        recipient or escalation recipient) — ``_views.Filters.matches``, the one
        definition. A store on disk answers from indexes."""
        from broker.tracker._views import Filters  # the views import this module

        f = Filters(
            case_id=case_id,
            message_id=message_id,
            participant=participant,
            state=state,
            jurisdiction=jurisdiction,
        )
        return (
            h for h in self.values() if f.matches(h) and (overdue is None or h.overdue == overdue)
        )


class InMemoryHandovers(HandoverStore):
    """Handovers in a dict."""

    def __init__(self) -> None:
        self._by_key: dict[str, Handover] = {}

    @classmethod
    def of(cls, handovers: Iterable[Handover]) -> InMemoryHandovers:
        store = cls()
        store.put(list(handovers))
        return store

    def __getitem__(self, key: str) -> Handover:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def put(self, handovers: Sequence[Handover]) -> None:
        for h in handovers:
            self._by_key[h.key] = h

    def waiting(self) -> Iterable[tuple[str, str, datetime]]:
        return [(k, h.sender, h.due_at) for k, h in self._by_key.items() if h.due_at is not None]

    def quiet(self, before: datetime, limit: int) -> list[str]:
        found = sorted(
            (h.updated_at, k)
            for k, h in self._by_key.items()
            if h.updated_at < before and h.due_at is None
        )
        return [k for _, k in found[:limit]]

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._by_key.pop(key, None)


class Ledger:
    """Every handover by key (in ``store``, default in memory), plus an index of
    running timers (in memory: only handovers still waiting for a receipt).

    :meth:`step` computes a batch without changing the ledger; :meth:`commit`
    applies it once it is durable (the service calls it after the Kafka
    transaction committed).
    """

    def __init__(self, policy: Policy, store: HandoverStore | None = None) -> None:
        self.policy = policy
        self.handovers: HandoverStore = store if store is not None else InMemoryHandovers()
        self._due: dict[str, datetime] = {}
        self._due_by_sender: dict[str, set[str]] = {}
        for key, sender, due_at in self.handovers.waiting():
            self._index(key, sender, due_at)

    def __len__(self) -> int:
        return len(self.handovers)

    def get(self, key: str) -> Handover | None:
        return self.handovers.get(key)

    def waiting_senders(self) -> set[str]:
        """Senders with a handover whose timer runs."""
        return set(self._due_by_sender)

    def waiting_keys(self) -> set[str]:
        """Keys of the handovers with a running timer (held in memory)."""
        return set(self._due)

    def _index(self, key: str, sender: str, due_at: datetime | None) -> None:
        if due_at is not None:
            self._due[key] = due_at
            self._due_by_sender.setdefault(sender, set()).add(key)
        else:
            self._due.pop(key, None)
            waiting = self._due_by_sender.get(sender)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._due_by_sender[sender]

    def commit(self, changed: Iterable[Handover], forgotten: Sequence[str] = ()) -> None:
        """Take handovers made durable (in one write to the store), and forget the
        ``forgotten`` ones (their tombstones are durable)."""
        batch = list(changed)
        self.handovers.put(batch)
        for h in batch:
            self._index(h.key, h.sender, h.due_at)
        if forgotten:
            self.handovers.delete(forgotten)

    def load(self, h: Handover) -> None:
        """Take a stored handover (rebuild), re-deriving its deadline from the policy."""
        self.load_all((h,))

    def load_all(self, handovers: Iterable[Handover]) -> None:
        """Take stored handovers (rebuild), re-deriving their deadlines from the policy."""
        self.commit([_with_deadline(h, self.policy) for h in handovers])

    def step(
        self,
        events: Iterable[StatusEvent],
        now: datetime,
        *,
        answerable: Callable[[str], bool] | None = None,
        forget_before: datetime | None = None,
        forget_limit: int = 1000,
    ) -> Step:
        """Fold ``events``, then tick every handover due at ``now``. ``answerable``
        (a sender id → whether it can still be answered, from the live directory)
        makes every waiting handover of a sender that cannot be closed
        (see :func:`tick`); it is asked once per sender with waiting handovers."""
        changed: dict[str, Handover] = {}
        dispositions: list[tuple[str, Disposition]] = []
        for event in events:
            key = event.key()
            current = changed[key] if key in changed else self.handovers.get(key)
            new, disposition = apply(current, event, self.policy)
            dispositions.append((key, disposition))
            if new is not current:
                changed[key] = new
        emitted: list[StatusEvent] = []
        due = {k: d for k, d in self._due.items() if d <= now}
        due |= {k: h.due_at for k, h in changed.items() if h.due_at is not None and h.due_at <= now}
        revoked: set[str] = set()
        if answerable is not None:
            waiting = {h.sender for h in changed.values() if h.due_at is not None}
            revoked = {x for x in waiting | self._due_by_sender.keys() if not answerable(x)}
            for sender in revoked:
                due |= dict.fromkeys(self._due_by_sender.get(sender, ()), now)
            due |= {
                k: now for k, h in changed.items() if h.sender in revoked and h.due_at is not None
            }
        for key in sorted(due):
            current = changed[key] if key in changed else self.handovers[key]
            new, events_out = tick(
                current, now, self.policy, sender_revoked=current.sender in revoked
            )
            if events_out:
                changed[key] = new
                emitted.extend(events_out)
        forgotten: list[str] = []
        if forget_before is not None:
            # Quiet past the retention, nothing pending — and untouched by this batch.
            forgotten = [
                k for k in self.handovers.quiet(forget_before, forget_limit) if k not in changed
            ]
        return Step(changed, emitted, dispositions, forgotten)
