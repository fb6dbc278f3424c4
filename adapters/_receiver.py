"""Receiving: consume the own inbox -> open -> deliver -> record -> receipt -> commit.

Per inbox record, in this order (:meth:`Receiver.handle`):

1. If the (unverified) message id is in the state store with the same envelope
   digest, it was delivered before (Kafka redelivered it after a crash or a
   rebalance): do not deliver again; send its receipt if that had not been sent.
2. ``keys.open`` as this participant, at the record's Kafka timestamp (clamped,
   see ``opening_time``), then check the payload agrees with the header. Any
   failure: quarantine (exact bytes + reason code in the state folder), log the
   reason, commit — never retried forever.
3. A verified message id already delivered (same id, other bytes): not again.
4. ``sink.deliver`` — the local system's durable handover. Retriable failure:
   keep the offset, back off, read the record again later. Refused: quarantine.
5. Record the id (and the header facts ``crb ack`` needs) in the state store.
6. For a referral: seal and produce the signed ``received`` receipt (SHA-256 of
   the exact envelope bytes; derived id) and wait for Kafka's ack; mark it sent.
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
from typing import Any
from uuid import UUID

import structlog

from adapters._errors import DeliveryError, SendError
from adapters._model import ReceivedMessage, opening_time
from adapters._sender import Sender, utcnow
from adapters._sinks import Delivery, Sink
from adapters._state import Delivered, StateStore
from broker.settings import Settings, client_kwargs
from broker.topics import TopicNames
from keys import EnvelopeError, Opened, peek_header
from keys import open as open_envelope
from schemas import MessageType, Payload, payload_mismatches

__all__ = ["InboxRecord", "Outcome", "Receiver", "ReceiverStats"]

log = structlog.get_logger("crb.adapter")

PAYLOAD_MISMATCH = "payload_mismatch"


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class InboxRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: datetime | None = None

    @classmethod
    def from_kafka(cls, record: Any) -> InboxRecord:
        ts = getattr(record, "timestamp", None)
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            value=record.value,
            timestamp=datetime.fromtimestamp(ts / 1000, UTC) if ts and ts > 0 else None,
        )


@dataclass
class ReceiverStats:
    delivered: int = 0
    duplicates: int = 0
    quarantined: int = 0
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


Hook = Callable[[str, UUID], None]
"""Called at ``delivered``, ``recorded`` and ``receipt_sent`` (tests inject crashes)."""


class Receiver:
    """The inbox loop of one participant (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sender: Sender,
        sink: Sink,
        store: StateStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        hook: Hook | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.identity = sender.identity
        self.sink = sink
        self.store = store
        self.clock = clock
        self.hook = hook or (lambda _stage, _mid: None)
        self.topic = TopicNames(settings.topics.prefix).inbox(self.identity.participant)
        self.group_id = f"{settings.adapter.group_id_prefix}.{self.identity.participant}"
        self.stats = ReceiverStats()

    # -- one record --------------------------------------------------------------------

    async def handle(self, record: InboxRecord) -> Outcome:
        """Steps 1-6 of the module docstring; raises ``DeliveryError`` / ``SendError``
        (retriable) when the record must be read again later."""
        value = record.value or b""
        digest = hashlib.sha256(value).hexdigest()
        claimed: UUID | None = None
        with contextlib.suppress(EnvelopeError):
            claimed = peek_header(value).message_id
        known = self.store.get(claimed) if claimed else None
        if known is not None and known.message.envelope_sha256 == digest:
            await self._ensure_receipt(known)
            return self._count(Outcome.DUPLICATE)

        now = self.clock()
        try:
            opened = open_envelope(
                value,
                recipient=self.identity.participant,
                opening_keys=self.identity.opening_keys,
                directory=self.identity.directory,
                now=opening_time(now, record.timestamp, self.settings.adapter.max_inbox_lag),
            )
        except EnvelopeError as exc:
            return self._quarantine(record, value, digest, claimed, exc.reason.value)
        assert opened.message is not None
        message: Payload = opened.message  # type: ignore[assignment]
        if payload_mismatches(opened.header, message):
            return self._quarantine(record, value, digest, claimed, PAYLOAD_MISMATCH)

        header = opened.header
        known = self.store.get(header.message_id)
        if known is not None:
            await self._ensure_receipt(known)
            return self._count(Outcome.DUPLICATE)

        try:
            await self.sink.deliver(self._delivery(opened, now))
        except DeliveryError as exc:
            if exc.retriable:
                raise
            return self._quarantine(record, value, digest, claimed, f"sink_refused:{exc.reason}")
        self.hook("delivered", header.message_id)
        self.store.record_delivered(ReceivedMessage.from_opened(opened), at=now)
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

    def _delivery(self, opened: Opened, now: datetime) -> Delivery:
        h = opened.header
        return Delivery(
            message_id=h.message_id,
            message_type=h.message_type,
            case_id=h.case_id,
            sender=h.sender,
            recipient=opened.recipient,
            in_reply_to=h.in_reply_to,
            envelope_sha256=opened.digest,
            received_at=now,
            payload=opened.payload,
        )

    async def _ensure_receipt(self, known: Delivered) -> None:
        m = known.message
        if m.message_type is not MessageType.REFERRAL or known.receipt_sent_at is not None:
            return
        sealed = self.sender.seal_receipt(m, received_at=known.delivered_at)
        await self.sender.send(sealed)
        self.store.mark_receipt_sent(m.message_id, sealed.message_id, at=self.clock())
        self.hook("receipt_sent", m.message_id)

    def _quarantine(
        self,
        record: InboxRecord,
        value: bytes,
        digest: str,
        claimed: UUID | None,
        reason: str,
    ) -> Outcome:
        self.store.quarantine(
            value,
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            digest=digest,
            claimed_message_id=claimed,
            at=self.clock(),
        )
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        log.warning(
            "quarantined",
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
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
        """Consume until ``stop`` is set, or (``drain``) until the inbox is read to its end."""
        from aiokafka import AIOKafkaConsumer

        a = self.settings.adapter
        consumer = AIOKafkaConsumer(
            self.topic,
            **client_kwargs(self.settings.kafka),
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.settings.kafka.max_message_bytes,
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = 0.5
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=a.poll_timeout_ms)
                assigned = consumer.assignment()
                if assigned and ready is not None:
                    ready.set()
                if not batch and drain:
                    if assigned and await self._caught_up(consumer, assigned):
                        break
                    if not assigned and loop.time() - started > assign_timeout_s:
                        break
                for tp, records in batch.items():
                    for r in records:
                        try:
                            await self.handle(InboxRecord.from_kafka(r))
                        except (DeliveryError, SendError) as exc:
                            # Handling is idempotent (state store, derived receipt ids):
                            # read the record again after a pause, never skip it.
                            self.stats.retries += 1
                            log.warning(
                                "inbox_retry_later",
                                topic=tp.topic,
                                partition=tp.partition,
                                offset=r.offset,
                                error=str(exc),
                            )
                            consumer.seek(tp, r.offset)
                            await asyncio.sleep(backoff)
                            backoff = min(backoff * 2, a.http_backoff_max_s)
                            break
                        backoff = 0.5
                        await consumer.commit({tp: r.offset + 1})
        finally:
            await consumer.stop()
        return self.stats

    @staticmethod
    async def _caught_up(consumer: Any, assigned: set[Any]) -> bool:
        ends = await consumer.end_offsets(list(assigned))
        for tp in assigned:
            if await consumer.position(tp) < ends[tp]:
                return False
        return True
