"""Reading a whole topic to its end, without a consumer group.

:class:`TopicReader` follows every partition of one topic (``read_committed``):
``read_to_end`` feeds each record from the current positions up to the end each
partition had when the call began (its last stable offset), and can be called
again to catch up. It can start from saved positions instead of the beginning
(a service's local snapshot says how far it had read), and says where it stands
(:meth:`TopicReader.positions`). :func:`read_topic` is the one-shot form, from the
beginning.

A reader that decides on the *absence* of a record (the router: "no router
forwarded this id", "the original of this receipt is unknown") is made with
``settle=True``: ``read_to_end`` then reads up to each partition's high watermark
instead of its last stable offset, i.e. it also waits until every transaction
open when the call began is committed or aborted. Without it, one open
transaction — a router SIGKILLed mid-commit holds one until its successor takes
the transactional id or the transaction times out — hides every record committed
after it in that partition, and the reader would take "not read" for "not there".
Used to rebuild state (the tracker's topic, the router's audit memory) and by
the CLI's readers (``crb audit verify``, dead letters).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from adapters.kafka._clients import Consumer, KafkaClients
from adapters.kafka._errors import Unavailable
from adapters.kafka._records import Partition, Record

__all__ = ["TopicReader", "read_topic"]


class TopicReader:
    """Every partition of ``topic``, read from the beginning (use ``async with``)."""

    def __init__(self, clients: KafkaClients, topic: str, *, settle: bool = False) -> None:
        self.clients = clients
        self.topic = topic
        self.settle = settle
        self._consumer: Consumer | None = None
        self._watermarks: Consumer | None = None
        """With ``settle``: a ``read_uncommitted`` consumer asked for high watermarks."""
        self._partitions: list[Partition] = []
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self, from_positions: Mapping[int, int] | None = None) -> bool:
        """Assign every partition at its beginning, or at ``from_positions``
        (partition → offset) when given; ``TopicMissing`` if there is no topic.

        Returns whether the positions were taken: only if they name every partition
        and each lies between the partition's first held offset and its end —
        otherwise (a topic recreated, records deleted past them) every partition
        starts at its beginning and the caller must rebuild from scratch.
        """
        partitions = await self.clients.partitions(self.topic)
        consumer = self.clients.consumer(group_id=None)
        await consumer.start()
        self._partitions = [Partition(self.topic, p) for p in partitions]
        consumer.assign(self._partitions)
        self._consumer = consumer
        if self.settle and self._watermarks is None:
            watermarks = self.clients.consumer(group_id=None, committed_only=False)
            await watermarks.start()
            self._watermarks = watermarks
        if from_positions is not None and set(from_positions) == set(partitions):
            starts = await consumer.beginning_offsets(self._partitions)
            ends = await (self._watermarks or consumer).end_offsets(self._partitions)
            if all(starts[p] <= from_positions[p.partition] <= ends[p] for p in self._partitions):
                for p in self._partitions:
                    consumer.seek(p, from_positions[p.partition])
                return True
        await consumer.seek_to_beginning(*self._partitions)
        return False

    async def positions(self) -> dict[int, int]:
        """Partition → the next offset this reader will read."""
        assert self._consumer is not None, "start() first"
        return {p.partition: await self._consumer.position(p) for p in self._partitions}

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        if self._watermarks is not None:
            watermarks, self._watermarks = self._watermarks, None
            await watermarks.stop()

    async def read_to_end(
        self,
        on_record: Callable[[Record], None],
        *,
        timeout_s: float = 60.0,
        settle: bool | None = None,
    ) -> int:
        """Feed every record up to the current end to ``on_record``; returns the count.

        The end is the last stable offset, or with ``settle`` the high watermark (the
        call also waits for the transactions open when it began; see the module
        docstring; ``settle=False`` reads to the last stable offset this once).
        Raises ``Unavailable`` if no record arrives for ``timeout_s``
        before the end is reached (a long topic takes as long as it takes while it
        keeps coming).
        """
        assert self._consumer is not None, "start() first"
        async with self._lock:
            consumer = self._consumer
            settled = self.settle if settle is None else settle
            probe = self._watermarks if settled and self._watermarks is not None else consumer
            ends = await probe.end_offsets(self._partitions)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            count = 0
            while True:
                behind = [p for p in self._partitions if await consumer.position(p) < ends[p]]
                if not behind:
                    return count
                if loop.time() > deadline:
                    where = ", ".join(str(p) for p in behind)
                    raise Unavailable(
                        f"{self.topic}: nothing read for {timeout_s:g}s before its end: {where}"
                    )
                batch = await consumer.poll(*behind, timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        on_record(r)
                        count += 1
                if batch:
                    deadline = loop.time() + timeout_s


async def read_topic(clients: KafkaClients, topic: str, on_record: Callable[[Record], None]) -> int:
    """Feed every committed record of ``topic`` to ``on_record``; returns the count."""
    async with TopicReader(clients, topic) as reader:
        return await reader.read_to_end(on_record)
