"""The operator console: server-rendered pages over the tracker's handovers.

Served by the tracker next to its JSON API, under ``/console`` (``/`` redirects
there). Jinja2 templates with autoescaping, one stylesheet, no script needed for
any view; nothing is loaded from outside the tracker (air-gapped networks), and
the Content-Security-Policy says so.

Pages: the route board (sender x recipient, handovers per bucket —
:data:`~broker.tracker._views.BUCKETS` — and median / p95 time to receipt), needs
attention (overdue, escalated, failed, dead-lettered: urgent first, then the
oldest), search with every filter in the URL (:class:`~broker.tracker._views.Filters`)
and its CSV export, one page per handover (fields and timeline) and per case.
Header fields only: the tracker never has case content, so none can be shown.

Access is the API's (:mod:`._access`): the sign-in page takes a token and keeps it
in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/console``; a bearer
``Authorization`` header works too. Anonymous callers get the sign-in page and
nothing else; an operator token sees everything, a participant's only the
handovers it takes part in — the others do not exist for it (404).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from broker.tracker._access import Access, Caller, Refusal, visible_to
from broker.tracker._deadletters import DeadLetter, RedriveError, redrive_refusal
from broker.tracker._machine import Handover
from broker.tracker._store import SqliteHandovers
from broker.tracker._views import BUCKET_ORDER, BUCKETS, Filters, by_case
from broker.tracker._watch import HealthStrip
from schemas import DEAD_LETTER_REASONS, ISO_3166_ALPHA2, Category, HandoverState, Priority

__all__ = ["BASE", "COOKIE", "mount_console"]

BASE = "/console"
COOKIE = "crb_console"
PAGE_SIZE = 100
POLL_S = 1.0
"""How often the event stream looks for changes."""
HEARTBEAT_S = 15.0
RECONNECT_S = 3.0
CSV_MAX = 100_000
HERE = Path(__file__).parent / "console"

BUCKET_NAMES = {
    "in_flight": "in flight",
    "received": "received, decision awaited",
    "overdue": "overdue",
    "failed": "failed or dead-lettered",
    "done": "done",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

CSV_COLUMNS = (
    "message_id", "recipient", "case_id", "sender", "state", "priority", "category",
    "jurisdiction", "routed_at", "received_at", "decided_at", "closed_at", "due_at",
    "escalated_to", "attempts",
)  # fmt: skip


def _fmt(at: datetime | None) -> str:
    return "—" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


class _BadFilter(ValueError):
    pass


def _uuid(name: str, value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as exc:
        raise _BadFilter(f"{name}: not a UUID: {value!r}") from exc


def _instant(name: str, value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _BadFilter(f"{name}: not a date or time (e.g. 2026-11-01T00:00Z): {value!r}") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _enum(name: str, kind: type[Any], value: str) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        allowed = ", ".join(m.value for m in kind)
        raise _BadFilter(f"{name}: one of {allowed}; not {value!r}") from exc


def parse_filters(params: dict[str, str]) -> Filters:
    """Filters from URL query parameters; a ``_BadFilter`` names the bad one."""
    got = {k: v.strip() for k, v in params.items() if v.strip()}
    jurisdiction = got.get("jurisdiction", "").upper() or None
    if jurisdiction is not None and jurisdiction not in ISO_3166_ALPHA2:
        raise _BadFilter(f"jurisdiction: not an ISO 3166-1 alpha-2 code: {jurisdiction!r}")
    bucket = got.get("bucket")
    if bucket is not None and bucket not in BUCKET_ORDER:
        raise _BadFilter(f"bucket: one of {', '.join(BUCKET_ORDER)}; not {bucket!r}")
    return Filters(
        message_id=_uuid("message id", got["message_id"]) if "message_id" in got else None,
        case_id=_uuid("case id", got["case_id"]) if "case_id" in got else None,
        participant=got.get("participant"),
        sender=got.get("sender"),
        recipient=got.get("recipient"),
        jurisdiction=jurisdiction,
        state=_enum("state", HandoverState, got["state"]) if "state" in got else None,
        bucket=bucket,
        priority=_enum("priority", Priority, got["priority"]) if "priority" in got else None,
        category=_enum("category", Category, got["category"]) if "category" in got else None,
        since=_instant("since", got["since"]) if "since" in got else None,
        until=_instant("until", got["until"]) if "until" in got else None,
    )


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet must never run a cell as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(handovers: list[Handover]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for h in handovers:
        row: list[object] = [
            h.message_id, h.recipient, h.case_id, h.sender, h.state.value,
            h.priority.value if h.priority else None, h.category.value if h.category else None,
            h.jurisdiction, h.routed_at and h.routed_at.isoformat(),
            h.received_at and h.received_at.isoformat(),
            h.decided_at and h.decided_at.isoformat(), h.closed_at and h.closed_at.isoformat(),
            h.due_at and h.due_at.isoformat(), h.escalated_to, 1 + h.redeliveries,
        ]  # fmt: skip
        writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue()


class _Console:
    """What every console route shares: templates, the store, access checks."""

    def __init__(
        self, store: Callable[[], SqliteHandovers], access: Access, secure_cookie: bool
    ) -> None:
        self.store = store
        self.access = access
        self.secure_cookie = secure_cookie
        self.redrive: Callable[[int, int, str], Awaitable[DeadLetter]] | None = None
        self.strip: Callable[[], HealthStrip | None] | None = None
        self._csrf_key = secrets.token_bytes(32)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(fmt=_fmt, secs=_secs, base=BASE, bucket_names=BUCKET_NAMES)

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        who: Caller | None = context.get("who")
        if who is not None:
            context["scope"] = (
                "operator" if who.participant is None else f"participant {who.participant}"
            )
        if who is not None and who.participant is None and self.strip is not None:
            context.setdefault("strip", self.strip())
        template = self.env.get_template(name)
        if context.pop("fragment", False) and "live" in template.blocks:
            # What the live script fetches to refresh the list in place.
            html = "".join(template.blocks["live"](template.new_context(context)))
            return HTMLResponse(html, status_code=status)
        return HTMLResponse(template.render(**context), status_code=status)

    def csrf(self, request: Request) -> str:
        """The form token for this caller's session (bound to its sign-in token)."""
        token = (self.header_of(request) or "").encode()
        return hmac.new(self._csrf_key, token, hashlib.sha256).hexdigest()

    @staticmethod
    def header_of(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None and (token := request.cookies.get(COOKIE)):
            header = f"Bearer {token}"
        return header

    def caller(self, request: Request) -> Caller | Refusal:
        return self.access.check(self.header_of(request))

    def refused(self, found: Refusal) -> Response:
        if found.status == 401:
            return RedirectResponse(f"{BASE}/login", status_code=303)
        return self.render("error.html", status=int(found.status), title="Not allowed",
                           detail=found.detail, who=None)  # fmt: skip

    def not_found(self, who: Caller, what: str) -> HTMLResponse:
        return self.render("error.html", status=404, title="Not found",
                           detail=f"No handover for {what}.", who=who)  # fmt: skip

    def live(self, request: Request) -> dict[str, Any]:
        """What a live page needs: the change number it shows, and whether only its
        list is asked for (``?fragment=1``, the live script's refresh)."""
        return {
            "live": True,
            "seq": self.store().seq,
            "fragment": request.query_params.get("fragment") == "1",
        }

    @staticmethod
    def scoped(who: Caller, filters: Filters) -> Filters | None:
        """``filters`` narrowed to what ``who`` may see; ``None`` if it asks for
        another participant's handovers."""
        if who.participant is None:
            return filters
        if filters.participant not in (None, who.participant):
            return None
        return Filters(**{**vars(filters), "participant": who.participant})

    def search_of(self, request: Request, who: Caller) -> tuple[Filters | None, str | None, int]:
        """The filters and offset a search URL asks for, or the error naming the
        bad parameter."""
        params = dict(request.query_params)
        params.pop("fragment", None)
        try:
            offset = max(0, int(params.pop("offset", "0") or 0))
        except ValueError:
            return None, "offset: not a number", 0
        try:
            filters = parse_filters(params)
        except _BadFilter as exc:
            return None, str(exc), offset
        narrowed = self.scoped(who, filters)
        if narrowed is None:
            return None, f"a participant {who.participant} token sees only its own handovers", 0
        return narrowed, None, offset


def mount_console(
    app: FastAPI,
    store: Callable[[], SqliteHandovers],
    *,
    access: Access,
    secure_cookie: bool = False,
    redrive: Callable[[int, int, str], Awaitable[DeadLetter]] | None = None,
    strip: Callable[[], HealthStrip | None] | None = None,
) -> None:
    """Add the console's routes to ``app`` (the tracker's API app). ``store()`` is
    the running tracker's handover store; ``secure_cookie`` when served over TLS;
    ``redrive`` the running tracker's (else the console cannot redrive)."""
    c = _Console(store, access, secure_cookie)
    c.redrive = redrive
    c.strip = strip
    app.mount(f"{BASE}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith(BASE):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    _sign_in_routes(app, c)
    _live_routes(app, c)
    _overview_routes(app, c)
    _search_routes(app, c)
    _detail_routes(app, c)
    _dead_letter_routes(app, c)


def _sign_in_routes(app: FastAPI, c: _Console) -> None:
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{BASE}/", status_code=303)

    @app.get(f"{BASE}/login", include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return c.render("login.html", title="Sign in")

    @app.post(f"{BASE}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        form = parse_qs(body.decode("utf-8", "replace")) if len(body) <= 8192 else {}
        token = (form.get("token") or [""])[0].strip()
        found = c.access.check(f"Bearer {token}")
        if isinstance(found, Refusal):
            return c.render("login.html", status=int(found.status), title="Sign in",
                            error=found.detail)  # fmt: skip
        response = RedirectResponse(f"{BASE}/", status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=c.secure_cookie, path=BASE
        )
        return response

    @app.post(f"{BASE}/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse(f"{BASE}/login", status_code=303)
        response.delete_cookie(COOKIE, path=BASE)
        return response


def _event(seq: int, h: Handover) -> str:
    """One server-sent event: a handover changed (header fields only)."""
    data = {
        "key": h.key, "message_id": str(h.message_id), "case_id": str(h.case_id),
        "sender": h.sender, "recipient": h.recipient, "state": h.state.value,
        "bucket": BUCKETS[h.state], "priority": h.priority.value if h.priority else None,
        "overdue": h.overdue, "escalated_to": h.escalated_to,
    }  # fmt: skip
    return f"id: {seq}\nevent: handover\ndata: {json.dumps(data)}\n\n"


def _live_routes(app: FastAPI, c: _Console) -> None:
    @app.get(f"{BASE}/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        """Server-sent events: every handover the caller may see that changes, with
        the tracker's change number as the event id. ``Last-Event-ID`` (a browser
        reconnecting) or ``?after=N`` (the number the page was rendered at) says
        where to resume; without either, only what changes from now on."""
        who = c.caller(request)
        if isinstance(who, Refusal):
            return Response(who.detail, status_code=int(who.status), media_type="text/plain")
        resume = request.headers.get("last-event-id") or request.query_params.get("after")
        try:
            after = int(resume) if resume is not None else c.store().seq
        except ValueError:
            return Response("after: not a number", status_code=400, media_type="text/plain")

        async def stream() -> AsyncIterator[str]:
            nonlocal after
            yield f"retry: {int(RECONNECT_S * 1000)}\n\n"
            quiet = 0.0
            while not await request.is_disconnected():
                if c.access.check(c.header_of(request)) != who:
                    return  # the token was revoked or expired meanwhile
                for seq, h in c.store().changes(after, who.participant):
                    after = seq
                    yield _event(seq, h)
                    quiet = 0.0
                quiet += POLL_S
                if quiet >= HEARTBEAT_S:
                    yield ": still here\n\n"
                    quiet = 0.0
                await asyncio.sleep(POLL_S)  # the store is polled: changes land in batches

        return StreamingResponse(
            stream(), media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
        )  # fmt: skip


def _overview_routes(app: FastAPI, c: _Console) -> None:
    @app.get(f"{BASE}/", include_in_schema=False)
    async def board(request: Request) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        cells = c.store().board(who.participant)
        senders = sorted({cell.sender for cell in cells})
        recipients = sorted({cell.recipient for cell in cells}, key=lambda r: (r is None, r or ""))

        def query(**params: str | None) -> str:
            return urlencode({k: v if v is not None else "" for k, v in params.items()})

        return c.render(
            "board.html", title="Route board", page="board", who=who,
            cells={(cell.sender, cell.recipient): cell for cell in cells}, senders=senders,
            recipients=recipients, buckets=BUCKET_ORDER, query=query,
            total=sum(cell.total for cell in cells), **c.live(request),
        )  # fmt: skip

    @app.get(f"{BASE}/attention", include_in_schema=False)
    async def attention(request: Request) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        count, shown = c.store().attention(who.participant, limit=500)
        return c.render("attention.html", title="Needs attention", page="attention",
                        who=who, count=count, shown=shown, **c.live(request))  # fmt: skip


def _search_routes(app: FastAPI, c: _Console) -> None:
    @app.get(f"{BASE}/handovers", include_in_schema=False)
    async def search(request: Request) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        filters, error, offset = c.search_of(request, who)
        form = {k: v for k, v in request.query_params.items() if k not in ("offset", "fragment")}
        context: dict[str, Any] = {
            "title": "Search handovers", "page": "search", "who": who, "form": form,
            "error": error, "states": [s.value for s in HandoverState],
            "buckets": BUCKET_ORDER, "priorities": [p.value for p in Priority],
            "categories": [x.value for x in Category], "count": 0, "shown": [],
            "offset": offset, **c.live(request),
        }  # fmt: skip
        if filters is None:
            return c.render("search.html", status=400 if error else 200, **context)
        count, shown = c.store().search(filters, limit=PAGE_SIZE, offset=offset)
        context.update(
            count=count, shown=shown, here=urlencode(form),
            prev=urlencode({**form, "offset": max(0, offset - PAGE_SIZE)}),
            next=urlencode({**form, "offset": offset + PAGE_SIZE}),
        )  # fmt: skip
        return c.render("search.html", **context)

    @app.get(f"{BASE}/handovers.csv", include_in_schema=False)
    async def export(request: Request) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return Response(who.detail, status_code=int(who.status), media_type="text/plain")
        filters, error, _ = c.search_of(request, who)
        if filters is None:
            return Response(error or "bad filter", status_code=400, media_type="text/plain")
        _, shown = c.store().search(filters, limit=CSV_MAX)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return Response(
            to_csv(shown), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="handovers-{stamp}.csv"'},
        )  # fmt: skip


def _detail_routes(app: FastAPI, c: _Console) -> None:
    @app.get(f"{BASE}/handover/{{message_id}}/{{recipient}}", include_in_schema=False)
    async def handover(request: Request, message_id: str, recipient: str) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        try:
            mid = UUID(message_id)
        except ValueError:
            return c.not_found(who, f"message {message_id!r}")
        h = c.store().get(f"{mid}/{recipient}")
        if h is None or (who.participant is not None and not visible_to(h, who.participant)):
            return c.not_found(who, f"message {mid} to {recipient}")
        return c.render("handover.html", title=f"Handover {mid}", who=who, h=h)

    @app.get(f"{BASE}/case/{{case_id}}", include_in_schema=False)
    async def case(request: Request, case_id: str) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        try:
            cid = UUID(case_id)
        except ValueError:
            return c.not_found(who, f"case {case_id!r}")
        shown = by_case(c.store().matching(case_id=cid, participant=who.participant), cid)
        if not shown:
            return c.not_found(who, f"case {cid}")
        return c.render("case.html", title=f"Case {cid}", who=who, case_id=cid, shown=shown)


def _dead_letter_routes(app: FastAPI, c: _Console) -> None:
    @app.get(f"{BASE}/dead-letters", include_in_schema=False)
    async def dead_letters(request: Request) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        reason = request.query_params.get("reason") or None
        count, shown = c.store().dead_letters(who.participant, reason=reason, limit=500)
        return c.render(
            "dead_letters.html", title="Dead letters", page="dead", who=who, count=count,
            shown=shown, reason=reason, reasons=sorted(r.value for r in DEAD_LETTER_REASONS),
            refusal=redrive_refusal,
        )  # fmt: skip

    def visible(who: Caller, partition: int, offset: int) -> DeadLetter | None:
        found = c.store().dead_letter(partition, offset)
        if found is None or (who.participant is not None and found.sender != who.participant):
            return None
        return found

    def page(
        request: Request, who: Caller, d: DeadLetter, status: int = 200, **kw: Any
    ) -> Response:
        return c.render(
            "dead_letter.html", status=status, title=f"Dead letter {d.where}", page="dead",
            who=who, d=d, why_not=redrive_refusal(d),
            can_redrive=who.participant is None and c.redrive is not None,
            csrf=c.csrf(request), **kw,
        )  # fmt: skip

    @app.get(f"{BASE}/dead-letters/{{partition}}/{{offset}}", include_in_schema=False)
    async def dead_letter(request: Request, partition: int, offset: int) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        found = visible(who, partition, offset)
        if found is None:
            return c.render("error.html", status=404, title="Not found", who=who,
                            detail=f"No dead letter at {partition}/{offset}.")  # fmt: skip
        return page(request, who, found)

    @app.post(f"{BASE}/dead-letters/{{partition}}/{{offset}}/redrive", include_in_schema=False)
    async def redrive(request: Request, partition: int, offset: int) -> Response:
        who = c.caller(request)
        if isinstance(who, Refusal):
            return c.refused(who)
        found = visible(who, partition, offset)
        if found is None:
            return c.render("error.html", status=404, title="Not found", who=who,
                            detail=f"No dead letter at {partition}/{offset}.")  # fmt: skip
        if who.participant is not None or c.redrive is None:
            return page(request, who, found, status=403, error="Redrive needs an operator token.")
        body = await request.body()
        form = parse_qs(body.decode("utf-8", "replace")) if len(body) <= 8192 else {}
        sent = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(sent, c.csrf(request)):
            return page(request, who, found, status=403, error="The form expired: try again.")
        try:
            done = await c.redrive(partition, offset, who.token_id)
        except RedriveError as exc:
            return page(request, who, found, status=exc.status, error=exc.detail)
        return page(
            request, who, done,
            notice=f"Redriven into {done.source_topic} at offset {done.redrive_offset}.",
        )  # fmt: skip
