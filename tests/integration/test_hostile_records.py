"""Hostile records at the Kafka edge, against a running router on the real, secured Kafka.

The federation is provisioned as an operator would (topics, signed directory, a SCRAM
login per participant, the ACLs the directory grants); the router runs in-process with
its own login. The router forwards one valid referral (the primer); then every class of
``tests/hostile/corpus.py`` is produced with the attacker's own login and metadata
(key, headers, CreateTime, compression, an aborted transaction); then one more valid
referral. Each hostile record must be dead-lettered with its reason or refused by Kafka
with its error, nothing may reach an inbox, and the last referral is forwarded once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from adapters.kafka import (
    ROUTER,
    KafkaClients,
    Partition,
    Record,
    TransportError,
    translate,
)
from adapters.kafka import client_kwargs as kafka_client_kwargs
from broker import acls
from broker.audit import AuditRecord, Verdict
from broker.router import Router
from broker.settings import Settings
from schemas import ServiceRole, TopicNames, utcnow
from tests.conftest import KafkaEndpoint
from tests.hostile.corpus import (
    CASE_KEY,
    CORPUS,
    PARTICIPANTS,
    REDELIVERY_MIN,
    Attempt,
    DeadLetter,
    DroppedUncommitted,
    HostileClass,
    KafkaRefused,
    Kit,
    Target,
    batch_builder,
    raw_key,
)
from tests.integration._kafka_util import read_all, running, wait_group_caught_up, wait_until
from tests.integration._secured import Cluster

pytestmark = pytest.mark.kafka

ROUTER_HEADERS = frozenset(
    {
        "crb-reason",
        "crb-source-topic",
        "crb-source-partition",
        "crb-source-offset",
        "crb-rejected-at",
        "crb-message-id",
        "crb-truncated",
        "crb-original-size",
        "traceparent",
    }
)
"""Every header a dead letter may carry: the router's own, never the attacker's."""
KEY_HEAD = 4096
"""How many leading bytes of an oversized key a dead letter keeps."""


@dataclass(frozen=True)
class Produced:
    """Kafka took the record (committed, or written in a transaction then aborted)."""

    tp: Partition
    offset: int


@dataclass(frozen=True)
class Denied:
    """Kafka refused the attempt (the produce, the login or the transactional id)."""

    error: BaseException


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class Attacker:
    """Produces attempts with their principal's own login; one producer per login and
    compression, dropped after any refusal."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names = cluster.names
        self._producers: dict[tuple[str, str | None], Any] = {}

    def topic(self, target: Target) -> str:
        n = self.names
        if target.kind == "outbox":
            return n.outbox(target.owner or "")
        if target.kind == "inbox":
            return n.inbox(target.owner or "")
        return n.audit if target.kind == "audit" else n.dlq

    def login_kwargs(self, principal: str) -> dict[str, Any]:
        # The client never refuses a size first: the broker must.
        return {**kafka_client_kwargs(self.cluster.login(principal)), "max_request_size": 64 << 20}

    async def _start(self, producer: Any, principal: str) -> Denied | None:
        try:
            await producer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            try:  # aiokafka only says "unable to bootstrap": ask why, as the plumbing does
                await KafkaClients(self.cluster.login(principal)).check_login()
            except TransportError as denied:
                return Denied(denied)
            return Denied(exc)
        return None

    async def send(self, attempt: Attempt) -> Produced | Denied:
        if attempt.transaction is not None:
            return await self._in_aborted_transaction(attempt)
        slot = (attempt.principal, attempt.compression)
        producer = self._producers.get(slot)
        if producer is None:
            producer = AIOKafkaProducer(
                **self.login_kwargs(attempt.principal),
                acks="all",
                enable_idempotence=False,
                compression_type=attempt.compression,
            )
            if (denied := await self._start(producer, attempt.principal)) is not None:
                return denied
            self._producers[slot] = producer
        try:
            meta = await producer.send_and_wait(
                self.topic(attempt.target),
                attempt.value,
                key=attempt.key,
                headers=list(attempt.headers),
                timestamp_ms=attempt.timestamp_ms,
            )
        except Exception as exc:
            del self._producers[slot]
            with contextlib.suppress(Exception):
                await producer.stop()
            return Denied(exc)
        return Produced(Partition(meta.topic, meta.partition), meta.offset)

    async def _in_aborted_transaction(self, attempt: Attempt) -> Produced | Denied:
        topic = self.topic(attempt.target)
        s = self.cluster.settings
        transactional_id = (
            f"{s.router.transactional_id_prefix}.{topic}.0"  # the router's own, for this partition
            if attempt.transaction == "router"
            else acls.redrive_transactional_id(s)
        )
        producer = AIOKafkaProducer(
            **self.login_kwargs(attempt.principal), transactional_id=transactional_id
        )
        if (denied := await self._start(producer, attempt.principal)) is not None:
            return denied
        try:
            await producer.begin_transaction()
            meta = await producer.send_and_wait(
                topic, attempt.value, key=attempt.key, headers=list(attempt.headers)
            )
            await producer.abort_transaction()
        except Exception as exc:
            return Denied(exc)
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
        return Produced(Partition(meta.topic, meta.partition), meta.offset)

    async def close(self) -> None:
        for producer in self._producers.values():
            with contextlib.suppress(Exception):
                await producer.stop()
        self._producers.clear()


async def _raw_header_key(
    producer: Any, topic: str, records: Sequence[tuple[bytes, bytes | None]]
) -> None:
    """Produce one batch of ``(value, raw)`` records: each with one header whose key
    is the bytes ``raw`` (none when ``None``). Kafka keeps header keys as bytes;
    aiokafka only sends UTF-8 text, so the batch is built with its pure-Python
    builder and a key that encodes to ``raw``."""
    batch = producer.create_batch()
    batch._builder = batch_builder()
    for value, raw in records:
        headers = [(raw_key(raw), b"v")] if raw is not None else []
        batch.append(timestamp=None, key=CASE_KEY, value=value, headers=headers)
    await (await producer.send_batch(batch, topic, partition=0))


def _router(cluster: Cluster, kit: Kit) -> Router:
    settings: Settings = cluster.settings_as(ROUTER)
    section = settings.router.model_copy(update={"redelivery_min": REDELIVERY_MIN})
    return Router(
        settings.model_copy(update={"router": section}),
        kit.directory,
        signer=kit.fed.signer(ServiceRole.ROUTER),
    )


def _check_dead_letter(
    c: HostileClass, expected: DeadLetter, attempt: Attempt, dead: Record
) -> list[str]:
    """What is wrong with the dead letter of ``attempt`` (nothing: ``[]``)."""
    problems: list[str] = []
    names = [n for n, _ in dead.headers]
    if dead.header("crb-reason") != expected.reason.value.encode():
        problems.append(f"{c.name}: reason {dead.header('crb-reason')!r}")
    if len(names) != len(set(names)) or not set(names) <= ROUTER_HEADERS:
        problems.append(f"{c.name}: dead-letter headers {sorted(names)}")
    spoofed = [h for h in attempt.headers if h[1] is not None and h in dead.headers]
    if spoofed:
        problems.append(f"{c.name}: the attacker's headers reached the dead letter: {spoofed}")
    original = attempt.value or b""
    if expected.truncated:
        doc = json.loads(dead.value or b"{}")
        if dead.header("crb-truncated") != b"1" or doc.get("size") != len(original):
            problems.append(f"{c.name}: not dead-lettered in the truncated form")
    elif dead.value != original or dead.header("crb-truncated") is not None:
        problems.append(f"{c.name}: the dead letter does not carry the original bytes")
    key = attempt.key
    if expected.key_truncated:
        assert key is not None
        if dead.key != key[:KEY_HEAD]:
            problems.append(f"{c.name}: the oversized key is not cut to its first bytes")
    elif dead.key != key:
        problems.append(f"{c.name}: the dead letter does not carry the original key")
    return problems


def _check_refusal(c: HostileClass, expected: KafkaRefused, denied: Denied) -> list[str]:
    ours = translate(denied.error)
    chain = [type(e).__name__ for e in _chain(denied.error)]
    if isinstance(ours, expected.error) and expected.kafka_error in chain:
        return []
    return [f"{c.name}: refused with {type(ours).__name__} {chain}, not {expected.describe()}"]


@pytest.mark.timeout(240)
async def test_hostile_records_never_reach_an_inbox_and_the_router_goes_on(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """Every class of the corpus, produced against a running router, is dead-lettered
    with exactly its reason (with the original bytes and key, or their truncated form,
    and none of the attacker's headers) or refused by Kafka with its error, and an
    aborted transaction's record is neither forwarded nor dead-lettered; every record
    is decided once (one audit entry each); no inbox holds anything but the two valid
    referrals; the referral sent after the corpus is forwarded, once."""
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    kit = Kit(utcnow())
    cluster = Cluster(kafka, tmp_path, kit.fed)
    await cluster.provision(kit.directory)
    names: TopicNames = cluster.names
    bootstrap = kafka.bootstrap
    router = _router(cluster, kit)
    attacker = Attacker(cluster)
    nl_inbox = names.inbox("nl.hotline")
    attempts = {c.name: c.build(kit) for c in CORPUS}
    results: dict[str, Produced | Denied] = {}
    try:
        async with running(router.run, router.ready, "router (partitions assigned)") as task:

            async def forwarded(n: int) -> bool:
                if task.done():
                    task.result()  # the router died: say why
                    raise AssertionError("the router stopped")
                return len(await read_all(bootstrap, nl_inbox)) >= n

            primer = await attacker.send(kit.envelope(kit.primer))
            assert isinstance(primer, Produced)
            await wait_until(
                lambda: forwarded(1), what="the primer forwarded", timeout_s=60, interval_s=0.2
            )
            for c in CORPUS:
                results[c.name] = await attacker.send(attempts[c.name])
            final = await attacker.send(kit.envelope(kit.final))
            assert isinstance(final, Produced)
            await wait_until(
                lambda: forwarded(2),
                what="the referral after the corpus forwarded",
                timeout_s=60,
                interval_s=0.2,
            )
            await wait_group_caught_up(
                bootstrap,
                cluster.settings.router.group_id,
                *(names.outbox(p) for p in PARTICIPANTS),
                what="the router committing past every outbox record",
            )
            assert not task.done(), "the router kept running through the whole corpus"
    finally:
        await attacker.close()

    dlq = {
        (r.header("crb-source-topic"), r.header("crb-source-offset")): r
        for r in await read_all(bootstrap, names.dlq)
    }
    problems: list[str] = []
    # What the audit topic must say, per outbox record.
    decided: dict[tuple[str, int], tuple[Verdict, str | None]] = {
        (p.tp.topic, p.offset): (Verdict.FORWARDED, None) for p in (primer, final)
    }
    for c in CORPUS:
        result, expected, attempt = results[c.name], c.expected, attempts[c.name]
        if isinstance(result, Denied):
            if isinstance(expected, KafkaRefused):
                problems += _check_refusal(c, expected, result)
            else:
                problems.append(f"{c.name}: refused by Kafka ({result.error!r})")
            continue
        if isinstance(expected, KafkaRefused):
            problems.append(f"{c.name}: Kafka took it at {result.tp}@{result.offset}")
            continue
        dead = dlq.pop((result.tp.topic.encode(), str(result.offset).encode()), None)
        if isinstance(expected, DroppedUncommitted):
            if dead is not None:
                problems.append(f"{c.name}: an aborted record was dead-lettered")
            continue
        decided[(result.tp.topic, result.offset)] = (Verdict.REJECTED, expected.reason.value)
        if dead is None:
            problems.append(f"{c.name}: not dead-lettered")
        else:
            problems += _check_dead_letter(c, expected, attempt, dead)
    assert [] == problems
    assert {} == dlq, "dead letters no hostile record explains"

    # Nothing reached an inbox: the two valid referrals are all there is, each once.
    for p in PARTICIPANTS:
        inbox = [r.value for r in await read_all(bootstrap, names.inbox(p))]
        assert ([kit.primer, kit.final] if p == "nl.hotline" else []) == inbox, p

    # Each committed outbox record was decided exactly once, as the dead letter says;
    # the aborted one not at all.
    audit = [
        AuditRecord.model_validate_json(r.value or b"")
        for r in await read_all(bootstrap, names.audit)
    ]
    entries = [(a.source_topic, a.source_offset) for a in audit]
    assert len(entries) == len(set(entries)), "a record decided twice"
    assert decided == {(a.source_topic, a.source_offset): (a.verdict, a.reason) for a in audit}
    assert 0 == router.unauthenticated


async def test_a_header_key_that_is_not_utf8_does_not_stop_the_router(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """A participant writes one batch into its own outbox: a valid referral, a record
    whose header key is not UTF-8 (Kafka takes it: header keys are bytes on the
    wire), another referral; then a valid referral in a batch of its own. aiokafka
    cannot decode the second record and raised ``UnicodeDecodeError`` from every
    poll of the partition — the router stopped for everyone, on every restart. Now
    the first referral is forwarded, the undecodable rest of the batch is
    dead-lettered as one ``malformed`` stand-in naming its offsets, and the router
    goes on with the next batch."""
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    kit = Kit(utcnow())
    cluster = Cluster(kafka, tmp_path, kit.fed)
    await cluster.provision(kit.directory)
    router = _router(cluster, kit)
    attacker = Attacker(cluster)
    outbox = cluster.names.outbox("de.hotline")
    before, behind = kit.referral(), kit.referral()
    producer = AIOKafkaProducer(**attacker.login_kwargs("de.hotline"), enable_idempotence=False)
    await producer.start()
    try:
        async with running(router.run, router.ready, "router (partitions assigned)") as task:
            batch = [(before, None), (b"not an envelope", b"\xff\xfe"), (behind, None)]
            await _raw_header_key(producer, outbox, batch)
            assert isinstance(await attacker.send(kit.envelope(kit.final)), Produced)

            async def forwarded() -> bool:
                if task.done():
                    task.result()  # raises what stopped the router
                inbox = await read_all(kafka.bootstrap, cluster.names.inbox("nl.hotline"))
                return [before, kit.final] == [r.value for r in inbox]

            await wait_until(
                forwarded, what="the referral behind it forwarded", timeout_s=60, interval_s=0.2
            )
    finally:
        await producer.stop()
        await attacker.close()
    (dead,) = await read_all(kafka.bootstrap, cluster.names.dlq)
    assert b"malformed" == dead.header("crb-reason")
    # The stand-in is at the batch's last offset and names what it replaces.
    assert b"2" == dead.header("crb-source-offset")
    stand_in = json.loads(dead.value or b"")
    assert (stand_in["first_offset"], stand_in["last_offset"]) == (1, 2)
    assert stand_in["unreadable"] is True
    assert stand_in["error"].startswith("UnicodeDecodeError: 'utf-8' codec can't decode")
    # Each offset decided once: 0 forwarded, the stand-in (2) rejected, 3 forwarded.
    audit = [
        AuditRecord.model_validate_json(r.value or b"")
        for r in await read_all(kafka.bootstrap, cluster.names.audit)
    ]
    assert sorted(
        (a.source_offset, a.verdict.value) for a in audit if a.source_topic == outbox
    ) == [
        (0, "forwarded"),
        (2, "rejected"),
        (3, "forwarded"),
    ]
