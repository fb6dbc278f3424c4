"""A failed audit read keeps what it read (the router's memory; no Kafka).

The reader moves past every record it hands over; if ``catch_up`` applied only on
success, a read that failed part way (an open transaction holding the rest) would
drop those records from the memory for good — the chain heads and forwarded
messages of another router's last commits — and the next decision would re-forward
or fork the chain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from adapters.kafka import Record, Unavailable
from broker.audit import AuditEntry, Verdict, chain_id, chain_next
from broker.router import Router
from schemas import ServiceRole, utcnow, uuid7
from tests._fed import LiveFederation, settings_for

OUTBOX = "t.outbox.de.hotline"


class _FailingReader:
    """Hands over ``records``, then fails as an open transaction would make it."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    async def read_to_end(
        self, take: Callable[[Record], None], *, timeout_s: float, settle: bool
    ) -> None:
        for r in self.records:
            take(r)
        raise Unavailable("t.audit: nothing read for 90s before its end: t.audit/0")


def test_records_read_before_a_failure_are_in_the_memory() -> None:
    fed = LiveFederation()
    router = Router(
        settings_for("127.0.0.1:1", "t"), fed.directory(), signer=fed.signer(ServiceRole.ROUTER)
    )
    signer = fed.signer(ServiceRole.ROUTER)
    now = utcnow()
    previous = None
    records = []
    ids = []
    for offset in range(3):
        message_id = uuid7(now + timedelta(milliseconds=offset))
        ids.append(message_id)
        entry = AuditEntry(
            verdict=Verdict.FORWARDED,
            source_topic=OUTBOX,
            source_partition=0,
            source_offset=offset,
            envelope_sha256="0" * 64,
            message_id=str(message_id),
            message_type="referral",
            sender="de.hotline",
            recipients=("nl.hotline",),
            decided_at=now,
        )
        previous = chain_next(previous, entry).signed(signer)
        records.append(Record("t.audit", 0, offset, None, previous.to_bytes()))
    router._audit = _FailingReader(records)  # type: ignore[assignment]

    with pytest.raises(Unavailable):
        asyncio.run(router.catch_up())
    head = router.memory.heads[chain_id(OUTBOX, 0)]
    assert (head.source_offset, head.seq) == (2, 2)
    assert all(m in router.memory.seen for m in ids)
