"""The intake API without a broker: the adapter's sender on a fake Kafka, the app
called in-process. Against Kafka: tests/integration/test_intake_flow.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from adapters import (
    Access,
    IntakeLimits,
    Sender,
    StateStore,
    TokenStore,
    create_intake,
)
from keys import parse
from schemas import MessageType, utcnow
from tests._fed import LiveFederation, make_referral
from tests.unit._adapter_kit import FakeKafka, sender


@dataclass
class Intake:
    client: httpx.AsyncClient
    kafka: FakeKafka
    store: StateStore
    key: str
    tokens: TokenStore
    sender: Sender


def _referral(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = make_referral().model_dump(mode="json")
    data.update(over)
    return data


async def _intake(
    tmp_path: Path, *, limits: IntakeLimits | None = None, crash_after_send: bool = False
) -> AsyncIterator[Intake]:
    fed, kafka = LiveFederation(), FakeKafka()
    store = StateStore(tmp_path / "state")
    tokens = TokenStore(tmp_path / "state" / "intake-keys.json")
    key, _ = tokens.issue("participant:de.hotline", label="case system", now=utcnow())
    de = sender(fed, "de.hotline", kafka)
    de.pending = store

    def hook(stage: str, _mid: UUID) -> None:
        if crash_after_send and stage == "sent":
            raise RuntimeError("the adapter died after Kafka's acknowledgement")

    app = create_intake(de, store, Access(tokens.tokens), limits=limits, hook=hook)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=not crash_after_send)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
        yield Intake(client, kafka, store, key, tokens, de)
    store.close()


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    async for i in _intake(tmp_path):
        yield i


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_referral_is_sealed_sent_and_answered_202(intake: Intake) -> None:
    r = await intake.client.post("/referrals", json=_referral(), headers=_auth(intake.key))
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == body["status_url"] == f"/referrals/{body['message_id']}"
    assert body["jurisdiction"] == "NL"
    (record,) = intake.kafka.sent
    header = parse(record.value).header
    assert str(header.message_id) == body["message_id"]
    assert header.message_type is MessageType.REFERRAL
    assert header.sender == "de.hotline"
    status = await intake.client.get(body["status_url"], headers=_auth(intake.key))
    assert status.status_code == 200
    assert status.json()["waiting_for"] == list(header.recipients)
    found = await intake.client.get(
        "/referrals", params={"reference": _referral()["reporter"]["reference"]},
        headers=_auth(intake.key),
    )  # fmt: skip
    assert found.status_code == 200


async def test_the_same_idempotency_key_returns_the_same_id_and_sends_once(
    intake: Intake,
) -> None:
    item = _referral()
    headers = {**_auth(intake.key), "Idempotency-Key": "case-42"}
    first = await intake.client.post("/referrals", json=item, headers=headers)
    again = await intake.client.post("/referrals", json=item, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["message_id"] == again.json()["message_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(intake.kafka.sent) == 1
    other = await intake.client.post("/referrals", json=_referral(), headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")
    # Keys are remembered for record_retention (90 days), then forgotten.
    assert intake.store.forget_idempotency(utcnow()) == 1
    assert intake.store.idempotent(intake.key.split("_")[1], "case-42") is None


async def test_killed_between_kafkas_ack_and_the_answer_a_retry_keeps_the_id(
    tmp_path: Path,
) -> None:
    """The adapter dies after Kafka acknowledged but before it answered; a new
    adapter on the same state answers the retried request with the same id and
    sends the same bytes (the router refuses them as a duplicate)."""
    item = _referral()
    async for crashing in _intake(tmp_path, crash_after_send=True):
        headers = {**_auth(crashing.key), "Idempotency-Key": "k-1"}
        died = await crashing.client.post("/referrals", json=item, headers=headers)
        assert died.status_code == 500
        (first,) = crashing.kafka.sent
        key = crashing.key
    async for restarted in _intake(tmp_path):
        headers = {**_auth(key), "Idempotency-Key": "k-1"}
        retried = await restarted.client.post("/referrals", json=item, headers=headers)
        assert retried.status_code == 202
        assert retried.json()["message_id"] == str(parse(first.value).header.message_id)
        (resent,) = restarted.kafka.sent
        assert resent.value == first.value  # byte for byte: one message


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer crb_000000000000_" + "A" * 43}, 401),
        ({"Authorization": "Basic abc"}, 401),
    ],
)
async def test_no_or_a_wrong_key_is_401(
    intake: Intake, headers: dict[str, str], status: int
) -> None:
    r = await intake.client.post("/referrals", json=_referral(), headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert intake.kafka.sent == []


async def test_another_participants_key_is_403_and_a_revoked_one_401(intake: Intake) -> None:
    other, _ = intake.tokens.issue("participant:nl.hotline", now=utcnow())
    r = await intake.client.post("/referrals", json=_referral(), headers=_auth(other))
    assert r.status_code == 403
    record_id = intake.key.split("_")[1]
    intake.tokens.revoke(record_id, now=utcnow())
    r = await intake.client.post("/referrals", json=_referral(), headers=_auth(intake.key))
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]
    assert intake.kafka.sent == []


async def test_validation_problems_name_each_field(intake: Intake) -> None:
    bad = _referral(handling={"code": "H9"})
    bad["urls"][0]["url"] = "not a url"
    r = await intake.client.post(
        "/referrals", json={"referral": bad, "jurisdiction": "NL"}, headers=_auth(intake.key)
    )
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    fields = {e["field"] for e in problem["errors"]}
    assert any(f.startswith("referral.handling") for f in fields)
    assert any(f.startswith("referral.urls.0.url") for f in fields)
    assert "not a url" not in r.text  # never the input value back
    assert intake.kafka.sent == []


async def test_too_large_not_json_and_rate_limited(tmp_path: Path) -> None:
    limits = IntakeLimits(max_body=20_000, rate_per_s=0.001, burst=3)
    async for i in _intake(tmp_path, limits=limits):
        big = await i.client.post(
            "/referrals", content=b"{" + b" " * 30_000 + b"}", headers=_auth(i.key)
        )
        assert big.status_code == 413
        text = await i.client.post(
            "/referrals", content=b"hello", headers={**_auth(i.key), "content-type": "text/plain"}
        )
        assert text.status_code == 415
        broken = await i.client.post(
            "/referrals",
            content=b"{nope",
            headers={**_auth(i.key), "content-type": "application/json"},
        )
        assert broken.status_code == 400
        limited = await i.client.post("/referrals", json=_referral(), headers=_auth(i.key))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1


async def test_a_batch_reports_each_item_and_sends_only_the_valid_ones(intake: Intake) -> None:
    items = [_referral(), {"referral": _referral(), "jurisdiction": "XX"}, 42, _referral()]
    r = await intake.client.post(
        "/referrals:batch", json={"items": items}, headers=_auth(intake.key)
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["refused"]) == (2, 2)
    statuses = [it["status"] for it in answer["items"]]
    assert statuses == [202, 422, 422, 202]
    assert answer["items"][2]["problem"]["errors"][0]["field"] == "items.2."
    sent = {str(parse(s.value).header.message_id) for s in intake.kafka.sent}
    assert sent == {answer["items"][0]["message_id"], answer["items"][3]["message_id"]}


async def test_the_openapi_document_describes_the_intake(intake: Intake) -> None:
    doc = (await intake.client.get("/openapi.json")).json()
    assert {"/referrals", "/referrals:batch", "/referrals/{message_id}"} <= set(doc["paths"])
    assert "Referral" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert json.dumps(doc)  # serialisable
