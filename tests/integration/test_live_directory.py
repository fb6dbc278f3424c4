"""The directory lives on Kafka: running services switch versions without a restart.

On the real, secured Kafka, with the router, the tracker and the adapters each
logged in as themselves and following the directory topic:

- a revocation published by the operator is enforced by the running router within
  one refresh, and the revoked participant's own Kafka client is refused once the
  ACLs follow (both latencies are measured and printed);
- a referral that was already on its way when its sender was revoked is delivered
  by the recipient (its key was valid when the router forwarded it) without a
  receipt — recorded as ``sender_revoked`` — the inbox goes on, and the tracker
  closes the handover with the same reason instead of letting it fail;
- a participant added while the router runs is routed from its first referral, even
  with a refresh interval far longer than the test: the router reads the directory
  topic before it refuses an unknown sender;
- rolled-back, foreign-signed and malformed records on the directory topic are
  refused and reported, and a valid version after them is still taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import keys
from adapters import (
    DirectoryFollower,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    Sender,
    StateStore,
    Submission,
)
from adapters.kafka import ROUTER, TRACKER, AccessDenied, OutRecord
from broker import acls
from broker.router import Router
from broker.settings import TrackerSettings
from broker.tracker import Tracker
from keys import LiveDirectory
from keys.testing import Federation, MemberSpec
from schemas import (
    DeliveryRule,
    Directory,
    HandoverState,
    ParticipantStatus,
    Reason,
    Role,
    RoutingRules,
    ServiceRole,
    utcnow,
)
from tests._fed import make_referral
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import read_all, running, wait_group_caught_up, wait_until
from tests.integration._secured import Cluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("be.hotline", "BE", (Role.HOTLINE,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)
RULES = RoutingRules(
    delivery=(DeliveryRule(roles=(Role.HOTLINE,)),),
    coordinator="int.coordinator",
    escalation_recipient="int.coordinator",
)


def _cluster(kafka: KafkaEndpoint, tmp: Path) -> Cluster:
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    start = utcnow() - timedelta(days=30)
    fed = Federation(MEMBERS, not_before=start, not_after=start + timedelta(days=365), rules=RULES)
    c = Cluster(kafka, tmp, fed)
    prefix = c.settings.topics.prefix
    tracker = TrackerSettings(group_id=f"{prefix}-tracker", poll_timeout_ms=100)
    c.settings = c.settings.model_copy(update={"tracker": tracker})
    return c


def _adapter(c: Cluster, participant: str, directory: Directory | LiveDirectory) -> Sender:
    """``participant``'s sending side, logged in as itself."""
    fed = c.fed
    me = Identity(participant, fed.signing(participant), (fed.opening(participant),), directory)
    outbox = Outbox.of(c.clients(participant), c.names, participant, c.settings.adapter)
    return Sender(me, outbox)


async def _dead_letters(c: Cluster, sender: str) -> set[int]:
    """Once the router committed past everything on ``sender``'s outbox: the outbox
    offsets it dead-lettered (the dead letters commit in the same transaction; a
    refused sender's header is not trusted, so they are found by source offset)."""
    outbox = c.names.outbox(sender)
    await wait_group_caught_up(
        c.settings.kafka.bootstrap,
        c.settings.router.group_id,
        outbox,
        what=f"the router deciding everything {sender} sent",
    )
    dead = await read_all(c.settings.kafka.bootstrap, c.names.dlq)
    return {
        int(r.header("crb-source-offset") or b"-1")
        for r in dead
        if r.header("crb-source-topic") == outbox.encode()
    }


@pytest.mark.timeout(300)
async def test_revocation_reaches_the_running_router_and_kafka_within_a_refresh(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    c = _cluster(kafka, tmp_path)
    fed, n = c.fed, c.names
    v1 = fed.directory()
    await c.provision(v1)
    router_clients = c.clients(ROUTER)
    router_live = LiveDirectory(v1, root=fed.root.verify_key)
    follower = DirectoryFollower(router_clients, n.directory, router_live)
    router = Router(
        c.settings_as(ROUTER),
        router_live,
        signer=fed.signer(ServiceRole.ROUTER),
        clients=router_clients,
        follower=follower,
    )
    tracker_clients = c.clients(TRACKER)
    tracker_live = LiveDirectory(v1, root=fed.root.verify_key)
    tracker_follower = DirectoryFollower(tracker_clients, n.directory, tracker_live)
    tracker = Tracker(
        c.settings_as(TRACKER),
        v1,
        clients=tracker_clients,
        directory=tracker_live,
        signer=fed.signer(ServiceRole.TRACKER),
        follower=tracker_follower,
    )

    def run_router(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return follower.alongside(router.run(stop))

    def run_tracker(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return tracker_follower.alongside(tracker.run(stop))

    # de.hotline's adapter keeps the directory it started with: it does not learn of
    # its own revocation (a stale or compromised sender).
    de = _adapter(c, "de.hotline", v1)
    async with (
        running(run_router, router.ready, "router"),
        running(run_tracker, tracker.ready, "tracker"),
    ):
        in_flight = de.seal_referral(Submission(make_referral(), "NL"))
        await de.send(in_flight)
        key = f"{in_flight.message_id}/nl.hotline"

        def routed() -> bool:
            h = tracker.ledger.get(key)
            return h is not None and h.state is HandoverState.ROUTED

        await wait_until(routed, what="the in-flight referral routed to nl.hotline")

        # `crb participant revoke de.hotline`: every key revoked, suspended, published.
        t0 = time.monotonic()
        revoked = keys.revoke(v1, "de.hotline", key_id=None, now=utcnow())
        revoked = keys.set_status(revoked, "de.hotline", ParticipantStatus.SUSPENDED, now=utcnow())
        await c.publish(revoked)
        published_s = time.monotonic() - t0

        # (a) The router refuses de.hotline's next message within one refresh.
        router_refused_s = None
        forwarded_meanwhile = 0
        for offset in range(1, 41):  # offset 0 is the in-flight referral
            attempt = de.seal_referral(Submission(make_referral(), "NL"))
            sent_at = time.monotonic()
            await de.send(attempt)
            if offset in await _dead_letters(c, "de.hotline"):
                router_refused_s = sent_at - t0
                break
            assert attempt.message_id in router.memory.seen, "neither forwarded nor refused"
            forwarded_meanwhile += 1
        assert router_refused_s is not None, "the router never refused the revoked sender"

        # (b) The ACLs follow (`crb acl apply`, run by the same command): the revoked
        # participant's already connected client is refused.
        producer = c.clients("de.hotline").producer()
        await producer.start()
        try:
            await producer.send_and_wait(OutRecord(n.outbox("de.hotline"), b"k", b"x"))
            report = await acls.apply(revoked, c.settings, c.admin, c.store, now=utcnow())
            assert ["de.hotline"] == report.users_removed
            kafka_refused_s = None
            for _ in range(100):
                try:
                    await producer.send_and_wait(OutRecord(n.outbox("de.hotline"), b"k", b"x"))
                except AccessDenied:
                    kafka_refused_s = time.monotonic() - t0
                    break
            assert kafka_refused_s is not None, "the revoked participant could still produce"
        finally:
            await producer.stop()
        with pytest.raises(AccessDenied):
            await c.clients("de.hotline").check_login()

        # The in-flight referral: the tracker closes it, it does not fail.
        def closed() -> bool:
            h = tracker.ledger.get(key)
            return h is not None and h.state is HandoverState.CLOSED

        await wait_until(closed, what="the tracker closing the in-flight handover")
        h = tracker.ledger.get(key)
        assert h is not None
        assert Reason.SENDER_REVOKED == h.history[-1].reason

        # The recipient, following the directory, delivers it unanswered and goes on.
        nl_live = LiveDirectory(revoked, root=fed.root.verify_key)
        nl = _adapter(c, "nl.hotline", nl_live)
        with StateStore(tmp_path / "nl-state") as store:
            receiver = Receiver(
                c.clients("nl.hotline"),
                n,
                c.settings.adapter,
                nl,
                FolderSink(tmp_path / "nl-inbox"),
                store,
            )
            stats = await asyncio.wait_for(receiver.run(asyncio.Event(), drain=True), 120)
            known = store.get(in_flight.message_id)
            assert known is not None
            assert (known.receipt_note or "").startswith("sender_revoked")
            notes = store.quarantined()
        assert 1 == stats.delivered
        assert forwarded_meanwhile == stats.quarantined
        assert {"key_revoked"} >= {str(q["reason"]) for q in notes}
        assert 0 == stats.retries, "the inbox partition was never blocked"
        await nl.outbox.stop()
    await de.outbox.stop()
    print(
        f"\n[revocation] published in {published_s:.3f}s; router refused the next message "
        f"{router_refused_s:.3f}s after the revoke began ({forwarded_meanwhile} forwarded "
        f"before it looked); Kafka refused the participant's client after "
        f"{kafka_refused_s:.3f}s; refresh interval {follower.interval_s:g}s"
    )


@pytest.mark.timeout(300)
async def test_a_participant_added_while_the_router_runs_is_routed_at_once(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """No ``unknown_sender`` for the first referral of a participant added a moment
    ago, although the router's periodic refresh would only come in five minutes."""
    c = _cluster(kafka, tmp_path)
    fed, n = c.fed, c.names
    v1 = fed.directory(without=["be.hotline"])
    await c.provision(v1)
    clients = c.clients(ROUTER)
    live = LiveDirectory(v1, root=fed.root.verify_key)
    follower = DirectoryFollower(clients, n.directory, live, interval_s=300)
    router = Router(
        c.settings_as(ROUTER),
        live,
        signer=fed.signer(ServiceRole.ROUTER),
        clients=clients,
        follower=follower,
    )

    def run_router(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return follower.alongside(router.run(stop))

    async with running(run_router, router.ready, "router"):
        # `crb participant add be.hotline`: topics, publish, user and ACLs.
        v2 = keys.add_participant(v1, fed.participant("be.hotline"), now=utcnow())
        await c.operate(v2)
        be = _adapter(c, "be.hotline", v2)
        sealed = be.seal_referral(Submission(make_referral(), "NL"))
        await be.send(sealed)
        dead = await _dead_letters(c, "be.hotline")
        await be.outbox.stop()
    assert set() == dead
    assert sealed.message_id in router.memory.seen
    assert 2 == router.live.version
    assert 2 == follower.refreshes, "one read at start, one before refusing"


@pytest.mark.timeout(120)
async def test_bad_directory_records_are_refused_and_a_valid_one_still_taken(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """What a thief of the admin login — or a bug — could put on the topic: an old
    version, one signed by another root, garbage. A participant's follower refuses
    each, keeps its version, and takes the next valid one."""
    c = _cluster(kafka, tmp_path)
    fed, n = c.fed, c.names
    v1 = fed.directory()
    await c.provision(v1)
    v2 = keys.set_status(v1, "be.hotline", ParticipantStatus.SUSPENDED, now=utcnow())
    await c.publish(v2)
    live = LiveDirectory(v1, root=fed.root.verify_key)
    follower = DirectoryFollower(c.clients("nl.hotline"), n.directory, live)
    await follower.start()
    try:
        assert (2, 0) == (live.version, live.refused)
        impostor = Federation(
            MEMBERS,
            not_before=fed.not_before,
            not_after=fed.not_after,
            rules=RULES,
            federation_id=v1.federation_id,
        )
        producer = c.admin.producer()
        await producer.start()
        try:
            for value in (
                fed.signed(v1).to_json(),  # rollback
                impostor.signed(impostor.directory(version=9)).to_json(),  # foreign root
                b'{"directory": "garbage"}',
            ):
                await producer.send_and_wait(OutRecord(n.directory, b"k", value))
        finally:
            await producer.stop()
        assert not await follower.refresh()
        assert (2, 3) == (live.version, live.refused)
        v3 = keys.set_status(v2, "be.hotline", ParticipantStatus.ACTIVE, now=utcnow())
        await c.publish(v3)
        assert await follower.refresh()
        assert (3, 3) == (live.version, live.refused)
    finally:
        await follower.stop()
