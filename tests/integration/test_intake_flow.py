"""The intake API on the real Kafka, over real HTTP: a case system POSTs a referral
to de.hotline's adapter, the router delivers it to nl.hotline, whose receipt comes
back — and GET shows it answered. Then a batch with bad items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import (
    Access,
    Identity,
    Outbox,
    Sender,
    StateStore,
    TokenStore,
    create_intake,
)
from adapters.kafka import KafkaClients
from broker import topics
from broker.router import Router
from keys import parse
from schemas import ServiceRole, TopicNames, utcnow
from tests._fed import LiveFederation, make_referral, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._adapters import running_adapter
from tests.integration._kafka_util import free_port, read_all, running, wait_until

pytestmark = [pytest.mark.kafka]


@pytest.mark.timeout(180)
async def test_post_deliver_receipt_and_get_over_http(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    fed = LiveFederation()
    settings = settings_for(kafka.bootstrap, unique_prefix())
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    port, nl_port = free_port(), free_port()
    referral: dict[str, Any] = make_referral().model_dump(mode="json")
    async with (
        running(router.run, router.ready, "router"),
        running_adapter(settings, fed, "de.hotline", tmp_path / "de", intake_port=port) as de,
        running_adapter(settings, fed, "nl.hotline", tmp_path / "nl", intake_port=nl_port) as nl,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{nl_port}", timeout=30) as nl_web,
    ):
        key, nl_key = de.key, nl.key
        auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "cms-1"}
        posted = await web.post("/referrals", json=referral, headers=auth)
        assert posted.status_code == 202, posted.text
        accepted = posted.json()
        again = await web.post("/referrals", json=referral, headers=auth)
        assert again.json()["message_id"] == accepted["message_id"]

        async def answered() -> bool:
            status = (await web.get(accepted["status_url"], headers=auth)).json()
            return status.get("waiting_for") == [] and status.get("case_id") is not None

        await wait_until(answered, what="the receipt back at de.hotline", timeout_s=60)
        found = await web.get(
            "/referrals", params={"reference": referral["reporter"]["reference"]}, headers=auth
        )
        assert [s["message_id"] for s in found.json()] == [accepted["message_id"]]

        bad = {"referral": make_referral().model_dump(mode="json"), "jurisdiction": "XX"}
        items = [make_referral().model_dump(mode="json"), bad, {"nope": 1}]
        batch = await web.post("/referrals:batch", json={"items": items}, headers=auth)
        assert batch.status_code == 200
        assert [i["status"] for i in batch.json()["items"]] == [202, 422, 422]

        def delivered() -> int:
            return len(list((tmp_path / "nl" / "inbox").glob("*.json")))

        await wait_until(lambda: delivered() == 2, what="two referrals delivered", timeout_s=60)

        # nl.hotline's case system reads its inbox and decides over HTTP too.
        nl_auth = {"Authorization": f"Bearer {nl_key}"}
        inbox = (await nl_web.get("/inbox", headers=nl_auth)).json()
        assert accepted["message_id"] in {m["message_id"] for m in inbox}
        document = (await nl_web.get(f"/inbox/{accepted['message_id']}", headers=nl_auth)).json()
        assert document["referral"]["reporter"]["reference"] == referral["reporter"]["reference"]
        url = f"/messages/{accepted['message_id']}"
        missing = await nl_web.post(f"{url}/reject", json={}, headers=nl_auth)
        assert missing.status_code == 422
        decided = await nl_web.post(f"{url}/accept", json={"reference": "NL-1"}, headers=nl_auth)
        assert decided.status_code == 202, decided.text

        def acknowledged() -> bool:
            return any(
                json.loads(p.read_text()).get("message_type") == "case_ack"
                for p in (tmp_path / "de" / "inbox").glob("*.json")
            )

        await wait_until(acknowledged, what="the acceptance back at de.hotline", timeout_s=60)
    documents = [
        json.loads(p.read_text())
        for p in (tmp_path / "nl" / "inbox").glob("*.json")
        if p.parent.name == "inbox"
    ]
    assert accepted["message_id"] in {d["message_id"] for d in documents}
    assert all(d["sender"] == "de.hotline" for d in documents)


@pytest.mark.timeout(180)
async def test_killed_after_kafkas_ack_the_retry_gives_one_message_and_the_same_id(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """The adapter dies between Kafka's acknowledgement and its HTTP answer; the case
    system retries with the same Idempotency-Key against the restarted adapter: the
    same message id comes back, and nl.hotline receives exactly one message (the
    router refuses the resent bytes as a duplicate)."""
    fed = LiveFederation()
    settings = settings_for(kafka.bootstrap, unique_prefix())
    names = TopicNames(settings.topics.prefix)
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    state = tmp_path / "de"
    identity = Identity("de.hotline", fed.signing["de.hotline"], (fed.opening["de.hotline"],),
                        fed.directory())  # fmt: skip
    referral: dict[str, Any] = make_referral().model_dump(mode="json")

    def die(stage: str, _mid: object) -> None:
        if stage == "sent":
            raise RuntimeError("killed after Kafka's acknowledgement")

    async def attempt(hook: Any) -> httpx.Response:
        with StateStore(state) as store:
            clients = KafkaClients(settings.kafka)
            async with Outbox.of(clients, names, "de.hotline", settings.adapter) as outbox:
                tokens = TokenStore(state / "intake-keys.json")
                key_file = state / "key"
                if not key_file.exists():
                    key, _ = tokens.issue("participant:de.hotline", now=utcnow())
                    key_file.write_text(key)
                sender = Sender(identity, outbox, pending=store)
                app = create_intake(sender, store, Access(tokens.tokens), hook=hook)
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://x") as web:
                    headers = {"Authorization": f"Bearer {key_file.read_text()}",
                               "Idempotency-Key": "cms-77"}  # fmt: skip
                    return await web.post("/referrals", json=referral, headers=headers)

    async with running(router.run, router.ready, "router"):
        died = await attempt(die)
        assert died.status_code == 500
        retried = await attempt(lambda _stage, _mid: None)
        assert retried.status_code == 202
        mid = retried.json()["message_id"]

        async def refused_once() -> bool:
            dead = await read_all(kafka.bootstrap, names.dlq)
            return [r.header("crb-reason") for r in dead] == [b"duplicate_message"]

        await wait_until(refused_once, what="the resent copy dead-lettered", timeout_s=60)
        inbox = await read_all(kafka.bootstrap, names.inbox("nl.hotline"))
    assert [str(parse(r.value or b"").header.message_id) for r in inbox] == [mid]
