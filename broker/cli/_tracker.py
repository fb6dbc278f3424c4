"""``crb tracker run``, ``crb status CASE_OR_MESSAGE_ID``, ``crb handovers``.

``status`` and ``handovers`` read the compacted tracker topic from the beginning to
its end (the committed state), print and exit: they need no running tracker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import structlog
import typer

from adapters.kafka import TRACKER, KafkaClients
from broker.cli._common import CliError, errors, require_port, run
from broker.cli._context import KAFKA, TRUST, Context, uses
from broker.cli._router import stop_on_signals
from broker.logs import configure_logging
from schemas import ISO_3166_ALPHA2, HandoverState, ServiceRole, utcnow

if TYPE_CHECKING:
    from broker.tracker import Handover

__all__ = ["format_handover", "register"]

tracker_app = typer.Typer(help="The handover tracker.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


_NEXT = {
    HandoverState.OVERDUE: "becomes overdue",
    HandoverState.ESCALATED: "escalates",
    HandoverState.FAILED: "fails",
}


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "-"


def format_handover(h: Handover, *, history: bool = False) -> list[str]:
    """Text lines for one handover (pure)."""
    flags = []
    if h.overdue and h.overdue_at is not None:
        flags.append(f"OVERDUE since {_t(h.overdue_at)}")
    if h.escalated_to:
        flags.append(f"escalated to {h.escalated_to} at {_t(h.escalated_at)}")
    if h.failed_at is not None:
        flags.append(f"failed at {_t(h.failed_at)}")
    if h.due_at is not None and h.due_state is not None:
        flags.append(
            f"{_NEXT.get(h.due_state, h.due_state.value)} at {_t(h.due_at)} unless received"
        )
    ttr = h.time_to_receipt
    lines = [
        f"{h.key}  case {h.case_id}  {h.sender} -> {h.recipient or '-'}  "
        f"{h.state.value}  priority {h.priority.value if h.priority else '-'}  "
        f"jurisdiction {h.jurisdiction or '-'}  routed {_t(h.routed_at)}  "
        f"received {_t(h.received_at)}"
        + (f" ({ttr.total_seconds():.1f} s)" if ttr is not None else "")
        + (f"  [{'; '.join(flags)}]" if flags else "")
    ]
    if history:
        if h.history_dropped:
            lines.append(f"    ({h.history_dropped} earlier entries dropped)")
        for x in h.history:
            extra = " ".join(
                part
                for part in (
                    f"reason={x.reason.value}" if x.reason else "",
                    f"to={x.escalated_to}" if x.escalated_to else "",
                    f"({x.disposition.value}: {x.note})"
                    if x.note
                    else ("" if x.disposition.value == "applied" else f"({x.disposition.value})"),
                )
                if part
            )
            lines.append(f"    {_t(x.at)}  {x.state.value}  {extra}".rstrip())
    return lines


def _load(ctx: Context) -> list[Handover]:
    from broker.tracker import read_state

    configure_logging(logging.WARNING, library_warnings=False)  # stdout stays parseable
    with errors():
        directory = ctx.directory()
    return list(run(read_state(ctx.clients, ctx.names.tracker, directory)).values())


def _dump(items: Iterable[Handover]) -> list[dict[str, object]]:
    from broker.tracker import HandoverView

    return [HandoverView.of(h).model_dump(mode="json") for h in items]


@tracker_app.command("run")
@uses(KAFKA, TRUST)
def tracker_run(
    ctx: Context,
    *,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="Serve the HTTP API on 127.0.0.1:PORT.")
    ] = None,
    escalate_to: Annotated[
        str | None,
        typer.Option(
            "--escalate-to",
            help="Escalation recipient (default: the directory's routing rules).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug logs every status event (with its trace id).")
    ] = "info",
) -> None:
    """Run the tracker (and its HTTP API) until SIGTERM/SIGINT.

    The API answers bearer tokens from ``crb token issue`` (re-read when they
    change); a participant's token stops working once the directory no longer lists
    the participant as active. Its handovers are kept in
    ``$CRB_HOME/tracker/state.sqlite`` (``CRB_TRACKER__SNAPSHOT``): a restart reads
    only the tracker-topic records written since."""
    from broker.tracker import Access, TokenStore, Tracker, create_app, serve

    settings = ctx.settings.model_copy(update={"kafka": ctx.login(TRACKER)})
    if settings.tracker.snapshot is None:
        section = settings.tracker.model_copy(
            update={"snapshot": settings.home / "tracker" / "state.sqlite"}
        )
        settings = settings.model_copy(update={"tracker": section})
    clients = KafkaClients(settings.kafka)
    with errors():
        live, follower = ctx.follow(clients)
        signer = ctx.signer(ServiceRole.TRACKER)
    escalation = escalate_to or live.current.rules.escalation_recipient
    port = http_port or settings.tracker.http_port
    try:
        configure_logging(log_level)
    except KeyError as exc:
        raise CliError(f"unknown --log-level {log_level!r}", exit_code=2) from exc
    log = structlog.get_logger("crb.tracker")
    store = TokenStore(settings.tokens_path)
    if port:
        require_port(settings.tracker.http_host, port, "--http-port")
        with errors():
            issued = store.tokens()
        if not any(t.status(utcnow()) == "active" for t in issued.values()):
            log.warning(
                "api_no_tokens",
                tokens=str(store.path),
                hint="every request but /healthz is refused; crb token issue --operator",
            )

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        tracker = Tracker(
            settings, escalation, clients=clients, directory=live, signer=signer, follower=follower
        )
        api = None
        if port:
            access = Access.of(store, lambda: live.current)
            app = create_app(
                tracker.handovers,
                access=access,
                ready=tracker.ready.is_set,
                console=tracker.handovers,
                health=tracker.health_report,
                redrive=lambda p, o, by: tracker.redrive(p, o, by=by),
                strip=lambda: tracker.watch.strip,
            )
            api = asyncio.create_task(serve(app, settings.tracker.http_host, port, stop))
        try:
            await follower.alongside(tracker.run(stop))
        finally:
            stop.set()
            if api is not None:
                await api

    run(main())


@uses(KAFKA, TRUST)
def status(
    ctx: Context,
    some_id: Annotated[str, typer.Argument(metavar="CASE_OR_MESSAGE_ID_OR_REFERENCE")],
    *,
    participant: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Find a case by a reference (yours, the referring hotline's, or the one "
            "an agency accepted it under) in this participant's adapter state.",
        ),
    ] = None,
    wait: Annotated[
        HandoverState | None,
        typer.Option(
            "--wait",
            help="Wait until a handover of it reaches this state (e.g. routed, received, "
            "accepted), up to --timeout.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds --wait waits at most.")
    ] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Every handover of a case (or of a message), with its history. Exit 1 if none
    (or if --wait timed out).

    References (e.g. NL-2026-0042) are case data: they never travel in clear, so
    only a participant that sent or opened them knows them — give --as."""
    from broker.tracker import find, reached

    wanted, matches = _resolve(ctx, some_id, participant)
    kind, found = _find_all(find, _load(ctx), wanted)
    if wait is not None:
        deadline = time.monotonic() + timeout
        while not any(reached(h, wait) for h in found):
            if time.monotonic() >= deadline:
                raise CliError(
                    f"no handover of {some_id} reached {wait.value} within {timeout:g}s "
                    "(is the router, tracker or recipient running?)"
                )
            time.sleep(0.5)  # polling the tracker topic, as a person re-running status would
            kind, found = _find_all(find, _load(ctx), wanted)
    if as_json:
        body: dict[str, object] = {"id": some_id, "kind": kind, "handovers": _dump(found)}
        if matches is not None:
            body["references"] = matches
        typer.echo(json.dumps(body))
    else:
        for h in found:
            for line in format_handover(h, history=True):
                typer.echo(line)
        if found:
            typer.echo(f"{len(found)} handovers of {kind} {some_id}")
    if not found:
        if not as_json:
            typer.echo(f"no handover for {kind} {some_id}", err=True)
        raise typer.Exit(1)


def _resolve(
    ctx: Context, some_id: str, participant: str | None
) -> tuple[list[UUID], list[dict[str, str]] | None]:
    """The ids to look up: the UUID given, or the case ids a reference names in
    ``participant``'s adapter state (with the matching index entries)."""
    try:
        return [UUID(some_id)], None
    except ValueError:
        pass
    if participant is None:
        raise CliError(
            f"not a case or message id (UUID): {some_id!r}; to find a case by its "
            "reference, give --as PARTICIPANT (only participants that sent or opened a "
            "reference know it)",
            exit_code=2,
        )
    from adapters import StateStore

    folder = ctx.adapter_state(participant)
    if not (folder / "adapter.sqlite3").exists():
        raise CliError(f"--as {participant}: no adapter state in {folder}", exit_code=2)
    with errors(), StateStore(folder) as store:
        entries = store.find_reference(some_id)
    if not entries:
        raise CliError(f"{participant} knows no case with reference {some_id!r}")
    cases = sorted({e.case_id for e in entries})
    matches = [
        {"kind": e.kind.value, "message_id": str(e.message_id), "case_id": str(e.case_id)}
        for e in entries
    ]
    return cases, matches


def _find_all(
    find: Callable[[list[Handover], UUID], tuple[str, list[Handover]]],
    state: list[Handover],
    wanted: list[UUID],
) -> tuple[str, list[Handover]]:
    kinds, found = set(), []
    for w in wanted:
        k, hs = find(state, w)
        kinds.add(k)
        found.extend(hs)
    return ("case" if "case" in kinds else "message"), found


@uses(KAFKA, TRUST)
def handovers(
    ctx: Context,
    *,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue handovers.")] = False,
    jurisdiction: Annotated[
        str | None, typer.Option("--jurisdiction", help="Only this jurisdiction (e.g. NL).")
    ] = None,
    state: Annotated[
        HandoverState | None, typer.Option("--state", help="Only handovers in this state.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List handovers, optionally only overdue ones / of one jurisdiction / in one state."""
    from broker.tracker import select

    code = jurisdiction.strip().upper() if jurisdiction is not None else None
    if code is not None and code not in ISO_3166_ALPHA2:
        raise CliError(f"not an ISO 3166-1 alpha-2 country code: {jurisdiction!r}", exit_code=2)
    found = select(
        _load(ctx),
        overdue=True if overdue else None,
        jurisdiction=code,
        state=state,
    )
    if as_json:
        typer.echo(json.dumps({"count": len(found), "handovers": _dump(found)}))
        return
    for h in found:
        for line in format_handover(h):
            typer.echo(line)
    typer.echo(f"{len(found)} handovers")


def register(app: typer.Typer) -> None:
    app.add_typer(tracker_app, name="tracker")
    app.command("status")(status)
    app.command("handovers")(handovers)
