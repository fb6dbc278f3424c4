"""The tracker's HTTP API over an in-memory state: views, filters, OpenAPI, and bad
input answered with 4xx and a clear message, never a 500."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from broker.tracker import OPERATOR, Access, Handover, Ledger, Policy, create_app
from broker.tracker._access import new_token
from schemas import HandoverState, Priority, StatusEvent, uuid7

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(escalation_recipient="int.coordinator")


def _ledger() -> Ledger:
    """NL case: routine to nl.hotline received after 30 s; urgent to nl.police24 that
    went overdue and was escalated. DE case: dead-lettered."""
    ledger = Ledger(POLICY)
    nl_case, de_case = uuid7(T0, rng=os.urandom), uuid7(T0, rng=os.urandom)
    m1, m2, m3 = (uuid7(T0, rng=os.urandom) for _ in range(3))

    def e(state: HandoverState, at: datetime, **kw: object) -> StatusEvent:
        fields: dict[str, object] = {"sender": "de.hotline", "state": state, "at": at, **kw}
        return StatusEvent.model_validate(fields)

    events = [
        e(S.ROUTED, T0, message_id=m1, case_id=nl_case, recipient="nl.hotline", jurisdiction="NL"),
        e(S.RECEIVED, T0 + timedelta(seconds=30), message_id=m1, case_id=nl_case,
          recipient="nl.hotline"),
        e(S.ROUTED, T0, message_id=m2, case_id=nl_case, recipient="nl.police24",
          priority=Priority.URGENT, jurisdiction="NL"),
        e(S.DEAD_LETTERED, T0, message_id=m3, case_id=de_case, reason="recipient_mismatch"),
    ]  # fmt: skip
    ledger.commit(ledger.step(events, T0).changed.values())
    for minutes in (5, 10):
        ledger.commit(ledger.step([], T0 + timedelta(minutes=minutes)).changed.values())
    return ledger


S = HandoverState


@pytest.fixture
def state() -> list[Handover]:
    return list(_ledger().handovers.values())


def _operator_app(source: Callable[[], Iterable[Handover]]) -> tuple[FastAPI, str]:
    """The API over ``source`` and an operator token it accepts."""
    token, record = new_token(OPERATOR, label="test", now=T0)
    access = Access(lambda: {record.id: record}, clock=lambda: T0)
    return create_app(source, access=access), token


def _client(app: object, token: str | None = None) -> httpx.AsyncClient:
    # httpx over ASGI in-process: the same requests a real client makes, no socket.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=transport, base_url="http://tracker", headers=headers)


@pytest.fixture
async def client(state: list[Handover]) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(*_operator_app(lambda: state)) as c:
        yield c


async def test_handovers_lists_everything_and_filters(client: httpx.AsyncClient) -> None:
    """/handovers lists all; overdue, jurisdiction (any case) and state filter; limit
    caps the list but not the count."""
    body = (await client.get("/handovers")).json()
    assert 3 == body["count"]
    overdue = (await client.get("/handovers", params={"overdue": "true"})).json()
    assert ["nl.police24"] == [h["handover"]["recipient"] for h in overdue["handovers"]]
    assert [True] == [h["overdue"] for h in overdue["handovers"]]
    assert "escalated" == overdue["handovers"][0]["handover"]["state"]
    assert "int.coordinator" == overdue["handovers"][0]["handover"]["escalated_to"]
    assert 2 == (await client.get("/handovers", params={"jurisdiction": "nl"})).json()["count"]
    assert 0 == (await client.get("/handovers", params={"jurisdiction": "FR"})).json()["count"]
    dead = (await client.get("/handovers", params={"state": "dead_lettered"})).json()
    assert [None] == [h["handover"]["recipient"] for h in dead["handovers"]]
    assert 2 == (await client.get("/handovers", params={"overdue": "false"})).json()["count"]
    limited = (await client.get("/handovers", params={"limit": "1"})).json()
    assert (3, 1) == (limited["count"], len(limited["handovers"]))


async def test_case_and_message_views(client: httpx.AsyncClient, state: list[Handover]) -> None:
    """/cases/{id} gives every handover of the case; /messages/{id} every recipient of
    the message, with the precomputed key and time to receipt."""
    received = next(h for h in state if h.state is S.RECEIVED)
    case = await client.get(f"/cases/{received.case_id}")
    assert 200 == case.status_code
    assert ["nl.hotline", "nl.police24"] == sorted(
        h["handover"]["recipient"] for h in case.json()["handovers"]
    )
    message = (await client.get(f"/messages/{received.message_id}")).json()
    [view] = message["handovers"]
    assert f"{received.message_id}/nl.hotline" == view["key"]
    assert 30.0 == view["seconds_to_receipt"]
    assert ["routed", "received"] == [x["state"] for x in view["handover"]["history"]]


async def test_routes_give_counts_and_times(client: httpx.AsyncClient) -> None:
    """/routes: per-route counts, median and p99 seconds to receipt."""
    routes = {
        (r["sender"], r["recipient"]): r for r in (await client.get("/routes")).json()["routes"]
    }
    hot = routes["de.hotline", "nl.hotline"]
    assert (1, 1, 30.0, 30.0) == (
        hot["sent"],
        hot["received"],
        hot["median_seconds_to_receipt"],
        hot["p99_seconds_to_receipt"],
    )
    assert 1 == routes["de.hotline", "nl.police24"]["overdue"]
    assert 1 == routes["de.hotline", None]["dead_lettered"]


async def test_healthz_and_openapi(client: httpx.AsyncClient) -> None:
    """/healthz answers (and tells nothing about handovers); /openapi.json documents
    every path with response schemas, and the 401/403 refusals."""
    health = (await client.get("/healthz")).json()
    assert ("ok", True) == (health["status"], health["ready"])
    doc = (await client.get("/openapi.json")).json()
    assert {
        "/whoami",
        "/handovers",
        "/cases/{case_id}",
        "/messages/{message_id}",
        "/routes",
        "/healthz",
        "/metrics",
    } == set(doc["paths"])
    assert "HandoverView" in doc["components"]["schemas"]
    assert "RouteStats" in doc["components"]["schemas"]
    assert {"200", "401", "403", "422"} <= set(doc["paths"]["/handovers"]["get"]["responses"])


@pytest.mark.parametrize(
    ("path", "params", "status", "needle"),
    [
        ("/cases/not-a-uuid", {}, 422, "case_id"),
        ("/messages/123", {}, 422, "message_id"),
        ("/handovers", {"jurisdiction": "XX"}, 422, "jurisdiction"),
        ("/handovers", {"jurisdiction": "EU"}, 422, "jurisdiction"),
        ("/handovers", {"state": "lost"}, 422, "state"),
        ("/handovers", {"overdue": "maybe"}, 422, "overdue"),
        ("/handovers", {"limit": "0"}, 422, "limit"),
        ("/handovers", {"participant": "Not An Id"}, 422, "participant"),
        ("/cases/0195f3a4-0000-7000-8000-000000000000", {}, 404, "no handover for case"),
        ("/messages/0195f3a4-0000-7000-8000-000000000000", {}, 404, "no handover for message"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    client: httpx.AsyncClient, path: str, params: dict[str, str], status: int, needle: str
) -> None:
    """Malformed ids, unknown countries and states are 422 naming the parameter;
    unknown ids are 404; never a 500."""
    response = await client.get(path, params=params)
    assert status == response.status_code
    assert needle in response.text


async def test_the_api_reads_the_source_on_every_request() -> None:
    """The API shows the current state, not a copy taken at start-up."""
    state: list[Handover] = []
    async with _client(*_operator_app(lambda: state)) as client:
        assert 0 == (await client.get("/handovers")).json()["count"]
        state.extend(_ledger().handovers.values())
        assert 3 == (await client.get("/handovers")).json()["count"]
