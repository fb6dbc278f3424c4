"""Every Kafka client of the project is built here, from typed settings.

:class:`KafkaClients` is the factory services and adapters receive (injected, so
a test can hand them an in-memory stand-in); the wrappers it returns speak in
:class:`~adapters.kafka.Record` / :class:`~adapters.kafka.Partition` and raise
only :class:`~adapters.kafka.TransportError`. Defaults that hold everywhere are
set once here: consumers read ``read_committed``, never auto-commit and start
from the earliest offset; producers are idempotent with ``acks=all``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.kafka._errors import (
    AccessDenied,
    TopicMissing,
    Unavailable,
    kafka_errors,
    translate,
)
from adapters.kafka._records import OutRecord, Partition, Record
from adapters.kafka._security import SecurityAdmin
from adapters.kafka._settings import KafkaSettings, client_kwargs

__all__ = [
    "Admin",
    "Consumer",
    "KafkaClients",
    "Producer",
    "TopicDescription",
    "TransactionalProducer",
]

PartitionsCallback = Callable[[list[Partition]], Awaitable[None]]


def _tp(p: Partition) -> Any:
    from aiokafka import TopicPartition

    return TopicPartition(p.topic, p.partition)


def _ours(tp: Any) -> Partition:
    return Partition(tp.topic, tp.partition)


LoginProbe = Callable[[], Awaitable[None]]


class _Client:
    """A started/stopped aiokafka client; a failed start releases what it opened.

    aiokafka reports refused credentials only as "unable to bootstrap"; when a start
    fails that way, ``probe`` (one direct connection) tells a wrong login
    (``AccessDenied``, not retriable) from a cluster that is away (``Unavailable``).
    """

    def __init__(self, raw: Any, probe: LoginProbe | None = None) -> None:
        self._raw = raw
        self._probe = probe

    async def _release(self) -> None:
        await self._raw.stop()

    async def start(self) -> None:
        try:
            with kafka_errors():
                try:
                    await self._raw.start()
                except BaseException:
                    await self._release()
                    raise
        except Unavailable:
            if self._probe is not None:
                await self._probe()
            raise

    async def stop(self) -> None:
        with kafka_errors():
            await self._release()


class Producer(_Client):
    """An idempotent ``acks=all`` producer."""

    async def send_and_wait(self, record: OutRecord) -> None:
        """Produce and wait until every in-sync replica has it."""
        with kafka_errors():
            await self._raw.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )


class TransactionalProducer(Producer):
    """A producer with a transactional id; ``start`` fences its previous owner."""

    def __init__(self, raw: Any, transactional_id: str, probe: LoginProbe | None = None) -> None:
        super().__init__(raw, probe)
        self.transactional_id = transactional_id

    async def commit(
        self,
        records: Iterable[OutRecord],
        *,
        offsets: Mapping[Partition, int] | None = None,
        group_id: str | None = None,
    ) -> dict[Partition, int]:
        """Write ``records`` and (with ``group_id``) the consumed ``offsets`` in one
        transaction; on any failure the transaction is aborted and the error raised
        (``Fenced`` when a newer owner took the id). Returns, per partition written,
        the offset after the last record written there (where a reader that has
        seen them all stands)."""
        raw = self._raw
        with kafka_errors():
            await raw.begin_transaction()
            try:
                futures = [
                    await raw.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                    for r in records
                ]
                if offsets and group_id is not None:
                    await raw.send_offsets_to_transaction(
                        {_tp(p): o for p, o in offsets.items()}, group_id
                    )
                written = await asyncio.gather(*futures)
                await raw.commit_transaction()
            except BaseException as exc:
                ended = (
                    _transaction_error(raw) if type(exc).__name__ == "IllegalOperation" else None
                )
                with contextlib.suppress(Exception):  # the first error is the one to report
                    await raw.abort_transaction()
                if ended is not None:
                    raise translate(ended) from exc
                if type(exc).__name__ == "IllegalOperation":
                    raise Unavailable(f"the transaction ended under us: {exc}") from exc
                raise
        after: dict[Partition, int] = {}
        for meta in written:
            p = Partition(meta.topic, meta.partition)
            after[p] = max(after.get(p, 0), meta.offset + 1)
        return after


def _transaction_error(raw: Any) -> BaseException | None:
    """The error that ended aiokafka's transaction under a running ``commit``.

    When a background request of the transaction (adding a partition, sending the
    offsets) learns that a newer producer took the transactional id, aiokafka puts
    the error on its transaction waiter and the next ``send`` only raises
    ``IllegalOperation("Can't send messages while not in transaction")``. Reading
    the waiter gives the cause (``ProducerFenced`` -> :class:`Fenced`, so the
    caller steps back instead of crashing) and retrieves it (no "exception was
    never retrieved" at exit)."""
    waiter = getattr(getattr(raw, "_txn_manager", None), "_transaction_waiter", None)
    if not isinstance(waiter, asyncio.Future) or not waiter.done() or waiter.cancelled():
        return None
    return waiter.exception()


class Consumer(_Client):
    """A consumer (see the module docstring for its fixed defaults)."""

    def subscribe(
        self,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
    ) -> None:
        """Join the group for ``topics`` or a ``pattern``; the callbacks run inside
        ``poll`` when the group hands partitions out or takes them back."""
        from aiokafka import ConsumerRebalanceListener

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: list[Any]) -> None:
                if on_revoked is not None:
                    await on_revoked([_ours(t) for t in revoked])

            async def on_partitions_assigned(self, assigned: list[Any]) -> None:
                if on_assigned is not None:
                    await on_assigned([_ours(t) for t in assigned])

        with kafka_errors():
            if pattern is not None:
                self._raw.subscribe(pattern=pattern, listener=_Listener())
            else:
                self._raw.subscribe(topics=list(topics), listener=_Listener())

    def assign(self, partitions: Iterable[Partition]) -> None:
        with kafka_errors():
            self._raw.assign([_tp(p) for p in partitions])

    def assignment(self) -> set[Partition]:
        return {_ours(t) for t in self._raw.assignment()}

    async def poll(
        self, *partitions: Partition, timeout_ms: int, max_records: int | None = None
    ) -> dict[Partition, list[Record]]:
        """Records fetched since the last call, by partition (empty after the timeout).

        A topic the ACLs do not let us read raises ``AccessDenied``: aiokafka would
        only return nothing, forever, and log a line."""
        with kafka_errors():
            batch = await self._raw.getmany(
                *(_tp(p) for p in partitions), timeout_ms=timeout_ms, max_records=max_records
            )
        self._refuse_unauthorized()
        return {_ours(tp): [Record.of(r) for r in rs] for tp, rs in batch.items() if rs}

    def _refuse_unauthorized(self) -> None:
        denied = set(getattr(self._raw._client.cluster, "unauthorized_topics", ()))
        if not denied:
            return
        ours = {tp.topic for tp in self._raw.assignment()} | set(self._raw.subscription())
        if hit := sorted(denied & ours):
            raise AccessDenied(f"not allowed to read {', '.join(hit)}")

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offsets to read (``last offset + 1``) for the group."""
        with kafka_errors():
            await self._raw.commit({_tp(p): o for p, o in offsets.items()})

    async def committed(self, partition: Partition) -> int | None:
        with kafka_errors():
            offset: int | None = await self._raw.committed(_tp(partition))
        return offset

    async def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The end of each partition; under ``read_committed`` its last stable offset."""
        with kafka_errors():
            ends = await self._raw.end_offsets([_tp(p) for p in partitions])
        return {_ours(tp): o for tp, o in ends.items()}

    async def beginning_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The first offset still held by each partition (after retention or deletion)."""
        with kafka_errors():
            starts = await self._raw.beginning_offsets([_tp(p) for p in partitions])
        return {_ours(tp): o for tp, o in starts.items()}

    async def position(self, partition: Partition) -> int:
        with kafka_errors():
            offset: int = await self._raw.position(_tp(partition))
        return offset

    def seek(self, partition: Partition, offset: int) -> None:
        with kafka_errors():
            self._raw.seek(_tp(partition), offset)

    async def seek_to_beginning(self, *partitions: Partition) -> None:
        with kafka_errors():
            await self._raw.seek_to_beginning(*(_tp(p) for p in partitions))

    async def rewind(self, partitions: Iterable[Partition]) -> None:
        """Back to the group's committed offsets (the beginning where none is)."""
        for p in partitions:
            committed = await self.committed(p)
            if committed is None:
                await self.seek_to_beginning(p)
            else:
                self.seek(p, committed)

    async def caught_up(self, partitions: Iterable[Partition] | None = None) -> bool:
        """Whether every given (default: assigned) partition is read to its end."""
        wanted = list(self.assignment() if partitions is None else partitions)
        if not wanted:
            return False
        ends = await self.end_offsets(wanted)
        for p in wanted:
            if await self.position(p) < ends[p]:
                return False
        return True

    def pause(self, *partitions: Partition) -> None:
        self._raw.pause(*(_tp(p) for p in partitions))

    def resume(self, *partitions: Partition) -> None:
        self._raw.resume(*(_tp(p) for p in partitions))


@dataclass(frozen=True, slots=True)
class TopicDescription:
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


class Admin(_Client):
    """Topic administration (``async with clients.admin() as admin``)."""

    async def _release(self) -> None:
        await self._raw.close()

    async def __aenter__(self) -> Admin:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def group_offsets(self, group_id: str) -> dict[Partition, int]:
        """The committed offsets of consumer group ``group_id`` (empty if none)."""
        with kafka_errors():
            found = await self._raw.list_consumer_group_offsets(group_id)
        return {_ours(tp): meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def partition_counts(self, names: Iterable[str]) -> dict[str, int]:
        """How many partitions each existing topic of ``names`` has (one request on
        this admin's connection)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        with kafka_errors():
            described = await self._raw.describe_topics(wanted)
        return {t["topic"]: len(t["partitions"]) for t in described if t["partitions"]}

    async def brokers(self) -> int:
        """How many brokers the cluster's metadata lists now."""
        with kafka_errors():
            described = await self._raw.describe_cluster()
        return len(described.get("brokers", ()))

    async def list_topics(self) -> list[str]:
        with kafka_errors():
            return sorted(await self._raw.list_topics())

    async def describe(self, names: Iterable[str]) -> dict[str, TopicDescription]:
        """Partition counts and configs of those of ``names`` that exist."""
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        with kafka_errors():
            present = set(await self._raw.list_topics())
            wanted = sorted({n for n in names if n in present})
            if not wanted:
                return {}
            described = await self._raw.describe_topics(wanted)
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            configs: dict[str, dict[str, str]] = {n: {} for n in wanted}
            responses = await self._raw.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
            )
        for response in responses:
            for resource in response.resources:
                topic = resource[3]
                for entry in resource[4]:
                    configs.setdefault(topic, {})[entry[0]] = entry[1]
        return {n: TopicDescription(partitions.get(n, 0), configs.get(n, {})) for n in wanted}

    async def create_topics(
        self, specs: Iterable[tuple[str, int, int, Mapping[str, str]]]
    ) -> list[tuple[str, str]]:
        """Create ``(name, partitions, replication, config)`` topics; returns the
        ``(name, problem)`` of those Kafka refused. An existing topic is no problem."""
        from aiokafka.admin import NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        new = [NewTopic(n, p, r, topic_configs=dict(c)) for n, p, r, c in specs]
        if not new:
            return []
        problems: list[tuple[str, str]] = []
        with kafka_errors():
            try:
                response = await self._raw.create_topics(new)
            except TopicAlreadyExistsError:
                return []
        for topic, code, *rest in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                problems.append((topic, f"error {code} {rest[0] if rest else ''}".strip()))
        return problems

    async def delete_topics(self, names: Iterable[str]) -> None:
        with kafka_errors():
            response = await self._raw.delete_topics(list(names))
        for topic, code, *_ in response.topic_error_codes:
            if code != 0:
                from aiokafka.errors import for_code

                raise translate(for_code(code)(topic))

    async def alter_topic_config(self, topic: str, config: Mapping[str, str]) -> None:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        with kafka_errors():
            responses = await self._raw.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, dict(config))]
            )
        for response in responses:
            for code, message, *_ in response.resources:
                if code != 0:
                    from aiokafka.errors import for_code

                    raise translate(for_code(code)(message or topic))


class KafkaClients:
    """Builds producers, consumers and admin clients from one :class:`KafkaSettings`."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._kwargs: dict[str, Any] | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """Connection and security keyword arguments (built once)."""
        if self._kwargs is None:
            self._kwargs = client_kwargs(self.settings)
        return self._kwargs

    def producer(self, *, linger_ms: int | None = None) -> Producer:
        from aiokafka import AIOKafkaProducer

        return Producer(
            AIOKafkaProducer(
                **self.kwargs,
                acks="all",
                enable_idempotence=True,
                max_request_size=self.settings.max_message_bytes,
                linger_ms=self.settings.linger_ms if linger_ms is None else linger_ms,
            ),
            self._probe,
        )

    def transactional_producer(
        self, transactional_id: str, *, transaction_timeout_ms: int = 60_000, linger_ms: int = 2
    ) -> TransactionalProducer:
        from aiokafka import AIOKafkaProducer

        raw = AIOKafkaProducer(
            **self.kwargs,
            transactional_id=transactional_id,
            transaction_timeout_ms=transaction_timeout_ms,
            max_request_size=self.settings.max_message_bytes,
            linger_ms=linger_ms,
        )
        return TransactionalProducer(raw, transactional_id, self._probe)

    def consumer(
        self,
        *,
        group_id: str | None = None,
        max_poll_records: int | None = None,
        metadata_max_age_ms: int | None = None,
        fetch_max_bytes: int | None = None,
        session_timeout_ms: int | None = None,
        committed_only: bool = True,
    ) -> Consumer:
        """A ``read_committed`` consumer; ``group_id=None`` for one that only assigns.

        ``session_timeout_ms``: how long the group waits for a silent member before
        handing its partitions to others (heartbeats every third of it).
        ``committed_only=False`` (``read_uncommitted``) only to ask partitions' high
        watermarks with ``end_offsets`` — never to read records with."""
        from aiokafka import AIOKafkaConsumer

        from adapters.kafka import _undecodable

        _undecodable.install()  # an undecodable batch must not stop the consumer
        tuning: dict[str, Any] = {}
        if max_poll_records is not None:
            tuning["max_poll_records"] = max_poll_records
        if metadata_max_age_ms is not None:
            tuning["metadata_max_age_ms"] = metadata_max_age_ms
        if session_timeout_ms is not None:
            tuning["session_timeout_ms"] = session_timeout_ms
            tuning["heartbeat_interval_ms"] = max(100, session_timeout_ms // 3)
        return Consumer(
            AIOKafkaConsumer(
                **self.kwargs,
                group_id=group_id,
                enable_auto_commit=False,
                isolation_level="read_committed" if committed_only else "read_uncommitted",
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=self.settings.max_message_bytes,
                fetch_max_bytes=fetch_max_bytes or self.settings.max_message_bytes * 4,
                fetch_min_bytes=self.settings.fetch_min_bytes,
                fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                **tuning,
            ),
            self._probe,
        )

    def security(self) -> SecurityAdmin:
        """ACLs and SCRAM users (kafka-python: aiokafka has no API for them)."""
        return SecurityAdmin(self.settings)

    def admin(self) -> Admin:
        from aiokafka.admin import AIOKafkaAdminClient

        return Admin(AIOKafkaAdminClient(**self.kwargs), self._probe)

    @property
    def _probe(self) -> LoginProbe | None:
        return self.check_login if self.settings.sasl_mechanism is not None else None

    async def check_login(self) -> None:
        """Log in once to a bootstrap server: ``AccessDenied`` if the credentials are
        refused, ``Unavailable`` if no server answers, nothing if the login works."""
        from aiokafka.conn import create_conn

        kwargs = {
            k: v
            for k, v in self.kwargs.items()
            if k in ("security_protocol", "ssl_context", "request_timeout_ms")
            or k.startswith("sasl_")
        }
        last: BaseException | None = None
        for server in self.settings.bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with kafka_errors():
                    conn = await create_conn(host, int(port), **kwargs)
            except AccessDenied:
                raise AccessDenied(
                    f"Kafka refused the login of {self.settings.sasl_username!r} "
                    f"({self.settings.sasl_mechanism})"
                ) from None
            except Unavailable as exc:
                last = exc
                continue
            conn.close()
            return
        raise Unavailable(f"no Kafka server answered at {self.settings.bootstrap}") from last

    async def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic`` from a fresh metadata request; ``TopicMissing``
        if it does not exist."""
        from aiokafka.client import AIOKafkaClient

        wanted = {
            k: v
            for k, v in self.kwargs.items()
            if k in ("bootstrap_servers", "security_protocol", "ssl_context", "request_timeout_ms")
            or k.startswith("sasl_")
        }
        from aiokafka.cluster import ClusterMetadata

        client = AIOKafkaClient(**wanted)
        metadata = ClusterMetadata()
        try:
            with kafka_errors():
                try:
                    await client.bootstrap()
                    # Ask for this topic by name: only then does the broker say when it
                    # exists but may not be described, instead of leaving it out.
                    if not await client._metadata_update(metadata, [topic]):
                        raise Unavailable(f"no broker answered a metadata request for {topic}")
                finally:
                    await client.close()
        except Unavailable:
            if self._probe is not None:
                await self._probe()
            raise
        if topic in metadata.unauthorized_topics:
            raise AccessDenied(f"not allowed to describe {topic}")
        found = sorted(metadata.partitions_for_topic(topic) or ())
        if not found:
            raise TopicMissing(topic)
        return found
