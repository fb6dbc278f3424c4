"""Receiving: consume the own inbox -> open -> deliver -> record -> receipt -> commit.

Per inbox record, in this order (:meth:`Receiver.handle`):

1. ``keys.parse`` the envelope once (framing, header, digest). If its
   (unverified) message id is in the state store with the same envelope digest,
   it was delivered before (Kafka redelivered it after a crash or a rebalance):
   do not deliver again; send its receipt if that had not been sent.
2. ``keys.open`` the parsed envelope as this participant, at the record's Kafka
   timestamp (clamped, see ``opening_time``); ``open`` also checks the payload
   against the header. Any failure: quarantine (exact bytes + reason code in
   the state folder), log the reason, commit — never retried forever.
3. A verified message id already delivered (same id, other bytes): not again.
4. ``sink.deliver`` — the local system's durable handover. Retriable failure:
   keep the offset, back off (the retry policy), read the record again later.
   Refused: quarantine (``sink_refused``).
5. Record the id (and the header facts ``crb ack`` needs) in the state store.
6. For a referral: seal and produce the signed ``received`` receipt (SHA-256 of
   the exact envelope bytes; derived id) and wait for Kafka's ack; mark it sent.
   If the directory (followed live) says the sender can no longer be answered —
   revoked or suspended after it sent — no receipt can be sealed: record that
   (``sender_revoked``) instead and go on. The message itself was verified at the
   time the router forwarded it (``opening_time``), so a key valid then opens it.
7. Commit the record's offset (the loop in :meth:`Receiver.run`).

A crash anywhere before 7 makes Kafka deliver the record again; steps 1/3 make
that a no-op for the local system, and the derived receipt id makes a second
receipt a duplicate the router refuses. Receipts and case acks are delivered to
the sink too, but are not themselves answered.

Deconfliction notices (Kafka header ``crb-record: notice``) are not envelopes: the
tracker writes them, signed with its service key (``keys.NOTICE_CONTEXT``), when a
referral of this participant matches another's (``schemas.DeconflictionNotice``).
One is handed to the sink (``deliver_notice``) only if it parses, is addressed to
this participant and verifies; otherwise it is quarantined like a bad envelope.

Escalation notices (``crb-record: escalation``, ``keys.ESCALATION_CONTEXT``): the
tracker asks this adapter, as the *sender* of a referral whose receipt is overdue,
to re-seal it to the escalation recipient. The adapter opens the copy it kept
(sealed to its own key, ``Sender(pending=...)``), seals a new referral of the same
case with ``escalation_of`` naming the original and an id derived from it, sends
it through the router like any message, and records that it did. Receipts that
arrive for what it sent mark the kept copy answered; the last one deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol, TypeVar
from uuid import UUID

import structlog
from pydantic import ValidationError

from adapters._errors import DeliveryError, SendError
from adapters._model import ReceivedMessage, opening_time
from adapters._retry import RetryPolicy
from adapters._sender import Sealed, Sender
from adapters._settings import AdapterSettings
from adapters._sinks import Delivery, Sink
from adapters._state import Delivered, RefKind, StateStore
from adapters.kafka import (
    Consumer,
    Partition,
    Record,
    current_traceparent,
    following,
    signed_by,
    traceparent_of,
)
from keys import ESCALATION_CONTEXT, NOTICE_CONTEXT, EnvelopeError, Opened, answerable, parse
from keys import open as open_envelope
from schemas import (
    Accepted,
    CaseAck,
    Clock,
    DeconflictionNotice,
    EscalationNotice,
    MessageType,
    Priority,
    Reason,
    Referral,
    ServiceRole,
    TopicNames,
    utcnow,
)

__all__ = ["ConsumerFactory", "Outcome", "Receiver", "ReceiverStats"]

log = structlog.get_logger("crb.adapter")


class Outcome(enum.StrEnum):
    """What handling one inbox record did."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    NOTICE = "notice"
    """A deconfliction notice from the tracker, verified and handed to the sink."""


@dataclass
class ReceiverStats:
    delivered: int = 0
    duplicates: int = 0
    quarantined: int = 0
    notices: int = 0
    escalations: int = 0
    """Overdue referrals this adapter re-sealed to the escalation recipient."""
    redeliveries: int = 0
    """Unanswered referrals this adapter sent again under their id."""
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    recent: list[tuple[UUID, str, str]] = field(default_factory=list)
    """The last delivered messages (message id, type, sender), newest last; at most
    ``RECENT`` kept, for a one-off run to show what arrived."""


RECENT = 10_000


class ConsumerFactory(Protocol):
    """Builds inbox consumers (``adapters.kafka.KafkaClients`` or a stand-in)."""

    def consumer(self, *, group_id: str | None = None) -> Consumer: ...


Hook = Callable[[str, UUID], None]
"""Called at ``delivered``, ``recorded`` and ``receipt_sent`` (tests inject crashes)."""


@dataclass(frozen=True, slots=True)
class _Quarantine:
    record: Record
    claimed: UUID | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class _Notice:
    record: Record
    notice: DeconflictionNotice


@dataclass(frozen=True, slots=True)
class _Escalate:
    record: Record
    notice: EscalationNotice


_N = TypeVar("_N", DeconflictionNotice, EscalationNotice)

NOTICE_RECORD = b"notice"
"""Value of the ``crb-record`` header on a tracker's deconfliction notice."""
ESCALATION_RECORD = b"escalation"
"""Value of the ``crb-record`` header on a tracker's escalation notice."""


@dataclass(frozen=True, slots=True)
class _Deliver:
    record: Record
    opened: Opened
    received: ReceivedMessage


PURGE_EVERY_S = 3600.0
"""How often a running receiver purges what passed its ``delete_after`` date."""


def _delete_after(opened: Opened) -> date | None:
    """The date a referral's sender set for its deletion (other messages: none)."""
    message = opened.message
    return message.delete_after if isinstance(message, Referral) else None


def _time_of(record: Record) -> datetime | None:
    ts = record.timestamp_ms
    return datetime.fromtimestamp(ts / 1000, UTC) if ts else None


class Receiver:
    """The inbox loop of one participant (see the module docstring)."""

    def __init__(
        self,
        clients: ConsumerFactory,
        names: TopicNames,
        settings: AdapterSettings,
        sender: Sender,
        sink: Sink,
        store: StateStore,
        *,
        clock: Clock = utcnow,
        hook: Hook | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.sender = sender
        self.identity = sender.identity
        self.sink = sink
        self.store = store
        self.clock = clock
        self.hook = hook or (lambda _stage, _mid: None)
        self.topic = names.inbox(self.identity.participant)
        self.group_id = f"{settings.group_id_prefix}.{self.identity.participant}"
        self.retry = retry or RetryPolicy(initial_s=0.5, max_s=settings.retry_max_s)
        """The pause before a record the local system could not take is read again."""
        self.stats = ReceiverStats()

    # -- one record --------------------------------------------------------------------

    async def handle(self, record: Record) -> Outcome:
        """Steps 1-6 of the module docstring; raises ``DeliveryError`` / ``SendError``
        (retriable) when the record must be read again later. Logs carry the record's
        trace id, and the receipt continues its trace."""
        with following(traceparent_of(record.headers)):
            return await self._handle(record)

    async def _handle(self, record: Record) -> Outcome:
        now = self.clock()
        step = self._classify(record, now, {})
        if isinstance(step, _Notice):
            return await self._notice(step)
        if isinstance(step, _Escalate):
            return await self._escalate(step)
        if isinstance(step, Delivered):
            await self._ensure_receipt(step)
            return self._count(Outcome.DUPLICATE)
        if isinstance(step, _Quarantine):
            return self._quarantine(record, record.value or b"", step.claimed, step.reason)
        assert isinstance(step, _Deliver)
        opened, received = step.opened, step.received
        header = opened.header
        try:
            await self.sink.deliver(Delivery(received, now, opened.payload))
        except DeliveryError as exc:
            if exc.retriable:
                raise
            return self._quarantine(
                record, record.value or b"", header.message_id, Reason.SINK_REFUSED, exc.reason
            )
        self.hook("delivered", header.message_id)
        with self.store.transaction():  # the delivery and its reference: one barrier
            self.store.record_delivered(received, at=now, delete_after=_delete_after(opened))
            self._index_reference(opened.message, header.message_id, header.case_id)
        self._recorded(step)
        known = self.store.get(header.message_id)
        assert known is not None
        await self._ensure_receipt(known)
        return self._count(Outcome.DELIVERED)

    def _recorded(self, step: _Deliver) -> None:
        """After a delivery is recorded (with its reference, in the same state
        transaction): the hook, the log."""
        header = step.opened.header
        self.hook("recorded", header.message_id)
        if header.message_type is MessageType.RECEIPT and header.in_reply_to is not None:
            # A recipient answered what this adapter sent: its kept copy can go
            # once every recipient has.
            self.store.mark_answered(header.in_reply_to, header.sender)
        self.stats.recent.append((header.message_id, header.message_type.value, header.sender))
        del self.stats.recent[:-RECENT]
        with following(traceparent_of(step.record.headers)):
            log.info(
                "delivered",
                message_id=str(header.message_id),
                case_id=str(header.case_id),
                sender=header.sender,
                message_type=header.message_type.value,
            )

    def _index_reference(self, message: object, message_id: UUID, case_id: UUID) -> None:
        """Remember the case reference a delivered message carries, so that people
        can look the case up by it (``crb status REF --as P``)."""
        if isinstance(message, Referral):
            self.store.record_reference(
                message.reporter.reference, RefKind.SENDER, message_id, case_id
            )
        elif isinstance(message, CaseAck) and isinstance(message.decision, Accepted):
            self.store.record_reference(
                message.decision.receiver_reference, RefKind.RECEIVER, message_id, case_id
            )

    async def _ensure_receipt(self, known: Delivered) -> None:
        await self._ensure_receipts([known], {})

    def _quarantine(
        self,
        record: Record,
        value: bytes,
        claimed: UUID | None,
        reason: Reason,
        detail: str | None = None,
    ) -> Outcome:
        self.store.quarantine(
            value,
            reason=reason,
            detail=detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            digest=hashlib.sha256(value).hexdigest(),
            claimed_message_id=claimed,
            at=self.clock(),
        )
        self.stats.reasons[reason.value] = self.stats.reasons.get(reason.value, 0) + 1
        log.warning(
            "quarantined",
            reason=reason.value,
            detail=detail,
            source=record.where,
            claimed_message_id=str(claimed) if claimed else None,
        )
        return self._count(Outcome.QUARANTINED)

    def _count(self, outcome: Outcome) -> Outcome:
        if outcome is Outcome.DELIVERED:
            self.stats.delivered += 1
        elif outcome is Outcome.DUPLICATE:
            self.stats.duplicates += 1
        else:
            self.stats.quarantined += 1
        return outcome

    # -- a batch of records (the fast path of the Kafka loop) ----------------------------

    async def handle_batch(self, records: list[Record]) -> list[Outcome]:
        """The same steps as :meth:`handle` for a whole poll of one partition, with one
        durable barrier per step instead of one per record: the messages are opened,
        written to the sink together (:meth:`FolderSink.deliver_batch`), recorded in
        one state transaction, their receipts produced together and marked sent in
        one more; the caller commits the batch's offsets once.

        Crash-safety is the per-record path's: a crash anywhere before the offset
        commit makes Kafka deliver the batch again; what was recorded is then a
        duplicate (not delivered again, receipt sent if missing), what was written to
        the sink but not recorded is written again (the same file). Raises
        ``DeliveryError`` (the caller falls back to record by record) or a retriable
        ``SendError`` (read the batch again later)."""
        now = self.clock()
        outcomes: list[Outcome] = []
        deliver: list[_Deliver] = []
        answer: list[Delivered] = []
        in_batch: dict[UUID, str] = {}  # delivered in this batch: id -> envelope digest
        for record in records:
            with following(traceparent_of(record.headers)):
                step = self._classify(record, now, in_batch)
            if isinstance(step, Delivered):
                answer.append(step)
                outcomes.append(Outcome.DUPLICATE)
            elif isinstance(step, _Quarantine):
                self._quarantine(record, record.value or b"", step.claimed, step.reason)
                outcomes.append(Outcome.QUARANTINED)
            elif isinstance(step, _Notice):
                outcomes.append(await self._notice(step))
            elif isinstance(step, _Escalate):
                outcomes.append(await self._escalate(step))
            elif isinstance(step, _Deliver):
                deliver.append(step)
                in_batch[step.opened.header.message_id] = step.opened.digest
                outcomes.append(Outcome.DELIVERED)
            else:
                outcomes.append(step)  # a duplicate within this batch
        # The sink: everything at once where it can, else one by one in order.
        deliveries = [Delivery(d.received, now, d.opened.payload) for d in deliver]
        batch_write = getattr(self.sink, "deliver_batch", None)
        if deliveries:
            if batch_write is not None:
                await batch_write(deliveries)
            else:
                for one in deliveries:
                    await self.sink.deliver(one)
        for d in deliver:
            self.hook("delivered", d.received.message_id)
        with self.store.transaction():
            for d in deliver:
                self.store.record_delivered(
                    d.received, at=now, delete_after=_delete_after(d.opened)
                )
                header = d.opened.header
                self._index_reference(d.opened.message, header.message_id, header.case_id)
        for d in deliver:
            self._recorded(d)
            known = self.store.get(d.received.message_id)
            assert known is not None
            answer.append(known)
        traces = {d.received.message_id: traceparent_of(d.record.headers) for d in deliver}
        await self._ensure_receipts(answer, traces)
        for outcome in outcomes:
            if outcome not in (Outcome.QUARANTINED, Outcome.NOTICE):  # counted already
                self._count(outcome)
        return outcomes

    def _check_tracker_record(
        self, record: Record, model: type[_N], context: bytes
    ) -> _N | _Quarantine:
        """A record the tracker addressed here (a notice): it must be a valid
        ``model``, addressed to this participant, and signed by a tracker key of the
        directory valid at its time, over ``context``; else it is quarantined."""
        try:
            notice = model.model_validate_json(record.value or b"")
        except ValidationError:
            return _Quarantine(record, None, Reason.MALFORMED)
        if notice.to != self.identity.participant:
            return _Quarantine(record, notice.notice_id, Reason.NOT_A_RECIPIENT)
        directory = self.identity.directory
        if signed_by(record, directory, (ServiceRole.TRACKER,), context, at=notice.at):
            return notice
        return _Quarantine(record, notice.notice_id, Reason.BAD_SIGNATURE)

    async def _notice(self, step: _Notice) -> Outcome:
        """Hand a verified notice to the sink (``deliver_notice``; else only the log).
        Idempotent: the same notice id is the same file / idempotency key."""
        n = step.notice
        deliver = getattr(self.sink, "deliver_notice", None)
        if deliver is not None:
            await deliver(n)
        self.stats.notices += 1
        log.info(
            "deconfliction_notice",
            kind=n.kind.value,
            notice_id=str(n.notice_id),
            message_id=str(n.message_id),
            matched=str(n.matched.message_id),
            matched_sender=n.matched.sender,
            referred_at=n.matched.referred_at.isoformat(),
        )
        return Outcome.NOTICE

    async def _escalate(self, step: _Escalate) -> Outcome:
        """Re-seal the overdue referral to the escalation recipient and send it, once:
        the kept copy records the escalation (a second notice finds it done). Raises
        a retriable ``SendError`` when Kafka does not take it (read again later)."""
        n = step.notice
        pending = self.store.pending(n.message_id)
        fields = {"message_id": str(n.message_id), "escalate_to": n.escalate_to}
        if pending is None:
            log.warning("escalation_without_copy", **fields, why="answered, or never kept")
        elif pending.escalated_to is not None:
            log.info("escalation_already_sent", **fields, escalation_id=str(pending.escalation_id))
        else:
            try:
                sealed = self.sender.seal_escalation(pending, n.escalate_to)
            except SendError as exc:
                log.error("escalation_failed", **fields, error=str(exc))
                self.stats.notices += 1
                return Outcome.NOTICE
            await self.sender.send(sealed)
            self.store.mark_escalated(n.message_id, n.escalate_to, sealed.message_id)
            self.stats.escalations += 1
            log.info(
                "escalated",
                **fields,
                escalation_id=str(sealed.message_id),
                overdue=list(n.overdue),
            )
        self.stats.notices += 1
        return Outcome.NOTICE

    def _classify(
        self, record: Record, now: datetime, in_batch: dict[UUID, str]
    ) -> Delivered | Outcome | _Quarantine | _Deliver | _Notice | _Escalate:
        """What to do with one record (no side effects): answer a known duplicate,
        skip a duplicate within the batch, quarantine, deliver, or take a notice."""
        kind = record.header("crb-record")
        if kind == NOTICE_RECORD:
            found = self._check_tracker_record(record, DeconflictionNotice, NOTICE_CONTEXT)
            return found if isinstance(found, _Quarantine) else _Notice(record, found)
        if kind == ESCALATION_RECORD:
            checked = self._check_tracker_record(record, EscalationNotice, ESCALATION_CONTEXT)
            return checked if isinstance(checked, _Quarantine) else _Escalate(record, checked)
        value = record.value or b""
        try:
            parsed = parse(value)
        except EnvelopeError as exc:
            return _Quarantine(record, None, exc.reason)
        claimed = parsed.header.message_id
        if in_batch.get(claimed) == parsed.digest:
            return Outcome.DUPLICATE  # the same envelope twice in one poll
        known = self.store.get(claimed)
        if known is not None and known.message.envelope_sha256 == parsed.digest:
            return known
        try:
            opened = open_envelope(
                parsed,
                recipient=self.identity.participant,
                opening_keys=self.identity.opening_keys,
                directory=self.identity.directory,
                now=opening_time(now, _time_of(record), self.settings.max_inbox_lag),
                check_sender_status=False,  # the router admitted it; keys checked then
            )
        except EnvelopeError as exc:
            return _Quarantine(record, claimed, exc.reason)
        if opened.header.message_id in in_batch:
            return Outcome.DUPLICATE  # the same id, other bytes, both verified
        known = self.store.get(opened.header.message_id)
        if known is not None:
            return known
        return _Deliver(record, opened, ReceivedMessage.from_opened(opened))

    async def _ensure_receipts(
        self, known: list[Delivered], traces: dict[UUID, str | None]
    ) -> None:
        """:meth:`_ensure_receipt` for many: sealed, produced together, marked sent
        in one transaction. Raises the first retriable ``SendError`` (after marking
        the receipts that were acknowledged)."""
        now = self.clock()
        todo: list[tuple[ReceivedMessage, Sealed]] = []
        unanswerable: list[ReceivedMessage] = []
        for k in known:
            m = k.message
            if m.message_type is not MessageType.REFERRAL or k.receipt_done:
                continue
            if not answerable(self.identity.directory, m.sender, now):
                unanswerable.append(m)
                continue
            todo.append((m, self.sender.seal_receipt(m, received_at=k.delivered_at)))
        tasks = []
        for m, sealed in todo:
            # The receipt continues its referral's trace (the record being handled's,
            # for one record).
            with following(traces.get(m.message_id) or current_traceparent()):
                tasks.append(asyncio.ensure_future(self.sender.send(sealed)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        sent_at = self.clock()
        with self.store.transaction():
            for m in unanswerable:
                self.store.mark_receipt_unanswerable(m.message_id, Reason.SENDER_REVOKED, at=now)
            for (m, sealed), result in zip(todo, results, strict=True):
                if not isinstance(result, BaseException):
                    self.store.mark_receipt_sent(m.message_id, sealed.message_id, at=sent_at)
        for m in unanswerable:
            log.warning(
                "receipt_not_sent",
                reason=Reason.SENDER_REVOKED.value,
                message_id=str(m.message_id),
                sender=m.sender,
            )
        for (m, _), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            self.hook("receipt_sent", m.message_id)

    # -- retention -----------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Delete what delivered referrals said once their ``delete_after`` date has
        passed: the delivered file (a sink that can, e.g. the folder) and the case
        references indexed from them. The bare delivery record (ids and digest, no
        content) stays for ``record_retention`` (longer than Kafka keeps the inbox), so
        a redelivery is still a duplicate; then it goes too, as do kept copies of
        referrals unanswered past ``pending_retention``. Returns how many messages
        were purged.
        A case system behind the HTTP sink keeps its own copy under its own
        retention: the date travels in the delivered document."""
        now = self.clock()
        records = self.store.forget_records(now - self.settings.record_retention)
        copies = self.store.forget_pending(now - self.settings.pending_retention)
        keys = self.store.forget_idempotency(now - self.settings.record_retention)
        if records or copies or keys:
            log.info(
                "retention_forgotten",
                delivery_records=records,
                kept_copies=copies,
                idempotency_keys=keys,
            )
        expired = self.store.expired(now.date())
        if not expired:
            return 0
        forget = getattr(self.sink, "forget", None)
        if forget is not None:
            forget(expired)
        self.store.mark_purged(expired, at=now)
        log.info("retention_purged", messages=len(expired))
        return len(expired)

    # -- the Kafka loop ------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        *,
        drain: bool = False,
        ready: asyncio.Event | None = None,
        assign_timeout_s: float = 60.0,
    ) -> ReceiverStats:
        """Consume until ``stop`` is set, or (``drain``) until the inbox is read to its end.

        A record the local system cannot take yet (a retriable ``DeliveryError``), or
        whose receipt Kafka did not acknowledge (a retriable ``SendError``), is read
        again after the retry policy's pause — never skipped: handling is idempotent
        (state store, derived receipt ids). The first failure of a stall (and a change
        of its cause) is logged once as an error (``inbox_blocked``), each retry as a
        warning (``inbox_retry_later``), the end of the stall as ``inbox_resumed``.
        """
        self.purge_expired()
        next_purge = asyncio.get_running_loop().time() + PURGE_EVERY_S
        next_redelivery = asyncio.get_running_loop().time() + self.settings.redeliver_check_s
        consumer = self.clients.consumer(group_id=self.group_id)
        await consumer.start()
        consumer.subscribe(topics=[self.topic])
        loop = asyncio.get_running_loop()
        started = loop.time()
        failures = 0
        stalled: dict[Partition, tuple[str, int]] = {}  # the cause logged, retries
        try:
            while not stop.is_set():
                batch = await consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
                if loop.time() >= next_purge:
                    self.purge_expired()
                    next_purge = loop.time() + PURGE_EVERY_S
                if loop.time() >= next_redelivery:
                    await self.redeliver_due()
                    next_redelivery = loop.time() + self.settings.redeliver_check_s
                assigned = consumer.assignment()
                if assigned and ready is not None:
                    ready.set()
                if not batch and drain:
                    if assigned and await consumer.caught_up(assigned):
                        break
                    if not assigned and loop.time() - started > assign_timeout_s:
                        break
                for tp, records in batch.items():
                    failed = await self._handle_partition(consumer, tp, records)
                    if failed is None:
                        failures = 0
                        if tp in stalled:
                            retries = stalled.pop(tp)[1]
                            log.info("inbox_resumed", partition=str(tp), retries=retries)
                        continue
                    failures += 1
                    self.stats.retries += 1
                    wait = self.retry.wait_for(failed, failures)
                    cause, retries = stalled.get(tp, ("", 0))
                    if str(failed) != cause:
                        log.error(
                            "inbox_blocked",
                            partition=str(tp),
                            error=str(failed),
                            kept="offset not committed: the record is read again, with backoff",
                            retry_max_s=self.retry.max_s,
                        )
                    stalled[tp] = (str(failed), retries + 1)
                    log.warning(
                        "inbox_retry_later", partition=str(tp), error=str(failed), wait_s=wait
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            await consumer.stop()
        return self.stats

    async def redeliver_due(self) -> int:
        """Send again, under the same id, each referral this adapter sent that a
        recipient has not receipted within ``redeliver_after_<priority>`` (doubled
        per attempt, ``redeliver_max`` times at most); returns how many. A recipient
        that already has it ignores the copy (same id) and only answers if it had
        not; one that lost it gets it. Kafka trouble is logged and tried next time."""
        a = self.settings
        after = {
            Priority.URGENT: a.redeliver_after_urgent,
            Priority.HIGH: a.redeliver_after_high,
            Priority.ROUTINE: a.redeliver_after_routine,
        }
        now = self.clock()
        sent = 0
        for p in self.store.unanswered():
            if not p.redelivery_due(now, after[p.priority], a.redeliver_max):
                continue
            try:
                sealed = self.sender.seal_redelivery(p)
                await self.sender.send(sealed)
            except SendError as exc:
                log.warning("redelivery_failed", message_id=str(p.message_id), error=str(exc))
                continue
            self.store.mark_redelivered(p.message_id, at=now)
            self.stats.redeliveries += 1
            sent += 1
            log.info(
                "redelivered",
                message_id=str(p.message_id),
                attempt=p.attempts + 1,
                waiting_for=sorted(set(p.recipients) - set(p.answered)),
            )
        return sent

    async def _handle_partition(
        self, consumer: Consumer, tp: Partition, records: list[Record]
    ) -> DeliveryError | SendError | None:
        """Handle ``records`` as one batch and commit once; if the sink fails, go
        record by record (committing each) so that what can be delivered is, and
        what cannot is retried or quarantined on its own. On a retriable failure
        rewind to the failed record and return the error."""
        try:
            await self.handle_batch(records)
        except SendError as exc:
            consumer.seek(tp, records[0].offset)  # read again: all duplicates then
            return exc
        except DeliveryError:
            pass  # one by one below: each record on its own
        else:
            await consumer.commit({tp: records[-1].offset + 1})
            return None
        for r in records:
            try:
                await self.handle(r)
            except (DeliveryError, SendError) as exc:
                # handle() quarantines what the local system refuses for good, so a
                # DeliveryError here is retriable; a SendError is about the receipt.
                consumer.seek(tp, r.offset)
                return exc
            await consumer.commit({tp: r.offset + 1})
        return None
