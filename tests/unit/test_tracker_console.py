"""The operator console: its queries agree with the pure definitions, and its pages
show what a caller may see — nothing to anyone anonymous, only their own handovers
to a participant — with nothing loaded from outside the tracker."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from broker.tracker import OPERATOR, Access, Handover, create_app, serve
from broker.tracker._access import new_token
from broker.tracker._console import COOKIE, parse_filters
from broker.tracker._store import SqliteHandovers
from broker.tracker._views import (
    ATTENTION_STATES,
    BUCKET_ORDER,
    BUCKETS,
    Filters,
    attention_order,
    percentile,
)
from schemas import Category, HandoverState, Priority, uuid7

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PARTICIPANTS = ("de.hotline", "nl.hotline", "nl.police24", "fr.hotline")
S = HandoverState


def _random_handovers(n: int, seed: int) -> list[Handover]:
    rng = random.Random(seed)
    out = []
    cases = [uuid7(T0, rng=os.urandom) for _ in range(max(1, n // 3))]
    for i in range(n):
        sender, recipient = rng.sample(PARTICIPANTS, 2)
        state = rng.choice(list(HandoverState))
        routed = T0 + timedelta(minutes=i)
        unrouted = state in (S.SUBMITTED, S.DEAD_LETTERED) and rng.random() < 0.5
        received = state in (S.RECEIVED, S.ACCEPTED, S.CLOSED) or rng.random() < 0.1
        out.append(
            Handover(
                message_id=uuid7(routed, rng=os.urandom),
                recipient=None if unrouted else recipient,
                case_id=rng.choice(cases),
                sender=sender,
                priority=rng.choice([*Priority, None]),
                jurisdiction=rng.choice(["NL", "DE", None]),
                category=rng.choice([*Category, None]),
                state=state,
                routed_at=None if unrouted else routed,
                received_at=routed + timedelta(seconds=rng.randint(1, 900))
                if received and not unrouted
                else None,
                escalated_to="fr.hotline" if state is S.ESCALATED else None,
                overdue_at=routed + timedelta(minutes=5) if state is S.OVERDUE else None,
                updated_at=routed + timedelta(hours=1),
            )
        )
    return out


def _store(handovers: list[Handover]) -> SqliteHandovers:
    store = SqliteHandovers.open(None, "crb.tracker", "policy")
    assert store is not None
    store.put(handovers)
    return store


HANDOVERS = _random_handovers(400, seed=7)


def _filters(rng: random.Random, sample: Handover) -> Filters:
    """A random combination of filters, half of them taken from a real handover."""
    pick = rng.random
    return Filters(
        message_id=sample.message_id if pick() < 0.1 else None,
        case_id=sample.case_id if pick() < 0.15 else None,
        participant=rng.choice(PARTICIPANTS) if pick() < 0.3 else None,
        sender=sample.sender if pick() < 0.2 else None,
        recipient=sample.recipient if pick() < 0.2 else None,
        jurisdiction=rng.choice(["NL", "DE"]) if pick() < 0.2 else None,
        state=rng.choice(list(HandoverState)) if pick() < 0.2 else None,
        bucket=rng.choice(BUCKET_ORDER) if pick() < 0.2 else None,
        priority=rng.choice(list(Priority)) if pick() < 0.2 else None,
        category=rng.choice(list(Category)) if pick() < 0.2 else None,
        since=T0 + timedelta(minutes=rng.randint(0, 400)) if pick() < 0.2 else None,
        until=T0 + timedelta(minutes=rng.randint(0, 400)) if pick() < 0.2 else None,
    )


def test_search_answers_what_the_pure_filter_says() -> None:
    """300 random filter combinations: the store's count and rows (newest first)
    are exactly the handovers ``Filters.matches`` accepts."""
    store = _store(HANDOVERS)
    rng = random.Random(11)
    nonempty = 0
    for _ in range(300):
        f = _filters(rng, rng.choice(HANDOVERS))
        expected = sorted(
            (h for h in HANDOVERS if f.matches(h)),
            key=lambda h: (-(h.routed_at or h.updated_at).timestamp(), h.key),
        )
        count, rows = store.search(f, limit=1000)
        assert len(expected) == count
        assert [h.key for h in expected] == [h.key for h in rows]
        nonempty += bool(count)
    assert nonempty > 50, "the combinations must exercise matches, not only empty results"


def test_the_board_counts_every_handover_once_in_its_bucket() -> None:
    store = _store(HANDOVERS)
    for participant in (None, "nl.hotline"):
        cells = store.board(participant)
        seen = [h for h in HANDOVERS if participant is None or Filters(
            participant=participant).matches(h)]  # fmt: skip
        assert len(seen) == sum(c.total for c in cells)
        for cell in cells:
            mine = [h for h in seen if (h.sender, h.recipient) == (cell.sender, cell.recipient)]
            for bucket in BUCKET_ORDER:
                assert sum(1 for h in mine if BUCKETS[h.state] == bucket) == cell.counts[bucket]
            times = [t.total_seconds() for h in mine if (t := h.time_to_receipt) is not None]
            assert percentile(times, 50) == cell.median_s
            assert percentile(times, 95) == cell.p95_s


def test_needs_attention_is_urgent_first_then_oldest() -> None:
    store = _store(HANDOVERS)
    count, rows = store.attention(limit=1000)
    expected = sorted(
        (h for h in HANDOVERS if h.state in ATTENTION_STATES),
        key=lambda h: (*attention_order(h), h.key),
    )
    assert len(expected) == count
    assert [h.key for h in expected] == [h.key for h in rows]
    assert rows[0].priority is Priority.URGENT


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"message_id": "nope"}, "message id: not a UUID"),
        ({"state": "lost"}, "state: one of"),
        ({"jurisdiction": "XX"}, "jurisdiction: not an ISO 3166-1"),
        ({"since": "yesterday"}, "since: not a date or time"),
        ({"bucket": "limbo"}, "bucket: one of"),
    ],
)
def test_a_bad_filter_is_named(params: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_filters(params)


# -- the pages over HTTP ---------------------------------------------------------------


@pytest.fixture
async def console() -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    store = _store(HANDOVERS)
    records = {}
    tokens = {}
    for name, scope in (("operator", OPERATOR), ("nl.hotline", "participant:nl.hotline")):
        token, record = new_token(scope, label=name, now=T0)
        records[record.id] = record
        tokens[name] = token
    access = Access(lambda: records, clock=lambda: T0 + timedelta(hours=1))
    app = create_app(lambda: store, access=access, console=lambda: store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        yield client, tokens


def _cookie(token: str) -> dict[str, str]:
    """The console's sign-in cookie, as a browser sends it."""
    return {"Cookie": f"{COOKIE}={token}"}


FIRST = HANDOVERS[0]
PAGES = [
    "/console/",
    "/console/attention",
    "/console/handovers",
    f"/console/case/{FIRST.case_id}",
    f"/console/handover/{FIRST.message_id}/{FIRST.recipient or '-'}",
]


@pytest.mark.parametrize("path", PAGES)
async def test_anonymous_callers_get_the_sign_in_page_and_nothing_else(
    console: tuple[httpx.AsyncClient, dict[str, str]], path: str
) -> None:
    client, _ = console
    response = await client.get(path)
    assert 303 == response.status_code
    assert "/console/login" == response.headers["location"]
    assert 401 == (await client.get("/console/handovers.csv")).status_code
    forged = await client.get(path, headers=_cookie(f"crb_{'0' * 12}_{'A' * 43}"))
    assert 303 == forged.status_code


async def test_signing_in_sets_a_strict_http_only_cookie(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    refused = await client.post("/console/login", data={"token": "crb_nope"})
    assert 401 == refused.status_code
    assert COOKIE not in refused.headers.get("set-cookie", "")
    signed = await client.post("/console/login", data={"token": tokens["operator"]})
    assert 303 == signed.status_code
    cookie = signed.headers["set-cookie"]
    for part in ("HttpOnly", "SameSite=strict", "Path=/console"):
        assert part.lower() in cookie.lower()
    board = await client.get("/console/", headers=_cookie(tokens["operator"]))
    assert 200 == board.status_code
    assert "Route board" in board.text


async def test_pages_load_nothing_from_outside_and_say_so(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    for path in PAGES:
        page = await client.get(path, headers=_cookie(tokens["operator"]))
        assert 200 == page.status_code, path
        assert [] == re.findall(r'(?:src|href)="(?:https?:)?//', page.text), path
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "no-store" == page.headers["cache-control"]
    css = await client.get("/console/static/console.css")
    assert 200 == css.status_code


async def test_the_board_shows_every_route_to_an_operator_and_only_its_own_to_a_participant(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    op = (await client.get("/console/", headers=_cookie(tokens["operator"]))).text
    assert f"{len(HANDOVERS)} handovers" in op
    nl = (await client.get("/console/", headers=_cookie(tokens["nl.hotline"]))).text
    mine = sum(1 for h in HANDOVERS if Filters(participant="nl.hotline").matches(h))
    assert f"{mine} handovers" in nl
    assert "participant nl.hotline" in nl


async def test_a_participant_cannot_open_or_search_another_participants_handovers(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    theirs = next(
        h for h in HANDOVERS if "nl.hotline" not in (h.sender, h.recipient, h.escalated_to)
    )
    own = next(h for h in HANDOVERS if h.recipient == "nl.hotline")
    nl = _cookie(tokens["nl.hotline"])
    path = f"/console/handover/{theirs.message_id}/{theirs.recipient or '-'}"
    assert 404 == (await client.get(path, headers=nl)).status_code
    assert 200 == (await client.get(path, headers=_cookie(tokens["operator"]))).status_code
    ok = await client.get(f"/console/handover/{own.message_id}/nl.hotline", headers=nl)
    assert 200 == ok.status_code
    assert str(own.case_id) in ok.text
    other = await client.get("/console/handovers", params={"participant": "de.hotline"}, headers=nl)
    assert 400 == other.status_code
    assert "sees only its own handovers" in other.text
    case = await client.get(f"/console/case/{theirs.case_id}", headers=nl)
    if not any(
        Filters(participant="nl.hotline", case_id=theirs.case_id).matches(h) for h in HANDOVERS
    ):
        assert 404 == case.status_code


async def test_search_keeps_filters_in_the_url_and_exports_the_same_rows_as_csv(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    op = _cookie(tokens["operator"])
    params = {"participant": "nl.hotline", "bucket": "overdue"}
    f = parse_filters(params)
    expected = {h.key for h in HANDOVERS if f.matches(h)}
    assert expected, "the sample must hold overdue handovers of nl.hotline"
    page = await client.get("/console/handovers", params=params, headers=op)
    assert f"{len(expected)} handovers match" in page.text
    assert "bucket=overdue" in page.text  # the export link keeps the filters
    exported = await client.get("/console/handovers.csv", params=params, headers=op)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert expected == {f"{r['message_id']}/{r['recipient'] or '-'}" for r in rows}
    bad = await client.get("/console/handovers", params={"case_id": "x"}, headers=op)
    assert 400 == bad.status_code
    assert "case id: not a UUID" in bad.text


def test_a_csv_cell_never_starts_a_formula() -> None:
    from broker.tracker._console import _csv_cell

    assert "'=cmd()" == _csv_cell("=cmd()")
    assert "'-1" == _csv_cell("-1")
    assert "nl.hotline" == _csv_cell("nl.hotline")
    assert "" == _csv_cell(None)
    assert UUID(int=1).hex not in _csv_cell("x")


async def test_a_live_page_refreshes_its_list_alone(
    console: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = console
    op = _cookie(tokens["operator"])
    whole = await client.get("/console/attention", headers=op)
    assert 'data-events="/console/events?after=' in whole.text
    part = await client.get("/console/attention", params={"fragment": "1"}, headers=op)
    assert 200 == part.status_code
    assert "<html" not in part.text
    assert "overdue, escalated, failed or dead-lettered" in part.text
    searched = await client.get(
        "/console/handovers", params={"state": "received", "fragment": "1"}, headers=op
    )
    assert "handovers match" in searched.text
    assert "<form" not in searched.text


async def _next_event(lines: AsyncIterator[str]) -> dict[str, str]:
    """The next server-sent event's fields (comments and retry lines skipped)."""
    event: dict[str, str] = {}
    async for line in lines:
        if not line:
            if "data" in event:
                return event
            event = {}
            continue
        name, _, value = line.partition(": ")
        if name and not line.startswith(":"):
            event[name] = value
    raise AssertionError("the stream ended")


async def test_the_event_stream_sends_what_changed_and_resumes_after_the_last_id() -> None:
    """Against a real HTTP server: a change after the page's number arrives with the
    next number as its id; reconnecting with Last-Event-ID sends only later ones; a
    participant's stream leaves out other participants' handovers."""
    store = _store(HANDOVERS[:10])
    records = {}
    tokens = {}
    for name, scope in (("operator", OPERATOR), ("nl.hotline", "participant:nl.hotline")):
        token, record = new_token(scope, label=name, now=T0)
        records[record.id] = record
        tokens[name] = token
    access = Access(lambda: records, clock=lambda: T0 + timedelta(hours=1))
    app = create_app(lambda: store, access=access, console=lambda: store)
    port = _free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, "127.0.0.1", port, stop))
    base = f"http://127.0.0.1:{port}"
    start = store.seq
    theirs, mine, later = (
        h.model_copy(update={"recipient": r, "escalated_to": None, "sender": "de.hotline"})
        for h, r in zip(HANDOVERS[10:13], ("fr.hotline", "nl.hotline", "nl.hotline"), strict=True)
    )
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=base, timeout=10) as web:
            op = {**_cookie(tokens["operator"])}
            async with web.stream("GET", f"/console/events?after={start}", headers=op) as s:
                assert s.headers["content-type"].startswith("text/event-stream")
                lines = s.aiter_lines()
                store.put([theirs])
                first = await _next_event(lines)
            assert (str(start + 1), "handover") == (first["id"], first["event"])
            assert theirs.key == json.loads(first["data"])["key"]
            nl = {**_cookie(tokens["nl.hotline"]), "Last-Event-ID": first["id"]}
            async with web.stream("GET", "/console/events", headers=nl) as s:
                lines = s.aiter_lines()
                store.put([mine])
                got = await _next_event(lines)
            assert mine.key == json.loads(got["data"])["key"], "not fr.hotline's handover"
            assert str(start + 2) == got["id"]
            resumed = {**op, "Last-Event-ID": got["id"]}
            async with web.stream("GET", "/console/events", headers=resumed) as s:
                lines = s.aiter_lines()
                store.put([later])
                again = await _next_event(lines)
            assert (str(start + 3), later.key) == (again["id"], json.loads(again["data"])["key"])
            assert 401 == (await web.get("/console/events")).status_code
    finally:
        stop.set()
        await server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_dead_letters_are_listed_and_redriven_only_by_an_operator_with_the_form_token() -> (
    None
):
    from dataclasses import replace as redone

    from broker.tracker._deadletters import DeadLetter

    store = _store(HANDOVERS[:5])
    letters = [
        DeadLetter(
            0, i, reason, f"crb.outbox.{sender}", 0, 10 + i, T0, sender, 100, "0" * 64, False
        )
        for i, (reason, sender) in enumerate(
            [("unknown_key", "nl.hotline"), ("bad_signature", "de.hotline")]
        )
    ]
    store.put_dead_letters(letters, {0: 2})
    asked: list[tuple[int, int, str]] = []

    async def redrive(p: int, o: int, by: str) -> DeadLetter:
        asked.append((p, o, by))
        done = redone(letters[o], redriven_at=T0, redriven_by=by, redrive_offset=99)
        store.mark_redriven(done)
        return done

    records, tokens = {}, {}
    for name, scope in (("operator", OPERATOR), ("nl.hotline", "participant:nl.hotline")):
        token, record = new_token(scope, label=name, now=T0)
        records[record.id] = record
        tokens[name] = token
    access = Access(lambda: records, clock=lambda: T0 + timedelta(hours=1))
    app = create_app(lambda: store, access=access, console=lambda: store, redrive=redrive)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as web:
        op, nl = _cookie(tokens["operator"]), _cookie(tokens["nl.hotline"])
        listed = (await web.get("/console/dead-letters", headers=op)).text
        assert "2 dead letters" in listed
        assert "1 dead letters" in (await web.get("/console/dead-letters", headers=nl)).text
        assert 404 == (await web.get("/console/dead-letters/0/1", headers=nl)).status_code
        page = await web.get("/console/dead-letters/0/0", headers=op)
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert csrf, page.text
        final = await web.get("/console/dead-letters/0/1", headers=op)
        assert "can never succeed" in final.text
        assert 'name="csrf"' not in final.text
        path = "/console/dead-letters/0/0/redrive"
        forged = await web.post(path, data={"csrf": "0" * 64}, headers=op)
        assert 403 == forged.status_code
        refused = await web.post(path, data={"csrf": csrf[1]}, headers=nl)
        assert 403 == refused.status_code
        assert [] == asked
        done = await web.post(path, data={"csrf": csrf[1]}, headers=op)
        assert 200 == done.status_code
        assert "Redriven into crb.outbox.nl.hotline at offset 99" in done.text
        assert [(0, 0, records_id(records, "operator"))] == asked
        api = await web.get(
            "/dead-letters/0/0", headers={"Authorization": f"Bearer {tokens['operator']}"}
        )
        assert api.json()["redriven_at"] is not None


def records_id(records: dict[str, Any], label: str) -> str:
    return next(k for k, r in records.items() if r.label == label)


def test_route_stats_from_columns_equal_the_pure_ones() -> None:
    from broker.tracker._views import route_stats

    store = _store(HANDOVERS)
    for participant in (None, "nl.hotline", "fr.hotline"):
        mine = [h for h in HANDOVERS if Filters(participant=participant).matches(h)]
        assert route_stats(mine) == store.route_stats(participant)
