"""A dead letter redriven once its cause is fixed ends received; what can never
succeed is refused — on the real, secured Kafka, every service logged in as itself.

de.hotline is suspended when it sends: the router dead-letters the referral
(``sender_suspended``). The operator reinstates it, and redrives the dead letter
through the tracker's API: the same bytes go back into de.hotline's outbox, the
router forwards them, nl.hotline receives and answers, and the tracker shows the
handover received. A second redrive, a participant's token, and an envelope put
in another participant's outbox are refused; the redrive is on the actions topic,
signed by the tracker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
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
from adapters.kafka import ROUTER, TRACKER, OutRecord, signed_by
from broker.router import Router
from broker.settings import TrackerSettings
from broker.tracker import OPERATOR, Access, Tracker, create_app
from broker.tracker._access import new_token
from keys import ACTION_CONTEXT, LiveDirectory
from keys.testing import Federation
from schemas import (
    HandoverState,
    ParticipantStatus,
    ServiceRole,
    utcnow,
)
from tests._fed import make_referral
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import read_all, running, wait_until
from tests.integration._secured import HOTLINE_MEMBERS, HOTLINE_RULES, Cluster

pytestmark = [pytest.mark.kafka]

MEMBERS, RULES = HOTLINE_MEMBERS, HOTLINE_RULES


@pytest.mark.timeout(300)
async def test_a_dead_letter_redriven_after_the_fix_ends_received(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    if not kafka.secured:
        pytest.skip("this cluster has no authentication (CRB_KAFKA=docker runs it plain)")
    start = utcnow() - timedelta(days=30)
    fed = Federation(MEMBERS, not_before=start, not_after=start + timedelta(days=365), rules=RULES)
    c = Cluster(kafka, tmp_path, fed)
    prefix = c.settings.topics.prefix
    tracker_section = TrackerSettings(group_id=f"{prefix}-tracker", poll_timeout_ms=100)
    c.settings = c.settings.model_copy(update={"tracker": tracker_section})
    n = c.names
    active = fed.directory()
    suspended = keys.set_status(active, "de.hotline", ParticipantStatus.SUSPENDED, now=utcnow())
    await c.provision(suspended)

    router_clients = c.clients(ROUTER)
    router_live = LiveDirectory(suspended, root=fed.root.verify_key)
    follower = DirectoryFollower(router_clients, n.directory, router_live)
    router = Router(
        c.settings_as(ROUTER),
        router_live,
        signer=fed.signer(ServiceRole.ROUTER),
        clients=router_clients,
        follower=follower,
    )
    tracker_clients = c.clients(TRACKER)
    tracker_live = LiveDirectory(suspended, root=fed.root.verify_key)
    tracker_follower = DirectoryFollower(tracker_clients, n.directory, tracker_live)
    tracker = Tracker(
        c.settings_as(TRACKER),
        suspended,
        clients=tracker_clients,
        directory=tracker_live,
        signer=fed.signer(ServiceRole.TRACKER),
        follower=tracker_follower,
    )
    operator, op_record = new_token(OPERATOR, label="operator", now=utcnow())
    hotline, nl_record = new_token("participant:de.hotline", label="de", now=utcnow())
    records = {op_record.id: op_record, nl_record.id: nl_record}
    app = create_app(
        tracker.handovers,
        access=Access(lambda: records),
        console=tracker.handovers,
        redrive=lambda p, o, by: tracker.redrive(p, o, by=by),
    )

    def run_router(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return follower.alongside(router.run(stop))

    def run_tracker(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return tracker_follower.alongside(tracker.run(stop))

    # What de.hotline's adapter seals (its own key), put in its outbox by the admin:
    # a suspended participant has no Kafka grants of its own.
    de = Identity("de.hotline", fed.signing("de.hotline"), (fed.opening("de.hotline"),), active)
    sealer = Sender(de, Outbox.of(c.admin, n, "de.hotline", c.settings.adapter))
    referral = sealer.seal_referral(Submission(make_referral(), "NL"))
    nl = Identity("nl.hotline", fed.signing("nl.hotline"), (fed.opening("nl.hotline"),), active)
    nl_sender = Sender(nl, Outbox.of(c.clients("nl.hotline"), n, "nl.hotline", c.settings.adapter))
    # nl.hotline's own referral, put in de.hotline's outbox: a spoofed outbox.
    spoofed = nl_sender.seal_referral(Submission(make_referral(), "DE")).envelope
    producer = c.admin.producer()
    await producer.start()
    try:
        for value in (referral.envelope, spoofed):
            await producer.send_and_wait(OutRecord(n.outbox("de.hotline"), b"k", value))
    finally:
        await producer.stop()

    transport = httpx.ASGITransport(app=app)
    async with (
        running(run_router, router.ready, "router"),
        running(run_tracker, tracker.ready, "tracker"),
        httpx.AsyncClient(transport=transport, base_url="http://tracker") as api,
    ):
        as_operator = {"Authorization": f"Bearer {operator}"}
        as_hotline = {"Authorization": f"Bearer {hotline}"}

        async def listed() -> dict[str, Any]:
            found: dict[str, Any] = (await api.get("/dead-letters", headers=as_operator)).json()
            return found

        async def two_listed() -> bool:
            return bool(2 == (await listed())["count"])

        await wait_until(two_listed, what="both dead letters listed by the tracker")
        by_reason = {d["reason"]: d for d in (await listed())["dead_letters"]}
        assert {"sender_suspended", "wrong_outbox"} == set(by_reason)
        dead, bad = by_reason["sender_suspended"], by_reason["wrong_outbox"]
        assert (True, False) == (dead["redrivable"], bad["redrivable"])
        assert str(referral.message_id) == dead["message_id"], "the clear header, parsed"
        where = f"{dead['partition']}/{dead['offset']}"

        refused = await api.post(f"/dead-letters/{bad['partition']}/{bad['offset']}/redrive",
                                 headers=as_operator)  # fmt: skip
        assert 409 == refused.status_code
        assert "can never succeed" in refused.json()["detail"]
        not_yours = await api.post(f"/dead-letters/{where}/redrive", headers=as_hotline)
        assert 403 == not_yours.status_code

        # The fix: `crb participant reinstate de.hotline` (a new version, published,
        # grants back).
        reinstated = keys.set_status(
            suspended, "de.hotline", ParticipantStatus.ACTIVE, now=utcnow()
        )
        await c.operate(reinstated)
        await wait_until(
            lambda: router.live.version == reinstated.version, what="the router reinstating"
        )

        done = await api.post(f"/dead-letters/{where}/redrive", headers=as_operator)
        assert 200 == done.status_code, done.text
        assert op_record.id == done.json()["redriven_by"]
        again = await api.post(f"/dead-letters/{where}/redrive", headers=as_operator)
        assert 409 == again.status_code
        assert "already redriven" in again.json()["detail"]

        await wait_until(
            lambda: referral.message_id in router.memory.seen, what="the redriven referral routed"
        )
        with StateStore(tmp_path / "nl-state") as store:
            receiver = Receiver(
                c.clients("nl.hotline"), n, c.settings.adapter, nl_sender,
                FolderSink(tmp_path / "nl-inbox"), store,
            )  # fmt: skip
            stats = await asyncio.wait_for(receiver.run(asyncio.Event(), drain=True), 120)
        assert 1 == stats.delivered
        key = f"{referral.message_id}/nl.hotline"

        def received() -> bool:
            h = tracker.ledger.get(key)
            return h is not None and h.state is HandoverState.RECEIVED

        await wait_until(received, what="the redriven referral received", timeout_s=60)
        await nl_sender.outbox.stop()
        await sealer.outbox.stop()

    (action,) = await read_all(c.settings.kafka.bootstrap, n.actions)
    body = json.loads(action.value or b"")
    assert ("redrive", op_record.id, dead["offset"]) == (body["action"], body["by"], body["offset"])
    assert ServiceRole.TRACKER is signed_by(
        action, reinstated, (ServiceRole.TRACKER,), ACTION_CONTEXT, at=utcnow()
    )
