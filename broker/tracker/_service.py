"""The tracker's Kafka shell: rebuild, poll, fold, tick, produce — one transaction.

Start-up: a transactional producer with one id (``<prefix>-tracker`` unless set) is
started first; its InitProducerId fences any previous instance and aborts that
instance's open transaction. Only then is the compacted ``<prefix>.tracker`` topic
read to its end (``read_committed``, no group): that is the state. With a local
snapshot (``tracker.snapshot``, :mod:`broker.tracker._store`) the topic is read
only from where the snapshot is complete — a restart does not grow with
history, and memory holds only the timers of handovers still waiting; without
one (or when the topic no longer has those positions) from the beginning. The
``<prefix>.status`` partitions are then assigned by hand and read from
the tracker group's committed offsets (earliest if none).

Per poll: :meth:`Ledger.step` folds the status events and ticks the timers
(``now`` from the injected clock) without changing the ledger; then, in one Kafka
transaction, every changed handover's JSON goes to the tracker topic (key
``<message_id>/<recipient>``), every timer event to the status topic (same key as
the router's events, header ``crb-source: tracker``) and the consumed status
offsets to the group. Only after the commit does the ledger take the changes. So
the tracker topic and the committed offsets always agree, and a restarted tracker
rebuilds exactly the state the previous one had committed. On a failed
transaction: abort, new producer, rewind to the committed offsets, fold again.

The tracker believes only signed records: a status event counts if a router or
tracker key of the directory signed it, a state record if a tracker key did (see
``adapters.kafka._signed``); anything else is logged (``status_event_unauthenticated``,
``state_record_unauthenticated``), counted and ignored. It signs what it writes.
A waiting handover whose sender the (live) directory says can no longer be
answered (revoked, suspended) is closed with reason ``sender_revoked``.

Deconfliction (:mod:`._deconflict`): a ``routed`` event carries the referral's
keyed tags from its signed header; when a newly routed referral shares a tag with
an earlier one of another participant and case, the same transaction writes a
signed :class:`schemas.DeconflictionNotice` (context ``keys.NOTICE_CONTEXT``,
header ``crb-record: notice``) into the inbox of each of the two senders. The tags
are indexed in the store (rebuilt from the handovers, which carry them).

Escalation that delivers (:mod:`._escalation`): when the timers escalate a
handover, the same transaction writes a signed :class:`schemas.EscalationNotice`
(context ``keys.ESCALATION_CONTEXT``, header ``crb-record: escalation``) into the
*sender's* inbox; its adapter re-seals the referral to the escalation recipient
(``escalation_of``), which the tracker then follows like any referral.

The tracker reads its own timer events back from the status topic; they are
already in the handover's history, so they fold as duplicates (no write).

Dead letters: the tracker follows ``<prefix>.dlq`` into its store (one row per
record, header fields only; :mod:`._deadletters`) and the ``<prefix>.actions``
topic for the redrives it recorded. :meth:`Tracker.redrive` puts a dead letter's
original bytes back into the outbox they came from and records who asked on the
actions topic, signed, in one transaction of its own (transactional id
``<tracker id>.redrive``); what can never succeed is refused first.

One instance at a time: a second one fences the first, whose next transaction
fails with ``adapters.kafka.Fenced`` — it then stops (it owned everything, so it
stops owning everything) and never fences back. A missing topic is
``adapters.kafka.TopicMissing``; a retriable failure is aborted, backed off by the
retry policy and folded again from the committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

import structlog
from pydantic import ValidationError

from adapters import DirectoryFollower, RetryPolicy
from adapters.kafka import (
    Consumer,
    Fenced,
    KafkaClients,
    OutRecord,
    Partition,
    Record,
    TopicReader,
    TransactionalProducer,
    TransportError,
    read_topic,
    sign,
    signed_by,
    trace_id,
    traceparent_of,
)
from broker.acls import redrive_transactional_id
from broker.settings import Settings, TrackerSettings
from broker.tracker._deadletters import (
    DeadLetter,
    RedriveError,
    dead_letter_of,
    redrive_refusal,
)
from broker.tracker._deconflict import find_notices
from broker.tracker._escalation import escalation_notices
from broker.tracker._health import HealthReport, TrackerHealth
from broker.tracker._machine import Handover, Ledger, Policy, Sla, Step
from broker.tracker._store import SqliteHandovers
from broker.tracker._watch import Watch
from keys import (
    ACTION_CONTEXT,
    ESCALATION_CONTEXT,
    NOTICE_CONTEXT,
    STATUS_CONTEXT,
    TRACKER_STATE_CONTEXT,
    LiveDirectory,
    RecordSigner,
    answerable,
)
from schemas import (
    Clock,
    DeconflictionNotice,
    Directory,
    EscalationNotice,
    Priority,
    Role,
    RoutingRules,
    ServiceRole,
    StatusEvent,
    TopicNames,
    utcnow,
)

__all__ = ["Tracker", "policy_from", "read_state"]

_N = TypeVar("_N", DeconflictionNotice, EscalationNotice)


def _notice_record(
    names: TopicNames, n: DeconflictionNotice | EscalationNotice, signer: RecordSigner
) -> OutRecord:
    """A notice as a signed record in its addressee's inbox (key: the case id)."""
    if isinstance(n, EscalationNotice):
        headers: tuple[tuple[str, bytes], ...] = (("crb-record", b"escalation"),)
        context = ESCALATION_CONTEXT
    else:
        headers = (("crb-record", b"notice"), ("crb-notice", n.kind.value.encode()))
        context = NOTICE_CONTEXT
    out = OutRecord(
        names.inbox(n.to), str(n.case_id).encode(), n.model_dump_json().encode(), headers
    )
    return sign(out, signer, context)


log = structlog.get_logger("crb.tracker")


Escalation = Directory | RoutingRules | str | None


def policy_from(settings: TrackerSettings, escalation: Escalation) -> Policy:
    """The pure core's policy from the settings and the routing rules (pure)."""
    if isinstance(escalation, Directory):
        escalation = escalation.rules
    if isinstance(escalation, RoutingRules):
        escalation = escalation.escalation_recipient
    sla = Sla(
        receipt={
            Priority.URGENT: settings.receipt_sla_urgent,
            Priority.HIGH: settings.receipt_sla_high,
            Priority.ROUTINE: settings.receipt_sla_routine,
        },
        escalate_after=settings.escalate_after,
        fail_after=settings.fail_after,
    )
    return Policy(sla=sla, escalation_recipient=escalation, max_history=settings.max_history)


def _state_record(r: Record, directory: Directory) -> Handover | None:
    """The handover a tracker-topic record holds, if the tracker signed it; anything
    else is reported and ``None``."""
    if r.key is None or r.value is None:
        return None  # the tracker never deletes a handover; a tombstone is not its own
    try:
        h = Handover.model_validate_json(r.value)
    except ValidationError:
        log.warning("bad_state_record", source=r.where)
        return None
    if h.key.encode() != r.key or not signed_by(
        r, directory, _TRACKER, TRACKER_STATE_CONTEXT, at=h.updated_at
    ):
        log.error("state_record_unauthenticated", source=r.where)
        return None
    return h


async def read_state(
    clients: KafkaClients, topic: str, directory: Directory
) -> dict[str, Handover]:
    """The committed handovers on a tracker topic, by key (a tombstone deletes: the
    tracker forgot that handover after its retention). Only records the tracker
    signed count; anything else is reported and ignored."""
    state: dict[str, Handover] = {}

    def take(r: Record) -> None:
        if r.value is None and r.key is not None:
            state.pop(r.key.decode("utf-8", "replace"), None)
            return
        h = _state_record(r, directory)
        if h is not None:
            state[h.key] = h

    await read_topic(clients, topic, take)
    return state


_TRACKER = (ServiceRole.TRACKER,)
_STATUS_WRITERS = (ServiceRole.ROUTER, ServiceRole.TRACKER)


DEAD_LETTER_POLL_S = 2.0
"""How often the tracker looks for new dead letters."""


class Tracker:
    """Runs until ``stop`` is set. ``ledger`` holds the committed state (read it for
    views); ``ready`` is set once the state is rebuilt and the status topic assigned."""

    def __init__(
        self,
        settings: Settings,
        escalation: Escalation,
        *,
        directory: Directory | LiveDirectory,
        signer: RecordSigner,
        clients: KafkaClients | None = None,
        clock: Clock = utcnow,
        follower: DirectoryFollower | None = None,
    ) -> None:
        self.settings = settings
        self.follower = follower
        """Reads the directory topic before a handover is closed because its sender
        looks unanswerable: a reinstatement published a moment ago is not missed."""
        self._refreshed_at = 0.0
        self.live = directory if isinstance(directory, LiveDirectory) else LiveDirectory(directory)
        """Who signs status events, and who can still be answered (``Ledger.step``)."""
        if signer.role is not ServiceRole.TRACKER:
            raise ValueError(f"the tracker signs with a tracker key, not a {signer.role} key")
        self.signer = signer
        self.unauthenticated = 0
        """Status events no router or tracker key signed (ignored, logged)."""
        self.clients = clients or KafkaClients(settings.kafka)
        self.names = TopicNames(settings.topics.prefix)
        self.policy = policy_from(settings.tracker, escalation)
        view = SqliteHandovers.open(None, self.names.tracker, repr(self.policy))
        assert view is not None  # an in-memory database is never locked
        self._view: SqliteHandovers = view
        self.ledger = Ledger(self.policy, view)
        self.clock = clock
        self.ready = asyncio.Event()
        self.health = TrackerHealth()
        self.watch = Watch(self)
        """The health strip and the alerts (see :mod:`._watch`)."""
        """What ``/healthz`` and the metrics report (see :mod:`._health`)."""
        self.transactions = 0
        self.notices = 0
        """Deconfliction notices written (into participants' inboxes)."""
        self.escalation_notices = 0
        """Escalation notices written (into senders' inboxes)."""
        self.retry = RetryPolicy(initial_s=0.5, max_s=5.0)
        self._producer: TransactionalProducer | None = None
        self._store: SqliteHandovers | None = None
        self.restored: dict[str, float | int | bool] = {}
        """How the last start went: from a snapshot or not, records read, seconds."""
        self._failures = 0
        self._redrive_lock = asyncio.Lock()
        self._next_retention = 0.0
        self.redrive_markers: dict[Partition, int] = {}
        """Where a redrive's commit marker sits in an outbox (not a record: the
        router's lag there is 0 when its group stands at it)."""
        t = settings.tracker
        self.transactional_id = t.transactional_id or f"{settings.topics.prefix}-tracker"

    def snapshot(self) -> list[Handover]:
        """The committed handovers (a copy: safe to read while the tracker runs)."""
        return list(self.ledger.handovers.matching())

    def health_report(self) -> HealthReport:
        """What ``/healthz`` says now (see :mod:`._health`)."""
        return self.health.report(time.monotonic(), self.settings.tracker.health_grace_s)

    def handovers(self) -> SqliteHandovers:
        """The committed handovers, to query without copying them all (the API and
        the console read this; it is the snapshot the tracker writes after commits)."""
        return self._view

    async def _new_producer(self) -> TransactionalProducer:
        producer = self.clients.transactional_producer(
            self.transactional_id,
            transaction_timeout_ms=self.settings.tracker.transaction_timeout_ms,
        )
        await producer.start()  # InitProducerId: fences the previous instance
        return producer

    def _open_store(self) -> SqliteHandovers:
        path = self.settings.tracker.snapshot
        policy = repr(self.policy)
        store = SqliteHandovers.open(path, self.names.tracker, policy)
        if store is None:
            log.warning("tracker_snapshot_in_use", path=str(path))
            store = SqliteHandovers.open(None, self.names.tracker, policy)
            assert store is not None
        return store

    async def rebuild(self) -> int:
        """Replace the ledger with the committed state of the tracker topic: the
        snapshot's handovers plus the records after its positions (all of them
        without a usable snapshot). Returns how many records were read."""
        started = asyncio.get_running_loop().time()
        if self._store is None:
            self._store = self._open_store()
        store = self._store
        directory = self.live.current
        # Settled: to the high watermark, so that no transaction still being
        # resolved (after a crash, a broker failover) hides committed state.
        reader = TopicReader(self.clients, self.names.tracker, settle=True)
        try:
            positions = store.positions()
            resumed = await reader.start(from_positions=positions)
            if not resumed:
                if positions is not None:
                    log.warning("tracker_snapshot_discarded", path=str(store.path))
                store.reset(self.names.tracker)
            self.ledger = Ledger(self.policy, store)
            self._view = store
            pending: list[Handover] = []

            def take(r: Record) -> None:
                if r.value is None and r.key is not None:
                    # A tombstone the tracker wrote (only it may write the topic):
                    # the handover was forgotten after its retention.
                    self.ledger.load_all(pending)
                    pending.clear()
                    self.ledger.commit((), [r.key.decode("utf-8", "replace")])
                    return
                h = _state_record(r, directory)
                if h is not None:
                    pending.append(h)
                if len(pending) >= 5_000:
                    self.ledger.load_all(pending)
                    pending.clear()

            read = await reader.read_to_end(take)
            self.ledger.load_all(pending)
            if store.policy_changed():
                self.ledger.load_all([store[key] for key, _, _ in store.waiting()])
            store.save_positions(await reader.positions())
        finally:
            await reader.stop()
        self.restored = {
            "from_snapshot": resumed,
            "records_read": read,
            "waiting": len(self.ledger.waiting_keys()),
            "seconds": round(asyncio.get_running_loop().time() - started, 3),
        }
        log.info("tracker_rebuilt", topic=self.names.tracker, **self.restored)
        return read

    async def run(self, stop: asyncio.Event) -> None:
        """Raises ``Fenced`` when a newer instance took over (this one stops), and
        ``TopicMissing`` when the topics were not created."""
        t = self.settings.tracker
        self._producer = await self._new_producer()
        consumer: Consumer | None = None
        probe: asyncio.Task[None] | None = None
        dead: asyncio.Task[None] | None = None
        watch: asyncio.Task[None] | None = None
        try:
            await self.rebuild()
            partitions = await self.clients.partitions(self.names.status)
            consumer = self.clients.consumer(group_id=t.group_id, max_poll_records=t.max_batch)
            await consumer.start()
            tps = [Partition(self.names.status, p) for p in partitions]
            consumer.assign(tps)
            await consumer.rewind(tps)
            self.ready.set()
            self.health.ready = True
            probe = asyncio.create_task(self._probe(consumer, tps, stop), name="tracker-probe")
            dead = asyncio.create_task(self._follow_dead_letters(stop), name="dead-letters")
            watch = asyncio.create_task(self.watch.run(stop), name="tracker-watch")
            log.info("tracker_started", group=t.group_id, transactional_id=self.transactional_id)
            self._next_retention = time.monotonic()
            while not stop.is_set():
                await self._cycle(consumer, tps)
        finally:
            log.info("tracker_stopping")
            self.health.ready = False
            helpers = [task for task in (probe, dead, watch) if task is not None]
            if helpers and stop.is_set():
                # They watch ``stop``: let each finish what it is doing (cancelling a
                # Kafka client half-way through its bootstrap leaks a connection).
                await asyncio.wait(helpers, timeout=15)
            for task in helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if consumer is not None:
                with contextlib.suppress(TransportError):
                    await consumer.stop()
            await self._drop_producer()
            if self._store is not None:
                # Lets another tracker process take the file; what this one holds
                # stays readable (``snapshot()`` after a stop).
                self._store.release()
                self._store = None
            log.info("tracker_stopped")

    async def _cycle(self, consumer: Consumer, tps: list[Partition]) -> None:
        """One poll: fold, tick, forget what is quiet past the retention (when due),
        commit; on a failed commit, rewind to the committed offsets."""
        t = self.settings.tracker
        batch = await consumer.poll(*tps, timeout_ms=t.poll_timeout_ms)
        events, offsets = self._parse(batch)
        now = self.clock()
        await self._refresh_before_closing(events, now)
        forget = None
        if time.monotonic() >= self._next_retention:
            forget = now - t.handover_retention
            self._next_retention = time.monotonic() + t.retention_check_s
        step = self.ledger.step(events, now, answerable=self._answerable(now), forget_before=forget)
        notices: list[DeconflictionNotice | EscalationNotice] = [*self._notices(step, now)]
        notices += self._addressable(escalation_notices(step.emitted, now))
        busy = step.changed or step.emitted or step.forgotten or offsets
        if busy and not await self._commit(step, offsets, notices):
            await consumer.rewind(tps)

    def _notices(self, step: Step, now: datetime) -> list[DeconflictionNotice]:
        """Deconfliction notices for the referrals this batch routes, to participants
        the directory still lists as active (an inbox that may be gone is skipped)."""
        if not any(h.deconfliction is not None for h in step.changed.values()):
            return []
        # An industry reporter learns nothing of other participants' referrals.
        directory = self.live.current
        industry = {
            p.participant_id
            for p in directory.participants
            if Role.ELECTRONIC_SERVICE_PROVIDER in p.roles
        }
        found = find_notices(step.changed.values(), self.ledger.handovers, now, silent=industry)
        return self._addressable(found)

    def _addressable(self, found: Sequence[_N]) -> list[_N]:
        """The notices whose addressee the directory lists as active (an inbox that
        may be gone is skipped, and logged)."""
        directory = self.live.current
        kept = []
        for n in found:
            p = directory.participant(n.to)
            if p is not None and p.active:
                kept.append(n)
            else:
                log.warning("notice_skipped", to=n.to, notice_id=str(n.notice_id))
        return kept

    async def _probe(self, consumer: Consumer, tps: list[Partition], stop: asyncio.Event) -> None:
        """Every ``health_probe_s``: ask Kafka for the status topic's end (bounded by
        a timeout) and record the answer and the lag in :attr:`health`."""
        t = self.settings.tracker
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                async with asyncio.timeout(max(1.0, t.health_probe_s)):
                    ends = await consumer.end_offsets(tps)
                    lag = 0
                    for p in tps:
                        lag += max(0, ends[p] - await consumer.position(p))
                self.health.probed(loop.time(), lag)
            except (TransportError, TimeoutError) as exc:
                self.health.failed(str(exc) or "no answer within the probe's timeout")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), t.health_probe_s)

    # -- dead letters --------------------------------------------------------------------
    async def _follow_dead_letters(self, stop: asyncio.Event) -> None:
        """Keep the store's dead letters in step with the dead-letter topic, and their
        redrive marks with the actions topic (signed by a tracker key only)."""
        store = self._view
        letters = TopicReader(self.clients, self.names.dlq)
        actions = TopicReader(self.clients, self.names.actions)
        try:
            if not await letters.start(from_positions=store.dead_positions()):
                store.reset_dead_letters()
            await actions.start()
            while not stop.is_set():
                try:
                    found: list[Record] = []
                    await letters.read_to_end(found.append)
                    store.put_dead_letters(
                        [dead_letter_of(r, self.names) for r in found], await letters.positions()
                    )
                    await actions.read_to_end(self._take_action)
                except TransportError as exc:
                    log.warning("dead_letters_unreadable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), DEAD_LETTER_POLL_S)
        except TransportError as exc:  # e.g. the topics are missing: the rest goes on
            log.error("dead_letters_not_followed", error=str(exc))
        finally:
            await letters.stop()
            await actions.stop()

    def _take_action(self, r: Record) -> None:
        """A redrive recorded on the actions topic, if a tracker key signed it."""
        try:
            action = json.loads(r.value or b"")
            at = datetime.fromisoformat(action["at"])
            partition, offset = int(action["partition"]), int(action["offset"])
        except (ValueError, KeyError, TypeError):
            log.warning("bad_action_record", source=r.where)
            return
        if not signed_by(r, self.live.current, _TRACKER, ACTION_CONTEXT, at=at):
            log.error("action_record_unauthenticated", source=r.where)
            return
        dead = self._view.dead_letter(partition, offset)
        if dead is not None and dead.redriven_at is None:
            self._view.mark_redriven(
                replace(
                    dead,
                    redriven_at=at,
                    redriven_by=str(action.get("by")),
                    redrive_offset=action.get("outbox_offset"),
                )
            )

    async def redrive(self, partition: int, offset: int, *, by: str) -> DeadLetter:
        """Put the dead letter at ``partition``/``offset`` back into its outbox, on
        the word of token ``by``; returns it marked redriven. Raises
        :class:`RedriveError`."""
        async with self._redrive_lock:
            dead = self._view.dead_letter(partition, offset)
            if dead is None:
                raise RedriveError(404, f"no dead letter at {partition}/{offset}")
            refusal = redrive_refusal(dead)
            if refusal is not None:
                raise RedriveError(409, refusal)
            assert dead.source_topic is not None
            try:
                record = await self._fetch_dead_letter(partition, offset)
                if hashlib.sha256(record.value or b"").hexdigest() != dead.sha256:
                    raise RedriveError(409, "the dead-letter record is not what was listed")
                now = self.clock()
                action = {
                    "action": "redrive", "topic": self.names.dlq, "partition": partition,
                    "offset": offset, "reason": dead.reason, "sha256": dead.sha256,
                    "outbox": dead.source_topic, "by": by, "at": now.isoformat(),
                }  # fmt: skip
                back = OutRecord(
                    dead.source_topic,
                    record.key,
                    record.value,
                    (
                        ("crb-redrive-of", f"{self.names.dlq}/{partition}/{offset}".encode()),
                        ("crb-redriven-by", by.encode()),
                    ),
                )
                noted = sign(
                    OutRecord(
                        self.names.actions,
                        f"{partition}/{offset}".encode(),
                        json.dumps(action, sort_keys=True).encode(),
                        (("crb-action", b"redrive"),),
                    ),
                    self.signer,
                    ACTION_CONTEXT,
                )
                producer = self.clients.transactional_producer(
                    redrive_transactional_id(self.settings)
                )
                await producer.start()
                try:
                    written = await producer.commit([back, noted])
                finally:
                    with contextlib.suppress(TransportError):
                        await producer.stop()
            except TransportError as exc:
                raise RedriveError(503, f"Kafka: {exc}") from exc
            landed = next((o - 1 for p, o in written.items() if p.topic == dead.source_topic), None)
            for p, o in written.items():
                if p.topic == dead.source_topic:
                    self.redrive_markers[p] = o
            done = replace(dead, redriven_at=now, redriven_by=by, redrive_offset=landed)
            self._view.mark_redriven(done)
            log.info(
                "dead_letter_redriven", dead_letter=f"{partition}/{offset}", reason=dead.reason,
                outbox=dead.source_topic, outbox_offset=landed, by=by,
                message_id=dead.message_id,
            )  # fmt: skip
            return done

    async def _fetch_dead_letter(self, partition: int, offset: int) -> Record:
        consumer = self.clients.consumer(group_id=None)
        await consumer.start()
        try:
            tp = Partition(self.names.dlq, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            async with asyncio.timeout(15):
                while True:
                    batch = await consumer.poll(tp, timeout_ms=500)
                    for r in batch.get(tp, []):
                        if r.offset == offset:
                            return r
                        if r.offset > offset:
                            raise RedriveError(409, "the dead-letter record is gone")
        except TimeoutError as exc:
            raise RedriveError(503, "the dead-letter record could not be read") from exc
        finally:
            with contextlib.suppress(TransportError):
                await consumer.stop()

    async def _refresh_before_closing(self, events: list[StatusEvent], now: datetime) -> None:
        """If a sender with waiting handovers looks unanswerable (revoked, suspended),
        read the directory topic first (at most once a second): the router may have
        forwarded on a newer version this tracker has not taken yet, and closing a
        handover is final."""
        if self.follower is None or time.monotonic() - self._refreshed_at < 1.0:
            return
        current = self.live.current
        senders = {e.sender for e in events} | self.ledger.waiting_senders()
        if all(answerable(current, s, now) for s in senders):
            return
        self._refreshed_at = time.monotonic()
        try:
            await self.follower.refresh()
        except TransportError as exc:
            log.warning("directory_refresh_failed", error=str(exc))

    def _answerable(self, now: datetime) -> Callable[[str], bool]:
        current = self.live.current
        return lambda sender: answerable(current, sender, now)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(TransportError):
                await producer.stop()

    async def _commit(
        self,
        step: Step,
        offsets: dict[Partition, int],
        notices: Sequence[DeconflictionNotice | EscalationNotice] = (),
    ) -> bool:
        """Write ``step`` and the offsets in one transaction, then take it into the
        ledger; ``False`` (after the retry policy's pause) when it must be folded
        again from the committed offsets. ``Fenced`` is raised: this instance stops."""
        try:
            if self._producer is None:
                self._producer = await self._new_producer()
            written = await self._transaction(self._producer, step, offsets, notices)
        except Fenced:
            log.error("tracker_fenced", transactional_id=self.transactional_id)
            raise
        except TransportError as exc:
            self._failures += 1
            (log.warning if exc.retriable else log.error)(
                "transaction_failed", error=str(exc), retriable=exc.retriable
            )
            await self._drop_producer()
            await asyncio.sleep(self.retry.delay(self._failures))
            return False
        self._failures = 0
        self.health.kafka_answered(asyncio.get_running_loop().time())
        self.ledger.commit(step.changed.values(), step.forgotten)
        if step.forgotten:
            log.info("handovers_forgotten", count=len(step.forgotten))
        if self._store is not None:
            topic = self.names.tracker
            self._store.save_positions(
                {p.partition: o for p, o in written.items() if p.topic == topic}
            )
        self.transactions += 1
        for n in notices:
            if isinstance(n, EscalationNotice):
                self.escalation_notices += 1
                log.info(
                    "escalation_notice",
                    to=n.to,
                    message_id=str(n.message_id),
                    escalate_to=n.escalate_to,
                    overdue=list(n.overdue),
                )
                continue
            self.notices += 1
            log.info(
                "deconfliction_notice",
                kind=n.kind.value,
                to=n.to,
                message_id=str(n.message_id),
                matched=str(n.matched.message_id),
                matched_sender=n.matched.sender,
            )
        for e in step.emitted:
            log.info(
                "timer_event",
                state=e.state.value,
                message_id=str(e.message_id),
                case_id=str(e.case_id),
                route=f"{e.sender}->{e.recipient}",
                escalated_to=e.escalated_to,
            )
        return True

    def _parse(
        self, batch: Mapping[Partition, list[Record]]
    ) -> tuple[list[StatusEvent], dict[Partition, int]]:
        """The status events of ``batch`` the router or the tracker signed; anything
        else is logged and skipped (its offset still commits: it is read once)."""
        events: list[StatusEvent] = []
        offsets: dict[Partition, int] = {}
        directory = self.live.current
        for tp, records in batch.items():
            for r in records:
                offsets[tp] = r.offset + 1
                if r.value is None:
                    continue  # a tombstone on the status topic: nothing to fold
                try:
                    event = StatusEvent.model_validate_json(r.value)
                except ValidationError:
                    log.warning("bad_status_event", source=r.where)
                    continue
                if not signed_by(r, directory, _STATUS_WRITERS, STATUS_CONTEXT, at=event.at):
                    self.unauthenticated += 1
                    log.error(
                        "status_event_unauthenticated",
                        source=r.where,
                        claimed_state=event.state.value,
                        message_id=str(event.message_id),
                    )
                    continue
                log.debug(
                    "status_event",
                    message_id=str(event.message_id),
                    recipient=event.recipient,
                    state=event.state.value,
                    source=r.where,
                    trace_id=trace_id(traceparent_of(r.headers)),
                )
                events.append(event)
        return events, offsets

    async def _transaction(
        self,
        producer: TransactionalProducer,
        step: Step,
        offsets: dict[Partition, int],
        notices: Sequence[DeconflictionNotice | EscalationNotice] = (),
    ) -> dict[Partition, int]:
        records = [
            sign(
                OutRecord(
                    self.names.tracker,
                    key.encode(),
                    h.model_dump_json().encode(),
                    (("crb-state", h.state.value.encode()),),
                ),
                self.signer,
                TRACKER_STATE_CONTEXT,
            )
            for key, h in step.changed.items()
        ]
        records += [
            sign(
                OutRecord(
                    self.names.status,
                    e.key().encode(),
                    e.model_dump_json().encode(),
                    (("crb-state", e.state.value.encode()), ("crb-source", b"tracker")),
                ),
                self.signer,
                STATUS_CONTEXT,
            )
            for e in step.emitted
        ]
        records += [_notice_record(self.names, n, self.signer) for n in notices]
        # Forgotten handovers: tombstones on both compacted topics (compaction then
        # drops every earlier record of them).
        records += [
            OutRecord(topic, key.encode(), None, (("crb-forgotten", b"retention"),))
            for key in step.forgotten
            for topic in (self.names.tracker, self.names.status)
        ]
        return await producer.commit(
            records, offsets=offsets, group_id=self.settings.tracker.group_id
        )
