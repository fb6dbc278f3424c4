"""How a transaction that ends under a running ``commit`` is reported.

Found by the chaos run (``bench/chaos.py``): a router frozen past its session
timeout resumes while another router took its partitions; aiokafka learns of the
fence on a background request and its next ``send`` raises only
``IllegalOperation``. ``commit`` must say ``Fenced`` (the router steps back) —
before, the router exited with an internal error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import IllegalOperation, ProducerFenced

from adapters.kafka import Fenced, OutRecord, TransactionalProducer, Unavailable


class _Manager:
    def __init__(self) -> None:
        self._transaction_waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Raw:
    """Just what ``commit`` calls on an aiokafka producer; ``send`` fails as aiokafka's
    does once its transaction manager left the transaction."""

    def __init__(self, cause: BaseException | None) -> None:
        self._txn_manager = _Manager()
        if cause is not None:
            self._txn_manager._transaction_waiter.set_exception(cause)
        self.aborted = 0

    async def begin_transaction(self) -> None:
        return None

    async def send(self, *_: Any, **__: Any) -> Any:
        raise IllegalOperation("Can't send messages while not in transaction")

    async def abort_transaction(self) -> None:
        self.aborted += 1


RECORDS = [OutRecord("t", b"k", b"v")]


async def test_a_fence_learned_in_the_background_is_fenced() -> None:
    raw = _Raw(ProducerFenced())
    producer = TransactionalProducer(raw, "router.t.0")
    with pytest.raises(Fenced) as caught:
        await producer.commit(RECORDS)
    assert not caught.value.retriable
    assert raw.aborted == 1
    # the waiter's error was read: nothing "never retrieved" at exit
    assert raw._txn_manager._transaction_waiter.done()


async def test_a_transaction_gone_without_a_known_cause_is_retriable() -> None:
    raw = _Raw(None)
    producer = TransactionalProducer(raw, "router.t.0")
    with pytest.raises(Unavailable) as caught:
        await producer.commit(RECORDS)
    assert caught.value.retriable
    assert "transaction ended" in str(caught.value)
    assert raw.aborted == 1
