"""The router against a real Kafka: delivery, rejection, audit, receipts, two instances."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from structlog.testing import capture_logs

from adapters.kafka import KafkaClients, Unavailable
from broker import topics
from broker.audit import AuditRecord, chain_next, verify_chains
from broker.router import Router
from broker.router._store import RouterSnapshot
from broker.settings import Settings
from schemas import Priority, ServiceRole, StatusEvent, TopicNames
from tests._fed import LiveFederation, now, settings_for, unique_prefix
from tests._kafka import kafka_kwargs
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import (
    drain,
    group_assignment,
    read_all,
    running,
    wait_group_caught_up,
    wait_until,
)

pytestmark = pytest.mark.kafka


@contextlib.asynccontextmanager
async def running_router(
    settings: Settings, fed: LiveFederation, *, without: tuple[str, ...] = ()
) -> AsyncIterator[Router]:
    router = Router(settings, fed.directory(without=without), signer=fed.signer(ServiceRole.ROUTER))
    async with running(router.run, router.ready, "router (partitions assigned)"):
        yield router


async def _produce(bootstrap: str, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for topic, value in items:
            await producer.send(topic, value, key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


async def _setup(kafka: KafkaEndpoint, partitions: int = 1) -> tuple[Settings, LiveFederation]:
    fed = LiveFederation()
    settings = settings_for(kafka.bootstrap, unique_prefix(), partitions=partitions)
    created, drift = await topics.apply(
        fed.directory(), KafkaClients(settings.kafka), settings.topics
    )
    assert drift == []
    assert len(created) == 2 * 6 + 6
    # Idempotent: a second apply creates nothing and reports no drift.
    assert await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics) == (
        [],
        [],
    )
    return settings, fed


def _ids(records: list) -> list[bytes]:  # type: ignore[type-arg]
    return [dict(r.headers)["crb-message-id"] for r in records]


def _forwarded(router: Router) -> float:
    """The router's ``crb_router_forwarded_total``, as its /metrics text shows it."""
    for line in router.metrics.render().decode().splitlines():
        name, _, value = line.partition(" ")
        if name == "crb_router_forwarded_total":
            return float(value)
    raise AssertionError("crb_router_forwarded_total is not in the router's metrics")


async def test_single_fanout_urgent_and_orphan_delivery(kafka: KafkaEndpoint) -> None:
    """Routine NL goes to the NL hotline; urgent NL also to the 24/7 police contact;
    FR (no receiver) to the coordinator — each exactly once, byte-identical, with
    ROUTED status events and an audit chain that verifies."""
    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    routine = fed.referral()
    urgent = fed.referral(priority=Priority.URGENT)
    orphan = fed.referral(jurisdiction="FR")
    outbox = names.outbox("de.hotline")
    async with running_router(settings, fed):
        await _produce(kafka.bootstrap, [(outbox, routine), (outbox, urgent), (outbox, orphan)])
        nl_hotline = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=2)
        nl_24 = await drain(kafka.bootstrap, names.inbox("nl.police24"), expect=1)
        coord = await drain(kafka.bootstrap, names.inbox("int.coordinator"), expect=1)
    assert [r.value for r in nl_hotline] == [routine, urgent]
    assert [r.value for r in nl_24] == [urgent]
    assert [r.value for r in coord] == [orphan]
    # All three were decided (each is in an inbox above) and committed with everything
    # its decision wrote: a leak would already be there to read.
    for inbox in ("nl.police", "de.police", "de.hotline"):
        assert await read_all(kafka.bootstrap, names.inbox(inbox)) == []
    statuses = [
        StatusEvent.model_validate_json(r.value or b"")
        for r in await drain(kafka.bootstrap, names.status, expect=4)
    ]
    assert Counter(s.state.value for s in statuses) == {"routed": 4}
    orphan_events = [s for s in statuses if s.recipient == "int.coordinator"]
    assert [e.reason.value if e.reason else None for e in orphan_events] == ["orphan"]
    audit_rows = [
        (str(r.offset), r.value or b"") for r in await drain(kafka.bootstrap, names.audit, expect=3)
    ]
    counts, breaks = verify_chains(audit_rows, authentic=fed.authentic)
    assert sum(counts.values()) == 3
    assert breaks == []


async def test_every_rejection_lands_in_the_dlq_and_never_in_an_inbox(
    kafka: KafkaEndpoint,
) -> None:
    """Garbage, oversize-free malformed framing, a foreign outbox, a tampered byte, a
    stale message, a duplicate and an unknown sender each go to the DLQ with their
    reason and original bytes; the one valid referral is delivered once; the router
    keeps running throughout."""
    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    valid = fed.referral()
    tampered = bytearray(fed.referral())
    tampered[-100] ^= 0x01
    stale = fed.referral(at=now() - timedelta(days=3))
    ghost_fed = LiveFederation()  # same ids, other keys: an impostor
    impostor = ghost_fed.referral()
    mismatch = fed.referral(recipients=("int.coordinator",))
    unknown = fed.referral(sender="de.police")  # the router's directory lacks de.police
    items = [
        (names.outbox("de.hotline"), b"not an envelope"),
        (names.outbox("nl.hotline"), fed.referral()),  # de.hotline's envelope, wrong outbox
        (names.outbox("de.hotline"), bytes(tampered)),
        (names.outbox("de.hotline"), stale),
        (names.outbox("de.hotline"), valid),
        (names.outbox("de.hotline"), valid),  # duplicate
        (names.outbox("de.hotline"), impostor),
        (names.outbox("de.hotline"), mismatch),
        (names.outbox("de.police"), unknown),
    ]
    async with running_router(settings, fed, without=("de.police",)):
        await _produce(kafka.bootstrap, items)
        # Every record decided: its input offset commits with all its decision wrote.
        await wait_group_caught_up(
            kafka.bootstrap,
            settings.router.group_id,
            *sorted({topic for topic, _ in items}),
            what="the router committing past all nine outbox records",
        )
        dlq = await read_all(kafka.bootstrap, names.dlq)
        inbox = await read_all(kafka.bootstrap, names.inbox("nl.hotline"))
    reasons = Counter(dict(r.headers)["crb-reason"].decode() for r in dlq)
    assert reasons == Counter(
        {
            "malformed": 1,
            "wrong_outbox": 1,
            "bad_signature": 1,
            "unknown_key": 1,  # the impostor signs with a key the directory does not list
            "unknown_sender": 1,
            "stale": 1,
            "duplicate_message": 1,
            "recipient_mismatch": 1,
        }
    )
    assert [r.value for r in inbox] == [valid]
    by_reason = {dict(r.headers)["crb-reason"]: r for r in dlq}
    assert by_reason[b"malformed"].value == b"not an envelope"
    assert by_reason[b"stale"].value == stale
    assert (
        dict(by_reason[b"stale"].headers)["crb-source-topic"] == names.outbox("de.hotline").encode()
    )
    # All nine were decided and committed (above): a leak would already be there to read.
    for inbox_owner in ("de.hotline", "nl.police", "nl.police24", "int.coordinator"):
        leaked = await read_all(kafka.bootstrap, names.inbox(inbox_owner))
        assert [r.value for r in leaked if r.value != valid] == []


async def test_receipt_flows_back_to_the_sender_and_a_forged_audit_link_is_ignored(
    kafka: KafkaEndpoint,
) -> None:
    """A receipt from the NL hotline reaches de.hotline's inbox through the same
    checks. Then a well-formed forged audit link — next seq, right previous hash,
    valid hash, claiming source offset 99 — is appended: ``verify_chains`` names it as
    unsigned, and a restarted router does not take its word: the next genuine
    referral on that partition (offset 1) is forwarded, not skipped, and its audit
    record links to the last authentic one."""
    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    original = fed.referral()
    async with running_router(settings, fed):
        await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), original)])
        (delivered,) = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1)
        assert original == delivered.value
        receipt = fed.receipt(original, by="nl.hotline")
        await _produce(kafka.bootstrap, [(names.outbox("nl.hotline"), receipt)])
        back = await drain(kafka.bootstrap, names.inbox("de.hotline"), expect=1)
    assert [r.value for r in back] == [receipt]

    async def audit_rows() -> list[tuple[str, bytes]]:
        return [(r.where, r.value or b"") for r in await read_all(kafka.bootstrap, names.audit)]

    rows = await audit_rows()
    assert verify_chains(rows, authentic=fed.authentic)[1] == []
    first = next(
        AuditRecord.model_validate_json(v)
        for _, v in rows
        if AuditRecord.model_validate_json(v).source_topic == names.outbox("de.hotline")
    )
    forged = chain_next(first, first.model_copy(update={"source_offset": 99}))
    assert forged.computed_hash() == forged.hash
    assert forged.prev == first.hash
    await _produce(kafka.bootstrap, [(names.audit, forged.to_bytes())])
    _, breaks = verify_chains(await audit_rows(), authentic=fed.authentic)
    assert [first.chain] == [b.chain for b in breaks]
    assert "not signed by a router key" in breaks[0].problem

    second = fed.referral()
    async with running_router(settings, fed) as router:
        await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), second)])
        inbox = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=2)
    assert [original, second] == [r.value for r in inbox]
    assert 1 == router.unauthenticated
    counts, breaks = verify_chains(await audit_rows(), authentic=fed.authentic)
    assert 1 == len(breaks), "only the forged record; the genuine chain goes on"
    assert 2 == counts[first.chain]


async def test_two_routers_in_one_group_forward_exactly_once(kafka: KafkaEndpoint) -> None:
    """Two router instances share the outbox partitions; 300 referrals over three
    partitions arrive in the inbox exactly once each, and each router forwarded some
    of them (its /metrics count), the two counts adding up to the 300."""
    settings, fed = await _setup(kafka, partitions=3)
    names = TopicNames(settings.topics.prefix)
    outbox = names.outbox("de.hotline")
    envelopes = [fed.referral() for _ in range(300)]
    producer = AIOKafkaProducer(
        **kafka_kwargs(kafka.bootstrap), acks="all", enable_idempotence=True
    )
    async with running_router(settings, fed) as first, running_router(settings, fed) as second:

        async def both_own_outbox_partitions() -> bool:
            state, members = await group_assignment(kafka.bootstrap, settings.router.group_id)
            return (
                "Stable" == state
                and 2 == len(members)
                and all(any(p.topic == outbox for p in m) for m in members)
            )

        await wait_until(
            both_own_outbox_partitions,
            what="the group stable with both routers, each assigned a de.hotline outbox partition",
            timeout_s=60,
            interval_s=0.2,
        )
        await producer.start()
        try:
            for i, env in enumerate(envelopes):
                await producer.send(outbox, env, partition=i % 3)
            await producer.flush()
        finally:
            await producer.stop()
        inbox = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=300, timeout_s=90)
        # A router counts a forward just after its transaction commits.
        await wait_until(
            lambda: 300 == _forwarded(first) + _forwarded(second),
            what="the two routers' forwarded counts adding up to 300",
        )
        assert _forwarded(first) > 0
        assert _forwarded(second) > 0
    ids = Counter(_ids(inbox))
    assert len(ids) == 300
    assert max(ids.values()) == 1


@pytest.mark.timeout(180)
async def test_an_oversized_record_is_dead_lettered_truncated_and_the_partition_goes_on(
    kafka: KafkaEndpoint,
) -> None:
    """An outbox whose size limit was raised (only the admin may) lets a 3 MiB record
    in, more than the dead-letter topic takes: the router dead-letters it as size,
    digest and first bytes, and the valid referral behind it on the same partition
    is forwarded — the partition is not wedged."""
    import hashlib
    import json

    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    outbox = names.outbox("de.hotline")
    async with KafkaClients(kafka.settings).admin() as admin:
        await admin.alter_topic_config(outbox, {"max.message.bytes": str(4 << 20)})
    huge = bytes(range(256)) * (3 * 4096)  # 3 MiB
    valid = fed.referral()
    producer = AIOKafkaProducer(
        **kafka_kwargs(kafka.bootstrap), acks="all", max_request_size=4 << 20
    )
    await producer.start()
    try:
        await producer.send_and_wait(outbox, huge, key=b"k")
        await producer.send_and_wait(outbox, valid, key=b"k")
    finally:
        await producer.stop()
    async with running_router(settings, fed):
        (delivered,) = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1)
        await wait_group_caught_up(
            kafka.bootstrap, settings.router.group_id, outbox, what="both records decided"
        )
    assert valid == delivered.value
    (dead,) = await read_all(kafka.bootstrap, names.dlq)
    assert dead.header("crb-truncated") == b"1"
    assert dead.header("crb-reason") == b"too_large"
    doc = json.loads(dead.value or b"")
    assert (doc["size"], doc["sha256"]) == (len(huge), hashlib.sha256(huge).hexdigest())


async def test_traces_cross_the_router_and_batches_are_spans(kafka: KafkaEndpoint) -> None:
    """A referral's traceparent continues (same trace id, new span) on its inbox
    copies and its status events; the router opens one OpenTelemetry span per
    transaction, linked to the trace of every record in it — not one per record."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from adapters.kafka import new_traceparent, trace_id, traceparent_of

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    parents = [new_traceparent() for _ in range(5)]
    referrals = [fed.referral() for _ in parents]
    router = Router(
        settings,
        fed.directory(),
        signer=fed.signer(ServiceRole.ROUTER),
        tracer=provider.get_tracer("test"),
    )
    producer = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), acks="all")
    await producer.start()
    try:
        for tp, value in zip(parents, referrals, strict=True):
            await producer.send(
                names.outbox("de.hotline"), value, key=b"k", headers=[("traceparent", tp.encode())]
            )
        await producer.flush()
    finally:
        await producer.stop()
    async with running(router.run, router.ready, "router (partitions assigned)"):
        inbox = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=5)
        status = await drain(kafka.bootstrap, names.status, expect=5)
    wanted = [str(trace_id(tp)) for tp in parents]
    assert wanted == [str(trace_id(traceparent_of(r.headers))) for r in inbox]
    assert all(traceparent_of(r.headers) not in parents for r in inbox)  # new span ids
    assert sorted(wanted) == sorted(str(trace_id(traceparent_of(r.headers))) for r in status)
    spans = [s for s in exporter.get_finished_spans() if s.name == "router.batch"]
    assert 1 <= len(spans) <= 5
    linked = [format(link.context.trace_id, "032x") for s in spans for link in s.links]
    assert sorted(wanted) == sorted(linked)
    counts = [dict(s.attributes or {}).get("messaging.batch.message_count") for s in spans]
    assert 5 == sum(int(c) for c in counts if isinstance(c, int))


async def test_a_restart_reads_only_what_its_snapshot_has_not_seen(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """With a snapshot, a restarted router reads the audit topic only from its last
    checkpoint: after a clean stop nothing but what was appended since (here one
    forged link, refused); yet it still knows every forwarded message — a resent
    referral is a duplicate, a receipt to an earlier one is authorised. A snapshot
    whose positions the topic no longer has is discarded and rebuilt from the
    beginning, with the same memory."""
    settings, fed = await _setup(kafka)
    path = tmp_path / "router" / "memory.sqlite"
    section = settings.router.model_copy(update={"snapshot": path, "checkpoint_s": 0.2})
    settings = settings.model_copy(update={"router": section})
    names = TopicNames(settings.topics.prefix)
    a, b, c = fed.referral(), fed.referral(), fed.referral()
    async with running_router(settings, fed) as router:
        assert router.restored["from_snapshot"] is False
        await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), v) for v in (a, b, c)])
        await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=3)
    assert path.exists()

    rows = await read_all(kafka.bootstrap, names.audit)
    last = AuditRecord.model_validate_json(rows[-1].value or b"")
    forged = chain_next(last, last.model_copy(update={"source_offset": 99}))
    await _produce(kafka.bootstrap, [(names.audit, forged.to_bytes())])

    receipt = fed.receipt(b, by="nl.hotline")
    async with running_router(settings, fed) as router:
        assert router.restored["from_snapshot"] is True
        assert 0 == router.restored["audit_records_read"], "only the forged link was new"
        assert 1 == router.unauthenticated
        resent = [(names.outbox("de.hotline"), a), (names.outbox("nl.hotline"), receipt)]
        await _produce(kafka.bootstrap, resent)
        (back,) = await drain(kafka.bootstrap, names.inbox("de.hotline"), expect=1)
        (dead,) = await drain(kafka.bootstrap, names.dlq, expect=1)
    assert receipt == back.value
    assert (b"duplicate_message", a) == (dict(dead.headers)["crb-reason"], dead.value)

    snapshot = RouterSnapshot.open(path, names.audit)
    assert snapshot is not None
    heads, _ = snapshot.load()
    snapshot.checkpoint(heads, {0: 10**9})  # past the end: the topic is not this one
    snapshot.close()
    async with running_router(settings, fed) as router:
        assert router.restored["from_snapshot"] is False
        assert 5 == router.restored["audit_records_read"], "3 forwards, a receipt, a duplicate"
        assert 1 == router.unauthenticated
        await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), c)])
        dead_letters = await drain(kafka.bootstrap, names.dlq, expect=2)
    assert c == dead_letters[-1].value


async def test_no_decision_before_the_audit_read_after_assignment_succeeds(
    kafka: KafkaEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos run: the settled audit read after taking partitions can fail
    (a transaction Kafka cannot resolve yet holds the audit partition). It ran in the
    rebalance callback, whose exception aiokafka only logs: the router then decided on
    a memory without the previous owner's last commits and forwarded some messages
    twice. Now nothing is decided until that read succeeds; the records polled
    meanwhile are read again, and each is forwarded once."""
    settings, fed = await _setup(kafka)
    names = TopicNames(settings.topics.prefix)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    events: list[str] = []
    failures = 2
    real_catch_up, real_decide = router.catch_up, router._decide

    async def catch_up(*, settle: bool = True) -> int:
        nonlocal failures
        if settle and failures:
            failures -= 1
            events.append("audit read failed")
            raise Unavailable("the audit partition is held by an open transaction (test)")
        applied = await real_catch_up(settle=settle)
        events.append("audit read" if settle else "start-up read")
        return applied

    async def decide(tp: Any, records: Any) -> Any:
        events.append("decide")
        return await real_decide(tp, records)

    monkeypatch.setattr(router, "catch_up", catch_up)
    monkeypatch.setattr(router, "_decide", decide)
    referrals = [fed.referral(), fed.referral()]
    # Waiting before the router starts: its first poll after the assignment has them.
    await _produce(kafka.bootstrap, [(names.outbox("de.hotline"), v) for v in referrals])
    with capture_logs() as logs:
        async with running(router.run, router.ready, "router (partitions assigned)"):
            inbox = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=2)
    assert [r.value for r in inbox] == referrals
    assert events[: events.index("decide")] == [
        "start-up read",
        "audit read failed",
        "audit read failed",
        "audit read",
    ]
    warned = [e for e in logs if e["event"] == "audit_catch_up_failed"]
    assert [(e["attempt"], e["retriable"]) for e in warned] == [(1, True), (2, True)]
    assert not [e for e in logs if e["log_level"] == "error"]
