"""The first lock on the real Kafka: who may do what, generated from the directory.

Each participant — including ``de.a`` and ``de.ab``, whose ids share a prefix — and
each service tries, with its own SCRAM login, every operation on every other
participant's topics and on the federation's shared topics and resources:
produce, consume, join or describe a group, use a service's transactional id,
create/delete/alter topics, grant ACLs, create users, list topics. Every attempt
the plan does not grant must be refused; every attempt it grants must succeed
(positive controls, so a refusal is never vacuous). Then the anonymous, the wrong
password, the unknown user, and a participant revoked by ``crb acl apply``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from adapters.kafka import (
    ROUTER,
    TRACKER,
    AccessDenied,
    Credential,
    Grant,
    KafkaClients,
    KafkaSettings,
    OutRecord,
    Partition,
    Refused,
    Unavailable,
    client_kwargs,
    read_topic,
)
from broker import acls
from keys import set_status
from schemas import ParticipantStatus, TopicNames, utcnow
from tests.conftest import KafkaEndpoint
from tests.integration._secured import Cluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTICIPANTS = ("de.a", "de.ab", "nl.hotline")


@dataclass
class Matrix:
    """Attempts and their outcomes; ``wrong`` lists the ones that broke the plan."""

    attempts: int = 0
    refused: int = 0
    allowed: int = 0
    wrong: list[str] = field(default_factory=list)

    async def attempt(
        self,
        who: str,
        what: str,
        allowed: bool,
        op: Awaitable[object],
        *,
        refusals: tuple[type[Exception], ...] = (AccessDenied,),
    ) -> None:
        self.attempts += 1
        try:
            await asyncio.wait_for(op, 60)
        except refusals:
            ok = False
        except Refused as exc:
            if "Authorization" not in str(exc) and "authoriz" not in str(exc).lower():
                raise
            ok = False
        else:
            ok = True
        if ok:
            self.allowed += 1
        else:
            self.refused += 1
        if ok != allowed:
            self.wrong.append(f"{who} {what}: {'allowed' if ok else 'refused'}")


def _seeds(n: TopicNames) -> list[str]:
    """A record on every topic a consume attempt reads, so an allowed read is never
    vacuous (the directory topic already holds the published directory)."""
    shared = [n.audit, n.dlq, n.status, n.tracker]
    return [n.outbox(p) for p in PARTICIPANTS] + [n.inbox(p) for p in PARTICIPANTS] + shared


async def _produce(clients: KafkaClients, topic: str) -> None:
    producer = clients.producer()
    await producer.start()
    try:
        await producer.send_and_wait(OutRecord(topic, b"k", b"attempt"))
    finally:
        await producer.stop()


async def _consume(clients: KafkaClients, topic: str) -> None:
    got: list[object] = []
    await read_topic(clients, topic, got.append)
    assert got, f"{topic}: read nothing although a record is there"


async def _join(clients: KafkaClients, group: str, topic: str) -> None:
    consumer = clients.consumer(group_id=group)
    await consumer.start()
    try:
        consumer.subscribe(topics=[topic])
        for _ in range(100):
            await consumer.poll(timeout_ms=200)
            if consumer.assignment():
                return
        raise AssertionError(f"{group}: no assignment")
    finally:
        await consumer.stop()


async def _transactional(clients: KafkaClients, transactional_id: str) -> None:
    producer = clients.transactional_producer(transactional_id)
    await producer.start()
    await producer.stop()


async def _create_topic(clients: KafkaClients, name: str) -> None:
    async with clients.admin() as admin:
        problems = await admin.create_topics([(name, 1, 1, {})])
    if problems:
        raise AccessDenied(problems[0][1])


async def _delete_topic(clients: KafkaClients, name: str) -> None:
    async with clients.admin() as admin:
        await admin.delete_topics([name])


async def _alter_config(clients: KafkaClients, name: str) -> None:
    async with clients.admin() as admin:
        await admin.alter_topic_config(name, {"max.message.bytes": "104857600"})


async def _describe_group(clients: KafkaClients, group: str) -> None:
    consumer = clients.consumer(group_id=group)
    await consumer.start()
    try:
        await consumer.committed(Partition("x", 0))
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
async def test_access_matrix_generated_from_the_directory(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """Every forbidden attempt is refused, every granted one succeeds: 0 forbidden
    successes, over every participant against every other and every shared topic."""
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    c = Cluster(kafka, tmp_path)
    await c.provision(seed=_seeds(c.names))
    n = c.names
    m = Matrix()
    s = c.settings
    shared = {"audit": n.audit, "dlq": n.dlq, "status": n.status, "tracker": n.tracker}
    for p in PARTICIPANTS:
        me = c.clients(p)
        others = [q for q in PARTICIPANTS if q != p]
        await m.attempt(p, "produce own outbox", True, _produce(me, n.outbox(p)))
        await m.attempt(p, "produce own inbox", False, _produce(me, n.inbox(p)))
        await m.attempt(p, "consume own inbox", True, _consume(me, n.inbox(p)))
        await m.attempt(p, "consume own outbox", False, _consume(me, n.outbox(p)))
        await m.attempt(p, "consume directory", True, _consume(me, n.directory))
        await m.attempt(p, "produce directory", False, _produce(me, n.directory))
        for label, topic in shared.items():
            await m.attempt(p, f"produce {label}", False, _produce(me, topic))
            await m.attempt(p, f"consume {label}", False, _consume(me, topic))
        for q in others:
            await m.attempt(p, f"produce {q} outbox", False, _produce(me, n.outbox(q)))
            await m.attempt(p, f"produce {q} inbox", False, _produce(me, n.inbox(q)))
            await m.attempt(p, f"consume {q} inbox", False, _consume(me, n.inbox(q)))
            await m.attempt(p, f"consume {q} outbox", False, _consume(me, n.outbox(q)))
            group = f"{s.adapter.group_id_prefix}.{q}"
            await m.attempt(p, f"join {q}'s group", False, _join(me, group, n.inbox(p)))
            await m.attempt(p, f"describe {q}'s group", False, _describe_group(me, group))
            await m.attempt(p, f"delete {q} outbox", False, _delete_topic(me, n.outbox(q)))
            await m.attempt(p, f"alter {q} outbox", False, _alter_config(me, n.outbox(q)))
        own_group = f"{s.adapter.group_id_prefix}.{p}"
        await m.attempt(p, "join own group", True, _join(me, own_group, n.inbox(p)))
        router_txn = f"{s.router.transactional_id_prefix}.{n.outbox(p)}.0"
        await m.attempt(p, "use router txn id", False, _transactional(me, router_txn))
        tracker_txn = s.tracker.transactional_id or f"{s.topics.prefix}-tracker"
        await m.attempt(p, "use tracker txn id", False, _transactional(me, tracker_txn))
        await m.attempt(p, "create topic", False, _create_topic(me, f"{n.prefix}.evil.{p}"))
        grant = Grant(p, "TOPIC", n.inbox(others[0]), "READ")
        await m.attempt(p, "grant itself an ACL", False, me.security().create([grant]))
        evil = Credential.generate(f"{p}-evil")
        await m.attempt(p, "create a user", False, me.security().upsert_users([evil]))
        async with me.admin() as admin:
            visible = {t for t in await admin.list_topics() if t.startswith(f"{n.prefix}.")}
        assert {n.outbox(p), n.inbox(p), n.directory} == visible, p

    router, tracker = c.clients(ROUTER), c.clients(TRACKER)
    for p in PARTICIPANTS:
        await m.attempt(ROUTER, f"consume {p} outbox", True, _consume(router, n.outbox(p)))
        await m.attempt(ROUTER, f"produce {p} inbox", True, _produce(router, n.inbox(p)))
        await m.attempt(ROUTER, f"produce {p} outbox", False, _produce(router, n.outbox(p)))
        await m.attempt(ROUTER, f"consume {p} inbox", False, _consume(router, n.inbox(p)))
        await m.attempt(TRACKER, f"consume {p} outbox", False, _consume(tracker, n.outbox(p)))
    await m.attempt(ROUTER, "produce dlq", True, _produce(router, n.dlq))
    await m.attempt(ROUTER, "consume audit", True, _consume(router, n.audit))
    await m.attempt(ROUTER, "produce directory", False, _produce(router, n.directory))
    await m.attempt(ROUTER, "produce tracker state", False, _produce(router, n.tracker))
    await m.attempt(TRACKER, "produce status", True, _produce(tracker, n.status))
    await m.attempt(TRACKER, "consume tracker state", True, _consume(tracker, n.tracker))
    await m.attempt(TRACKER, "produce audit", False, _produce(tracker, n.audit))
    await m.attempt(TRACKER, "produce dlq", False, _produce(tracker, n.dlq))

    # Logins that must not work at all. Without SASL the listener answers nothing but
    # its API versions and drops the connection: the client sees no usable cluster.
    base = s.kafka
    nobody = KafkaSettings(bootstrap=base.bootstrap)
    for what, op in (
        ("produce de.a outbox", _produce_login(nobody, n.outbox("de.a"))),
        ("consume de.a inbox", _consume(KafkaClients(nobody), n.inbox("de.a"))),
    ):
        await m.attempt("anonymous", what, False, op, refusals=(AccessDenied, Unavailable))
    wrong = Credential(username="de.a", password=SecretStr("not-the-password")).apply(base)
    unknown = Credential.generate("xx.unknown").apply(base)
    for who, settings in (("wrong password", wrong), ("unknown user", unknown)):
        await m.attempt(who, "log in", False, KafkaClients(settings).check_login())
        await m.attempt(
            who, "produce de.a outbox", False, _produce_login(settings, n.outbox("de.a"))
        )

    # A participant revoked by the operator loses its login and its ACLs.
    revoked = set_status(c.fed.directory(), "de.ab", ParticipantStatus.SUSPENDED, now=utcnow())
    report = await acls.apply(revoked, s, c.admin, c.store, now=utcnow())
    assert ["de.ab"] == report.users_removed
    assert report.removed
    assert {"de.ab"} == {g.principal for g in report.removed}
    await m.attempt("de.ab (revoked)", "log in", False, c.clients("de.ab").check_login())
    await m.attempt(
        "de.a", "still produce own outbox", True, _produce(c.clients("de.a"), n.outbox("de.a"))
    )

    print(
        f"\n[access] attempts={m.attempts} refused={m.refused} allowed={m.allowed} wrong={m.wrong}"
    )
    assert [] == m.wrong
    assert m.allowed >= 20
    assert m.refused >= 100


async def _produce_login(settings: KafkaSettings, topic: str) -> None:
    await _produce(KafkaClients(settings), topic)


@pytest.mark.timeout(300)
async def test_access_subset_on_three_brokers(kafka_cluster: KafkaEndpoint, tmp_path: Path) -> None:
    """On a three-broker cluster the same plan holds: own outbox allowed, a
    prefix-sharing neighbour's outbox and inbox refused, no anonymous login. The
    topics get replication 3 and min ISR 2 without being told (the default follows
    the cluster)."""
    c = Cluster(kafka_cluster, tmp_path)
    assert c.settings.topics.replication is None
    await c.provision(seed=_seeds(c.names))
    admin = AIOKafkaAdminClient(**client_kwargs(kafka_cluster.settings))
    await admin.start()
    try:
        ours = [
            t for t in await admin.list_topics() if t.startswith(c.settings.topics.prefix + ".")
        ]
        replicas = {
            len(p["replicas"]) for t in await admin.describe_topics(ours) for p in t["partitions"]
        }
    finally:
        await admin.close()
    assert len(ours) > 10
    assert replicas == {3}
    async with KafkaClients(kafka_cluster.settings).admin() as ours_admin:
        described = await ours_admin.describe(ours)
    assert {d.config.get("min.insync.replicas") for d in described.values()} == {"2"}
    n, m = c.names, Matrix()
    a = c.clients("de.a")
    await m.attempt("de.a", "produce own outbox", True, _produce(a, n.outbox("de.a")))
    await m.attempt("de.a", "consume own inbox", True, _consume(a, n.inbox("de.a")))
    await m.attempt("de.a", "produce de.ab outbox", False, _produce(a, n.outbox("de.ab")))
    await m.attempt("de.a", "consume de.ab inbox", False, _consume(a, n.inbox("de.ab")))
    await m.attempt(
        "de.ab", "consume de.a inbox", False, _consume(c.clients("de.ab"), n.inbox("de.a"))
    )
    nobody = KafkaSettings(bootstrap=kafka_cluster.bootstrap)
    await m.attempt(
        "anonymous",
        "produce de.a outbox",
        False,
        _produce_login(nobody, n.outbox("de.a")),
        refusals=(AccessDenied, Unavailable),
    )
    print(f"\n[access 3 brokers] attempts={m.attempts} refused={m.refused} allowed={m.allowed}")
    assert [] == m.wrong
