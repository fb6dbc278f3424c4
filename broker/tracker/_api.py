"""The operators' HTTP JSON API (FastAPI; OpenAPI document at ``/openapi.json``).

Read-only views over whatever ``source()`` returns (the running tracker's committed
state, or a state rebuilt from the tracker topic). Bad input — a malformed UUID, an
unknown country code or state — is a 422 with a message saying which parameter is
wrong; an id with no handover is a 404.

Every route but ``/healthz`` needs a bearer token (:mod:`._access`): an operator
token sees everything, a participant token only the handovers it takes part in —
the others do not exist for it (404, and they are left out of lists and route
statistics). Refusals are JSON ``{"detail": ...}``: 401 (with ``WWW-Authenticate:
Bearer``) when the caller is not known, 403 when it may not do what it asked.
``/healthz`` says only whether the tracker is up and ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict

from broker.tracker import _views as views
from broker.tracker._access import Access, Caller, Refusal, visible_to
from broker.tracker._console import mount_console
from broker.tracker._deadletters import DeadLetter, RedriveError, redrive_refusal
from broker.tracker._health import HealthReport
from broker.tracker._machine import Handover, HandoverStore, InMemoryHandovers
from broker.tracker._store import SqliteHandovers
from broker.tracker._views import RouteStats
from broker.tracker._watch import HealthStrip
from schemas import ISO_3166_ALPHA2, PARTICIPANT_ID_PATTERN, HandoverState

__all__ = ["HandoverView", "create_app", "prometheus_text", "serve"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HandoverView(_Out):
    """A handover with the values operators ask for most, precomputed."""

    key: str
    """``<message_id>/<recipient>`` (``-`` for no recipient)."""
    overdue: bool
    """Raised overdue and still without a receipt (includes escalated and failed)."""
    seconds_to_receipt: float | None
    handover: Handover

    @classmethod
    def of(cls, h: Handover) -> HandoverView:
        t = h.time_to_receipt
        return cls(
            key=h.key,
            overdue=h.overdue,
            seconds_to_receipt=t.total_seconds() if t is not None else None,
            handover=h,
        )


class HandoverList(_Out):
    count: int
    """How many handovers match (``handovers`` holds at most ``limit`` of them)."""
    handovers: list[HandoverView]


class CaseView(_Out):
    case_id: UUID
    handovers: list[HandoverView]


class MessageView(_Out):
    message_id: UUID
    handovers: list[HandoverView]


class RoutesView(_Out):
    routes: list[RouteStats]


class Health(_Out):
    status: str
    """``ok``, ``starting`` or ``degraded`` (Kafka silent past the grace period)."""
    ready: bool
    kafka_seen_s: float | None = None
    """Seconds since Kafka last answered the tracker."""
    lag_records: int | None = None
    """Status records not folded yet, at the last probe."""
    stale_s: float | None = None
    """Seconds since the tracker was last caught up with the status topic."""
    detail: str = ""


class WhoAmI(_Out):
    token_id: str
    scope: str
    """``operator`` or ``participant:<id>``."""


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise HTTPException(
            status_code=422,
            detail=f"jurisdiction: not an ISO 3166-1 alpha-2 country code: {value!r}",
        )
    return code


def _list(hs: Iterable[Handover]) -> list[HandoverView]:
    return [HandoverView.of(h) for h in hs]


def _found(hs: list[Handover], what: str) -> list[HandoverView]:
    """The views of ``hs``; a 404 naming ``what`` when there is none."""
    if not hs:
        raise HTTPException(status_code=404, detail=f"no handover for {what}")
    return _list(hs)


_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"description": "No token, or an unknown, expired or revoked one."},
    403: {"description": "The token may not see this (another participant's, or its "
          "participant is no longer active)."},
}  # fmt: skip


def _caller(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """The authenticated caller of a request, or a 401/403 refusal."""
    access: Access = request.app.state.access
    found = access.check(authorization)
    if isinstance(found, Refusal):
        headers = {"WWW-Authenticate": "Bearer"} if found.status == 401 else None
        raise HTTPException(status_code=int(found.status), detail=found.detail, headers=headers)
    return found


Who = Annotated[Caller, Depends(_caller)]


def create_app(
    source: Callable[[], Iterable[Handover] | HandoverStore],
    *,
    access: Access,
    ready: Callable[[], bool] = lambda: True,
    console: Callable[[], SqliteHandovers] | None = None,
    health: Callable[[], HealthReport] | None = None,
    redrive: Redrive | None = None,
    strip: Callable[[], HealthStrip | None] | None = None,
) -> FastAPI:
    """The API over ``source()`` (called once per request), callers checked by
    ``access``. A :class:`HandoverStore` (the running tracker's) is queried by its
    indexes; any other iterable is filtered as it is read. With ``console`` (the
    running tracker's store), the operator console is served under ``/console``
    and the dead letters under ``/dead-letters``; ``redrive`` (the running
    tracker's) lets an operator token redrive one."""
    app = FastAPI(
        title="crb tracker",
        description="Where each (message, recipient) handover stands; overdue handovers; "
        "per-route time to receipt. Send `Authorization: Bearer <token>` "
        "(`crb token issue`); a participant's token sees only its own handovers.",
        version="1",
        responses=_REFUSALS,
        # FastAPI's /docs and /redoc pages load their scripts from public CDNs: blank
        # on an air-gapped network, and a third party on a police one. The OpenAPI
        # document itself stays at /openapi.json (any local viewer reads it).
        docs_url=None,
        redoc_url=None,
    )

    app.state.access = access
    if console is not None:
        mount_console(app, console, access=access, redrive=redrive, strip=strip)
        _dead_letter_routes(app, console, redrive)

    def seen(who: Caller, **filters: Any) -> Iterable[Handover]:
        """What ``who`` may see of the state, narrowed by ``filters`` (the keyword
        arguments of :meth:`HandoverStore.matching`)."""
        got = source()
        store = got if isinstance(got, HandoverStore) else InMemoryHandovers.of(got)
        found = store.matching(**filters)
        if who.participant is None:
            return found
        pid = who.participant
        return (h for h in found if visible_to(h, pid))

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Starting, or Kafka silent."}},
    )
    async def healthz() -> Response:
        """Whether the tracker is ready and Kafka answers it (503 if not, and why).
        No token needed; no case data."""
        if health is None:
            body = Health(status="ok" if ready() else "starting", ready=ready())
        else:
            r = health()
            body = Health(**vars(r))
        code = 200 if body.status == "ok" else 503
        return JSONResponse(body.model_dump(mode="json"), status_code=code)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(who: Who) -> PlainTextResponse:
        """Prometheus text: handovers by state, overdue by priority, the tracker's
        lag and how long since Kafka answered. Operator tokens only."""
        if who.participant is not None:
            raise HTTPException(status_code=403, detail="metrics need an operator token")
        got = source()
        store = got if isinstance(got, HandoverStore) else InMemoryHandovers.of(got)
        report = health() if health is not None else None
        looked = strip() if strip is not None else None
        return PlainTextResponse(
            prometheus_text(store, report, looked), media_type="text/plain; version=0.0.4"
        )

    @app.get("/whoami", response_model=WhoAmI)
    async def whoami(who: Who) -> WhoAmI:
        """The token's id and scope: a case system checks its token with this."""
        scope = "operator" if who.participant is None else f"participant:{who.participant}"
        return WhoAmI(token_id=who.token_id, scope=scope)

    @app.get("/handovers", response_model=HandoverList)
    async def handovers(
        who: Who,
        overdue: Annotated[
            bool | None, Query(description="Only overdue (true) or only not overdue (false).")
        ] = None,
        jurisdiction: Annotated[
            str | None, Query(description="ISO 3166-1 alpha-2, e.g. NL.")
        ] = None,
        state: Annotated[HandoverState | None, Query(description="Current state.")] = None,
        participant: Annotated[
            str | None,
            Query(
                pattern=PARTICIPANT_ID_PATTERN,
                description="Only handovers this participant takes part in (sender, "
                "recipient or escalation recipient).",
            ),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=100_000, description="At most this many handovers.")
        ] = 1000,
    ) -> HandoverList:
        if participant is not None and who.participant not in (None, participant):
            raise HTTPException(
                status_code=403,
                detail=f"a participant:{who.participant} token sees only its own handovers",
            )
        country = _country(jurisdiction)
        mine = seen(
            who,
            participant=participant or who.participant,
            overdue=overdue,
            jurisdiction=country,
            state=state,
        )
        found = views.select(mine, overdue=overdue, jurisdiction=country, state=state)
        return HandoverList(count=len(found), handovers=_list(found[:limit]))

    @app.get("/cases/{case_id}", response_model=CaseView)
    async def case(case_id: UUID, who: Who) -> CaseView:
        found = _found(views.by_case(seen(who, case_id=case_id), case_id), f"case {case_id}")
        return CaseView(case_id=case_id, handovers=found)

    @app.get("/messages/{message_id}", response_model=MessageView)
    async def message(message_id: UUID, who: Who) -> MessageView:
        found = _found(
            views.by_message(seen(who, message_id=message_id), message_id),
            f"message {message_id}",
        )
        return MessageView(message_id=message_id, handovers=found)

    @app.get("/routes", response_model=RoutesView)
    async def routes(who: Who) -> RoutesView:
        got = source()
        if isinstance(got, SqliteHandovers):
            return RoutesView(routes=got.route_stats(who.participant))
        return RoutesView(routes=views.route_stats(seen(who, participant=who.participant)))

    return app


Redrive = Callable[[int, int, str], Awaitable[DeadLetter]]
"""``(partition, offset, token id)`` → the dead letter, redriven (``Tracker.redrive``)."""


class DeadLetterView(_Out):
    """A dead letter (header fields only; never the payload)."""

    partition: int
    offset: int
    reason: str
    redrivable: bool
    why_not: str | None
    """Why it may not be redriven, if it may not."""
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    rejected_at: datetime | None
    sender: str | None
    size: int
    sha256: str
    truncated: bool
    message_id: str | None
    message_type: str | None
    case_id: str | None
    jurisdiction: str | None
    priority: str | None
    recipients: list[str]
    redriven_at: datetime | None
    redriven_by: str | None
    redrive_offset: int | None

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterView:
        why = redrive_refusal(d)
        fields = {**vars(d), "recipients": list(d.recipients)}
        return cls(**fields, redrivable=why is None, why_not=why)


class DeadLetterList(_Out):
    count: int
    dead_letters: list[DeadLetterView]


def _dead_letter_routes(
    app: FastAPI, store: Callable[[], SqliteHandovers], redrive: Redrive | None
) -> None:
    @app.get("/dead-letters", response_model=DeadLetterList)
    async def dead_letters(
        who: Who,
        reason: Annotated[str | None, Query(description="Only this reason.")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> DeadLetterList:
        """Dead letters, newest first; a participant token sees only those that came
        from its own outbox."""
        count, found = store().dead_letters(who.participant, reason=reason, limit=limit)
        return DeadLetterList(count=count, dead_letters=[DeadLetterView.of(d) for d in found])

    def _visible(who: Caller, partition: int, offset: int) -> DeadLetter:
        found = store().dead_letter(partition, offset)
        if found is None or (who.participant is not None and found.sender != who.participant):
            raise HTTPException(status_code=404, detail=f"no dead letter at {partition}/{offset}")
        return found

    @app.get("/dead-letters/{partition}/{offset}", response_model=DeadLetterView)
    async def dead_letter(partition: int, offset: int, who: Who) -> DeadLetterView:
        return DeadLetterView.of(_visible(who, partition, offset))

    @app.post(
        "/dead-letters/{partition}/{offset}/redrive",
        response_model=DeadLetterView,
        responses={409: {"description": "Can never succeed, or already redriven."},
                   503: {"description": "Kafka did not take it; nothing was sent."}},
    )  # fmt: skip
    async def redrive_one(partition: int, offset: int, who: Who) -> DeadLetterView:
        """Put the original bytes back into the outbox they came from (the router
        checks them all again); recorded, with the token's id, on the actions topic.
        Operator tokens only."""
        if who.participant is not None or redrive is None:
            raise HTTPException(status_code=403, detail="redrive needs an operator token")
        _visible(who, partition, offset)
        try:
            done = await redrive(partition, offset, who.token_id)
        except RedriveError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.detail) from exc
        return DeadLetterView.of(done)


def prometheus_text(
    store: HandoverStore, health: HealthReport | None, strip: HealthStrip | None = None
) -> str:
    """The tracker's metrics in Prometheus text format (counted when scraped)."""
    by_state: dict[str, int] = dict.fromkeys((s.value for s in HandoverState), 0)
    overdue: dict[str, int] = {"urgent": 0, "high": 0, "routine": 0}
    if isinstance(store, SqliteHandovers):
        by_state.update(store.count_by_state())
        overdue.update(store.count_overdue_by_priority())
    else:
        for h in store.matching():
            by_state[h.state.value] += 1
            if h.overdue:
                overdue[(h.priority.value if h.priority else "routine")] += 1
    lines = [
        "# HELP crb_tracker_handovers Handovers by current state.",
        "# TYPE crb_tracker_handovers gauge",
        *(f'crb_tracker_handovers{{state="{k}"}} {v}' for k, v in sorted(by_state.items())),
        "# HELP crb_tracker_overdue Handovers overdue (no receipt past the SLA), by priority.",
        "# TYPE crb_tracker_overdue gauge",
        *(f'crb_tracker_overdue{{priority="{k}"}} {v}' for k, v in sorted(overdue.items())),
    ]
    if health is not None:
        up = 1 if health.status == "ok" else 0
        lines += [
            "# HELP crb_tracker_up 1 when ready and Kafka answers within the grace period.",
            "# TYPE crb_tracker_up gauge",
            f"crb_tracker_up {up}",
        ]
        for name, value, text in (
            ("crb_tracker_lag_records", health.lag_records, "Status records not folded yet."),
            ("crb_tracker_stale_seconds", health.stale_s, "Seconds since last caught up."),
            ("crb_tracker_kafka_seen_seconds", health.kafka_seen_s,
             "Seconds since Kafka last answered."),
        ):  # fmt: skip
            if value is not None:
                lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
    if strip is not None:
        lines += [
            "# HELP crb_tracker_dead_letters Dead letters on the dead-letter topic.",
            "# TYPE crb_tracker_dead_letters gauge",
            f"crb_tracker_dead_letters {strip.dead_letters}",
            "# HELP crb_tracker_inbox_backlog_records Records a participant has not collected.",
            "# TYPE crb_tracker_inbox_backlog_records gauge",
            *(f'crb_tracker_inbox_backlog_records{{participant="{p}"}} {n}'
              for p, n, _ in strip.inbox_backlog),
        ]  # fmt: skip
        if strip.router_lag is not None:
            lines += [
                "# HELP crb_router_lag_records Outbox records the router has not decided.",
                "# TYPE crb_router_lag_records gauge",
                f"crb_router_lag_records {strip.router_lag}",
            ]
    return "\n".join(lines) + "\n"


async def serve(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    """Serve ``app`` with uvicorn in the running loop until ``stop`` is set.

    The socket listens before this first yields, so a client may connect as soon
    as the task was created (its connection waits in the backlog). Signals are left
    to the caller (who sets ``stop``), not taken by uvicorn.
    """
    import socket

    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((host, port))
    listening.listen(128)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopper.cancel()
        await task
        listening.close()
