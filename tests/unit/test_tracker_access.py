"""Who may read the tracker's HTTP API: tokens stored hashed, scopes, 401 vs 403.

The HTTP matrix asks every route as every kind of caller — anonymous, a malformed
header, an unknown token, a tampered one, an expired and a revoked token, an operator,
participants that take part in some handovers or none, a suspended participant — and
compares status codes and visible handovers with expectations written out by hand
(not computed by the code under test)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from broker.tracker import (
    OPERATOR,
    Access,
    Caller,
    Handover,
    Refusal,
    TokenError,
    TokenStore,
    authenticate,
    create_app,
    directory_check,
    parse_scope,
)
from broker.tracker._access import new_token
from tests.unit.test_tracker_api import _ledger

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


# -- pure: scopes, tokens, authenticate ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "scope"),
    [("operator", "operator"), (" participant:nl.hotline ", "participant:nl.hotline")],
)
def test_scopes_parse(text: str, scope: str) -> None:
    assert scope == parse_scope(text)


@pytest.mark.parametrize(
    "text", ["admin", "participant:", "participant:NL.hotline", "participant:x", "Operator"]
)
def test_bad_scopes_are_refused(text: str) -> None:
    with pytest.raises(TokenError):
        parse_scope(text)


def test_a_token_is_random_and_only_its_hash_is_kept() -> None:
    """Two tokens differ; the record holds the SHA-256, not the secret; the id is
    the token's public part."""
    a, ra = new_token(OPERATOR, label="a", now=T0)
    b, rb = new_token(OPERATOR, label="b", now=T0)
    assert a != b
    assert ra.id != rb.id
    assert a.startswith(f"crb_{ra.id}_")
    secret = a.rsplit("_", 1)[1]
    assert secret not in ra.model_dump_json()
    assert a not in ra.model_dump_json()
    assert T0 + timedelta(days=90) == ra.expires_at


def test_a_token_must_have_a_positive_lifetime() -> None:
    with pytest.raises(TokenError, match="positive"):
        new_token(OPERATOR, label="", now=T0, ttl=timedelta(0))


def test_authenticate_names_why() -> None:
    """Each refusal says why, as 401 or 403; a good token gives the caller."""
    op, rec = new_token(OPERATOR, label="", now=T0, ttl=timedelta(hours=2))
    pt, prec = new_token("participant:nl.hotline", label="", now=T0)
    tokens = {rec.id: rec, prec.id: prec}

    def check(header: str | None, now: datetime = NOW, why: str | None = None) -> object:
        return authenticate(header, tokens, now, lambda _: why)

    assert Caller(rec.id, None) == check(f"Bearer {op}")
    assert Caller(rec.id, None) == check(f"bearer   {op} ")
    assert Caller(prec.id, "nl.hotline") == check(f"Bearer {pt}")
    refusals = {
        "missing": check(None),
        "basic": check(f"Basic {op}"),
        "empty": check("Bearer "),
        "garbage": check("Bearer abc"),
        "tampered": check(f"Bearer {op[:-1]}{'A' if op[-1] != 'A' else 'B'}"),
        "expired": check(f"Bearer {op}", now=T0 + timedelta(hours=2)),
        "suspended": check(f"Bearer {pt}", why="suspended"),
    }
    assert all(isinstance(r, Refusal) for r in refusals.values())
    got = {k: (int(r.status), r.detail) for k, r in refusals.items() if isinstance(r, Refusal)}
    assert 401 == got["missing"][0]
    assert "crb token issue" in got["missing"][1]
    assert (401, "not a bearer token") == (got["basic"][0], got["basic"][1][:18])
    assert 401 == got["empty"][0]
    assert (401, "unknown token") == got["garbage"]
    assert (401, "unknown token") == got["tampered"]
    assert (401, f"token {rec.id} is expired") == got["expired"]
    assert (403, "participant nl.hotline is suspended") == got["suspended"]


def test_the_store_is_private_reloads_and_revokes(tmp_path: Path) -> None:
    """tokens.json is 0600 and holds no secret; another store object (the running
    tracker) sees an issue or a revocation on its next read, without restart."""
    path = tmp_path / "home" / "tokens.json"
    cli, tracker = TokenStore(path), TokenStore(path)
    assert {} == tracker.tokens()
    token, record = cli.issue("participant:nl.hotline", label="case system", now=T0)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert token not in path.read_text()
    assert record == tracker.tokens()[record.id]
    assert isinstance(authenticate(f"Bearer {token}", tracker.tokens(), NOW), Caller)
    revoked = cli.revoke(record.id, now=NOW)
    assert NOW == revoked.revoked_at
    assert NOW == cli.revoke(record.id, now=NOW + timedelta(hours=1)).revoked_at  # first time kept
    refused = authenticate(f"Bearer {token}", tracker.tokens(), NOW)
    assert isinstance(refused, Refusal)
    assert (401, f"token {record.id} is revoked") == (int(refused.status), refused.detail)
    with pytest.raises(TokenError, match="no token with id"):
        cli.revoke("000000000000", now=NOW)


def test_a_corrupt_store_lets_no_one_in(tmp_path: Path) -> None:
    """A store that is not a token file refuses everyone (401), never a 500."""
    path = tmp_path / "tokens.json"
    token, _ = TokenStore(path).issue(OPERATOR, now=T0)
    path.write_text("{not json")
    refused = Access(TokenStore(path).tokens, clock=lambda: NOW).check(f"Bearer {token}")
    assert isinstance(refused, Refusal)
    assert 401 == refused.status
    assert "token store unavailable" in refused.detail


# -- the HTTP matrix -----------------------------------------------------------------


@dataclass(frozen=True)
class World:
    handovers: list[Handover]
    tokens: dict[str, str]  # caller name -> Authorization header value ("" = none)
    nl_case: UUID
    de_case: UUID
    m_hotline: UUID  # de.hotline -> nl.hotline, received
    m_police: UUID  # de.hotline -> nl.police24, escalated to int.coordinator
    m_dead: UUID  # de.hotline, dead-lettered (no recipient)


@pytest.fixture
def world(tmp_path: Path) -> World:
    handovers = list(_ledger().handovers.values())
    store = TokenStore(tmp_path / "tokens.json")

    def issue(scope: str, **kw: object) -> str:
        token, _ = store.issue(scope, now=T0, **kw)  # type: ignore[arg-type]
        return f"Bearer {token}"

    tokens = {
        "anonymous": "",
        "basic": "Basic dXNlcjpwYXNz",
        "unknown": f"Bearer crb_{'0' * 12}_{'A' * 43}",
        "operator": issue(OPERATOR),
        "expired": issue(OPERATOR, ttl=timedelta(minutes=30)),
        "revoked": issue(OPERATOR),
        "de.hotline": issue("participant:de.hotline"),
        "nl.hotline": issue("participant:nl.hotline"),
        "nl.police24": issue("participant:nl.police24"),
        "int.coordinator": issue("participant:int.coordinator"),
        "fr.hotline": issue("participant:fr.hotline"),
        "be.hotline": issue("participant:be.hotline"),  # suspended below
    }
    revoked_id = tokens["revoked"].split("_")[1]
    store.revoke(revoked_id, now=T0)
    # The tampered token: the operator's id with another secret.
    op_id = tokens["operator"].split("_")[1]
    tokens["tampered"] = f"Bearer crb_{op_id}_{'B' * 43}"

    def key(recipient: str | None) -> UUID:
        return next(h.message_id for h in handovers if h.recipient == recipient)

    hotline = next(h for h in handovers if h.recipient == "nl.hotline")
    dead = next(h for h in handovers if h.recipient is None)
    return World(
        handovers=handovers,
        tokens=tokens,
        nl_case=hotline.case_id,
        de_case=dead.case_id,
        m_hotline=key("nl.hotline"),
        m_police=key("nl.police24"),
        m_dead=key(None),
    )


SUSPENDED = {"be.hotline": "suspended"}
Get = Callable[..., Awaitable[httpx.Response]]
UNAUTHENTICATED = ("anonymous", "basic", "unknown", "tampered", "expired", "revoked")

# Who sees which handover, written out: (message, recipient) by name.
SEES: dict[str, set[str]] = {
    "operator": {"hotline", "police", "dead"},
    "de.hotline": {"hotline", "police", "dead"},  # the sender of all three
    "nl.hotline": {"hotline"},
    "nl.police24": {"police"},
    "int.coordinator": {"police"},  # the escalation recipient
    "fr.hotline": set(),
}


@pytest.fixture
async def api(world: World, tmp_path: Path) -> AsyncIterator[Get]:
    access = Access(
        TokenStore(tmp_path / "tokens.json").tokens,
        participant_active=SUSPENDED.get,  # the directory's word
        clock=lambda: NOW,
    )
    app = create_app(lambda: world.handovers, access=access)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:

        async def get(caller: str, path: str, **params: str) -> httpx.Response:
            header = world.tokens[caller]
            headers = {"Authorization": header} if header else {}
            return await client.get(path, params=params, headers=headers)

        yield get


def _names(world: World, keys: list[str]) -> set[str]:
    by_key = {
        f"{world.m_hotline}/nl.hotline": "hotline",
        f"{world.m_police}/nl.police24": "police",
        f"{world.m_dead}/-": "dead",
    }
    return {by_key[k] for k in keys}


async def test_http_access_matrix(world: World, api: Get) -> None:
    """Every caller against every route: unauthenticated callers get 401 with
    WWW-Authenticate everywhere but /healthz; a suspended participant 403; others
    exactly the handovers they take part in — in lists, case and message views and
    route statistics — and 404 for the rest."""
    get = api
    attempts = refused = allowed = 0
    wrong: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            wrong.append(what)

    for caller in [*UNAUTHENTICATED, "be.hotline", *SEES]:
        routes: dict[str, dict[str, str]] = {
            "/whoami": {},
            "/handovers": {},
            "/routes": {},
            f"/cases/{world.nl_case}": {},
            f"/cases/{world.de_case}": {},
            f"/messages/{world.m_hotline}": {},
            f"/messages/{world.m_police}": {},
            f"/messages/{world.m_dead}": {},
        }
        health = await get(caller, "/healthz")
        expect(200 == health.status_code, f"{caller} /healthz {health.status_code}")
        for path, params in routes.items():
            attempts += 1
            r = await get(caller, path, **params)
            if caller in UNAUTHENTICATED or caller in SUSPENDED:
                code = 401 if caller in UNAUTHENTICATED else 403
                expect(code == r.status_code, f"{caller} {path}: {r.status_code}, want {code}")
                expect("detail" in r.json(), f"{caller} {path}: no JSON detail")
                expect(
                    (code == 401) == ("WWW-Authenticate" in r.headers),
                    f"{caller} {path}: WWW-Authenticate header",
                )
                refused += r.status_code == code
                continue
            sees = SEES[caller]
            body = r.json()
            if path == "/whoami":
                scope = "operator" if caller == "operator" else f"participant:{caller}"
                expect(scope == body.get("scope"), f"{caller} whoami {body}")
            elif path == "/handovers":
                got = _names(world, [h["key"] for h in body["handovers"]])
                expect(sees == got and len(sees) == body["count"], f"{caller} list {got}")
            elif path == "/routes":
                seen = sum(route["sent"] + route["dead_lettered"] for route in body["routes"])
                expect(len(sees) == seen, f"{caller} routes counted {seen}")
            else:
                visible = {
                    f"/cases/{world.nl_case}": {"hotline", "police"} & sees,
                    f"/cases/{world.de_case}": {"dead"} & sees,
                    f"/messages/{world.m_hotline}": {"hotline"} & sees,
                    f"/messages/{world.m_police}": {"police"} & sees,
                    f"/messages/{world.m_dead}": {"dead"} & sees,
                }[path]
                if not visible:
                    expect(404 == r.status_code, f"{caller} {path}: {r.status_code}, want 404")
                    refused += r.status_code == 404
                    continue
                got = _names(world, [h["key"] for h in body["handovers"]])
                expect(visible == got, f"{caller} {path}: {got}, want {visible}")
            expect(200 == r.status_code, f"{caller} {path}: {r.status_code}")
            allowed += r.status_code == 200
    print(f"http access matrix: attempts={attempts} refused={refused} allowed={allowed}")
    assert [] == wrong
    assert attempts == refused + allowed
    # 7 refused callers x 8 routes = 56, plus 404s for handovers of others: 3 each for
    # nl.hotline, nl.police24 and int.coordinator, 5 for fr.hotline = 14.
    assert (104, 70, 34) == (attempts, refused, allowed)


async def test_a_participant_filters_only_for_itself(world: World, api: Get) -> None:
    """?participant= narrows an operator's list; a participant may name itself but
    asking for another participant is 403 and says why."""
    get = api
    r = await get("operator", "/handovers", participant="int.coordinator")
    assert {"police"} == _names(world, [h["key"] for h in r.json()["handovers"]])
    own = await get("nl.hotline", "/handovers", participant="nl.hotline")
    assert 1 == own.json()["count"]
    other = await get("nl.hotline", "/handovers", participant="de.hotline")
    assert 403 == other.status_code
    assert "sees only its own handovers" in other.json()["detail"]


def test_the_participant_check_follows_the_directory() -> None:
    """directory_check asks the current directory: an active participant passes,
    an unknown one is named, and a suspension shows on the next check."""
    import keys
    from schemas import ParticipantStatus
    from tests.unit._federation import NOW as FED_NOW
    from tests.unit._federation import federation

    first = federation().directory()
    current = [first]
    check = directory_check(lambda: current[0])
    assert (None, None, "not in the directory") == (
        check("de.hotline"),
        check("nl.hotline"),
        check("fr.hotline"),
    )
    current[0] = keys.set_status(first, "nl.hotline", ParticipantStatus.SUSPENDED, now=FED_NOW)
    assert (None, "suspended") == (check("de.hotline"), check("nl.hotline"))
