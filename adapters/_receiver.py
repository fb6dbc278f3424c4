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
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import structlog

from adapters._errors import DeliveryError, SendError
from adapters._model import ReceivedMessage, opening_time
from adapters._retry import RetryPolicy
from adapters._sender import Sender
from adapters._settings import AdapterSettings
from adapters._sinks import Delivery, Sink
from adapters._state import Delivered, RefKind, StateStore
from adapters.kafka import Consumer, Partition, Record, following, traceparent_of
from keys import EnvelopeError, Parsed, answerable, parse
from keys import open as open_envelope
from schemas import Accepted, CaseAck, Clock, MessageType, Reason, Referral, TopicNames, utcnow

__all__ = ["ConsumerFactory", "Outcome", "Receiver", "ReceiverStats"]

log = structlog.get_logger("crb.adapter")


class Outcome(enum.StrEnum):
    """What handling one inbox record did."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass
class ReceiverStats:
    delivered: int = 0
    duplicates: int = 0
    quarantined: int = 0
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
        self.retry = RetryPolicy(initial_s=0.5, max_s=settings.retry_max_s)
        self.stats = ReceiverStats()

    # -- one record --------------------------------------------------------------------

    async def handle(self, record: Record) -> Outcome:
        """Steps 1-6 of the module docstring; raises ``DeliveryError`` / ``SendError``
        (retriable) when the record must be read again later. Logs carry the record's
        trace id, and the receipt continues its trace."""
        with following(traceparent_of(record.headers)):
            return await self._handle(record)

    async def _handle(self, record: Record) -> Outcome:
        value = record.value or b""
        try:
            parsed: Parsed | None = parse(value)
        except EnvelopeError as exc:
            parsed, refused = None, exc.reason
        claimed = parsed.header.message_id if parsed is not None else None
        if parsed is not None:
            known = self.store.get(parsed.header.message_id)
            if known is not None and known.message.envelope_sha256 == parsed.digest:
                await self._ensure_receipt(known)
                return self._count(Outcome.DUPLICATE)

        now = self.clock()
        try:
            if parsed is None:
                raise EnvelopeError(refused)
            opened = open_envelope(
                parsed,
                recipient=self.identity.participant,
                opening_keys=self.identity.opening_keys,
                directory=self.identity.directory,
                now=opening_time(now, _time_of(record), self.settings.max_inbox_lag),
                check_sender_status=False,  # the router admitted it; keys checked then
            )
        except EnvelopeError as exc:
            return self._quarantine(record, value, claimed, exc.reason)

        header = opened.header
        known = self.store.get(header.message_id)
        if known is not None:
            await self._ensure_receipt(known)
            return self._count(Outcome.DUPLICATE)

        received = ReceivedMessage.from_opened(opened)
        try:
            await self.sink.deliver(Delivery(received, now, opened.payload))
        except DeliveryError as exc:
            if exc.retriable:
                raise
            return self._quarantine(record, value, claimed, Reason.SINK_REFUSED, exc.reason)
        self.hook("delivered", header.message_id)
        self.store.record_delivered(received, at=now)
        self._index_reference(opened.message, header.message_id, header.case_id)
        self.stats.recent.append((header.message_id, header.message_type.value, header.sender))
        del self.stats.recent[:-RECENT]
        self.hook("recorded", header.message_id)
        known = self.store.get(header.message_id)
        assert known is not None
        await self._ensure_receipt(known)
        log.info(
            "delivered",
            message_id=str(header.message_id),
            case_id=str(header.case_id),
            sender=header.sender,
            message_type=header.message_type.value,
        )
        return self._count(Outcome.DELIVERED)

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
        m = known.message
        if m.message_type is not MessageType.REFERRAL or known.receipt_done:
            return
        now = self.clock()
        if not answerable(self.identity.directory, m.sender, now):
            # Revoked or suspended since it sent this: no key to seal the receipt to,
            # and the router would refuse it. Delivered is delivered: record why no
            # receipt follows and move on (the tracker closes the handover with the
            # same reason) instead of blocking the inbox partition.
            self.store.mark_receipt_unanswerable(m.message_id, Reason.SENDER_REVOKED, at=now)
            log.warning(
                "receipt_not_sent",
                reason=Reason.SENDER_REVOKED.value,
                message_id=str(m.message_id),
                sender=m.sender,
            )
            return
        sealed = self.sender.seal_receipt(m, received_at=known.delivered_at)
        await self.sender.send(sealed)
        self.store.mark_receipt_sent(m.message_id, sealed.message_id, at=self.clock())
        self.hook("receipt_sent", m.message_id)

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
        (state store, derived receipt ids).
        """
        consumer = self.clients.consumer(group_id=self.group_id)
        await consumer.start()
        consumer.subscribe(topics=[self.topic])
        loop = asyncio.get_running_loop()
        started = loop.time()
        failures = 0
        try:
            while not stop.is_set():
                batch = await consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
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
                        continue
                    failures += 1
                    self.stats.retries += 1
                    wait = self.retry.wait_for(failed, failures)
                    log.warning(
                        "inbox_retry_later", partition=str(tp), error=str(failed), wait_s=wait
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            await consumer.stop()
        return self.stats

    async def _handle_partition(
        self, consumer: Consumer, tp: Partition, records: list[Record]
    ) -> DeliveryError | SendError | None:
        """Handle and commit ``records`` in order; on a retriable failure rewind to the
        failed record and return the error."""
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
