"""Following the directory topic: every service and adapter switches to a newer
signed directory without a restart.

Each signed directory version is one record on the compacted ``<prefix>.directory``
topic (one partition, key = the federation id, value = the signed-directory JSON,
exactly as in the file). Only the provisioning admin may write it (ACLs); anyone
in the federation may read it. :func:`publish_directory` writes a version;
:class:`DirectoryFollower` reads the topic from the beginning and offers every
record to a :class:`keys.LiveDirectory`, which takes only newer, validly signed
versions of the same federation (see ``keys._live``). A refused record is logged
(``directory_refused`` with the reason) and ignored: the service keeps the
version it had.

The follower refreshes every ``interval_s`` (one ListOffsets round trip when
nothing changed) and on demand (:meth:`DirectoryFollower.refresh`): the router
refreshes before it dead-letters a message for a reason a newer directory could
change (an unknown sender or key), so a participant added and published before
its first referral is never refused by a router that had not yet looked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from adapters._retry import RetryPolicy
from adapters.kafka import KafkaClients, OutRecord, Record, TopicReader, TransportError
from keys import LiveDirectory, OfferOutcome, SignedDirectory
from schemas import Directory

__all__ = ["DirectoryFollower", "publish_directory"]

log = structlog.get_logger("crb.directory")

T = TypeVar("T")

DEFAULT_REFRESH_S = 1.0


async def publish_directory(
    clients: KafkaClients, topic: str, signed: SignedDirectory, *, deadline_s: float = 30.0
) -> None:
    """Write one signed directory version to the directory topic; returns after Kafka
    acknowledged it (``acks=all``). A retriable failure (a topic created a moment ago
    whose leader is not known yet, a broker away) is retried for ``deadline_s``.
    Raises the plumbing's ``TransportError``s (``AccessDenied`` unless logged in as
    the admin)."""
    directory = signed.directory
    record = OutRecord(
        topic,
        directory.federation_id.encode(),
        signed.to_json(),
        (("crb-directory-version", str(directory.version).encode()),),
    )
    await clients.partitions(topic)  # TopicMissing now, rather than retried in vain
    retry = RetryPolicy(initial_s=0.1, max_s=2.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    attempt = 0
    while True:
        producer = clients.producer()
        try:
            await producer.start()
            try:
                await producer.send_and_wait(record)
                return
            finally:
                await producer.stop()
        except TransportError as exc:
            attempt += 1
            if not exc.retriable or loop.time() >= deadline:
                raise
            log.info("directory_publish_retry", error=str(exc), attempt=attempt)
            await asyncio.sleep(retry.delay(attempt))


class DirectoryFollower:
    """Reads the directory topic into ``live``; see the module docstring.

    ``on_update`` is called with each version accepted and its signed bytes (after
    the listeners of ``live``), e.g. to keep it for the next start.
    """

    def __init__(
        self,
        clients: KafkaClients,
        topic: str,
        live: LiveDirectory,
        *,
        interval_s: float = DEFAULT_REFRESH_S,
        on_update: Callable[[Directory, bytes], None] | None = None,
    ) -> None:
        self.live = live
        self.topic = topic
        self.interval_s = interval_s
        self.on_update = on_update
        self._reader = TopicReader(clients, topic)
        self._started = False
        self.refreshes = 0

    async def start(self) -> None:
        """Assign the topic from its beginning and read it to its end: afterwards
        ``live`` holds the newest valid version published so far."""
        await self._reader.start()
        self._started = True
        await self.refresh()

    async def stop(self) -> None:
        self._started = False
        await self._reader.stop()

    async def __aenter__(self) -> DirectoryFollower:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def refresh(self) -> bool:
        """Read what was published since the last call; ``True`` if the version changed."""
        before = self.live.version
        await self._reader.read_to_end(self._take)
        self.refreshes += 1
        return self.live.version != before

    def _take(self, record: Record) -> None:
        if record.value is None:
            return  # a tombstone: compaction never removes the newest version
        offer = self.live.offer(record.value)
        if offer.outcome is OfferOutcome.ACCEPTED:
            directory = self.live.current
            log.info(
                "directory_updated",
                version=directory.version,
                participants=len(directory.participants),
                source=record.where,
            )
            if self.on_update is not None:
                self.on_update(directory, record.value)
        elif offer.outcome is OfferOutcome.REFUSED:
            log.warning(
                "directory_refused",
                reason=offer.reason.value if offer.reason else None,
                detail=offer.detail,
                offered_version=offer.version,
                current_version=self.live.version,
                source=record.where,
            )

    async def alongside(self, work: Coroutine[Any, Any, T]) -> T:
        """Start following (read to the end first), run ``work`` while refreshing in
        the background, then stop following — whichever way ``work`` ends."""
        try:
            await self.start()
        except BaseException:
            work.close()
            raise
        done = asyncio.Event()
        follow = asyncio.create_task(self.run(done))
        try:
            return await work
        finally:
            done.set()
            with contextlib.suppress(TransportError):
                await follow
            await self.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``interval_s`` until ``stop`` is set. A refresh that fails
        (the broker away) is logged and tried again: the service keeps its version."""
        if not self._started:
            await self.start()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            if stop.is_set():
                break
            try:
                await self.refresh()
            except TransportError as exc:
                log.warning("directory_refresh_failed", error=str(exc), retriable=exc.retriable)
