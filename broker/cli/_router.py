"""``crb topics apply|plan``, ``crb router run``, ``crb audit verify``."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer

from adapters.kafka import ROUTER, KafkaClients, Record, read_topic
from broker import audit as audit_mod
from broker import topics as topics_mod
from broker.cli._common import CliError, errors, require_port, run
from broker.cli._context import KAFKA, TRUST, Context, uses
from broker.logs import configure_logging
from schemas import ServiceRole, utcnow

__all__ = ["register", "stop_on_signals"]

topics_app = typer.Typer(help="Create the topics the directory implies.", no_args_is_help=True)
router_app = typer.Typer(help="The routing service.", no_args_is_help=True)
acl_app = typer.Typer(
    help="Kafka users and least-privilege ACLs derived from the directory.", no_args_is_help=True
)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (services finish or abort their transaction)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Only the main thread can install handlers (not so when embedded or tested).
        try:
            loop.add_signal_handler(sig, stop.set)
        except (ValueError, RuntimeError, NotImplementedError):
            return


@topics_app.command("apply")
@uses(KAFKA, TRUST)
def topics_apply(
    ctx: Context,
    *,
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic.")] = None,
    replication: Annotated[int | None, typer.Option(help="Replication factor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create every topic the directory implies (idempotent); report drift; publish
    the signed directory on the directory topic (the services follow it)."""
    from broker.cli._trust import publish_live

    given = {"partitions": partitions, "replication": replication}
    settings = ctx.build_settings(topics={k: v for k, v in given.items() if v})
    with errors():
        d = ctx.directory()
    created, drift = run(topics_mod.apply(d, ctx.clients, settings.topics))
    if as_json:
        drifted = [{"topic": i.topic, "problem": i.problem} for i in drift]
        typer.echo(json.dumps({"created": list(created), "drift": drifted}))
        publish_live(ctx, quiet=True)
        return
    for name in created:
        typer.echo(f"created {name}")
    for item in drift:
        typer.echo(f"drift   {item.topic}: {item.problem}")
    typer.echo(f"{len(created)} created, {len(drift)} drift")
    publish_live(ctx)


@topics_app.command("plan")
@uses(KAFKA, TRUST)
def topics_plan(ctx: Context) -> None:
    """Print the topics the directory implies (no Kafka needed)."""
    with errors():
        d = ctx.directory()
    for spec in topics_mod.plan(d, ctx.settings.topics):
        cfg = ",".join(f"{k}={v}" for k, v in spec.config.items())
        typer.echo(
            f"{spec.name}  partitions={spec.partitions} "
            f"replication={spec.replication or 'min(3, brokers)'} {cfg}"
        )


def _acl(ctx: Context, *, dry_run: bool, as_json: bool = False) -> None:
    from broker import acls

    with errors():
        d = ctx.directory()
    report = run(
        acls.apply(d, ctx.settings, ctx.clients, ctx.credentials, now=utcnow(), dry_run=dry_run)
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "applied": not dry_run,
                    "grant": [str(g) for g in report.created],
                    "revoke": [str(g) for g in report.removed],
                    "users_created": list(report.users_created),
                    "users_removed": list(report.users_removed),
                    "missing_credentials": list(report.missing_credentials),
                    "outside_federation": report.foreign,
                }
            )
        )
        return
    verb = ("grant", "revoke") if dry_run else ("granted", "revoked")
    for g in report.created:
        typer.echo(f"{verb[0]:8} {g}")
    for g in report.removed:
        typer.echo(f"{verb[1]:8} {g}")
    for u in report.users_created:
        typer.echo(f"user +   {u}")
    for u in report.users_removed:
        typer.echo(f"user -   {u}")
    for u in report.missing_credentials:
        typer.echo(f"missing  {u}: no credential in {ctx.credentials.folder}", err=True)
    typer.echo(
        f"{len(report.created)} to grant, {len(report.removed)} to revoke, "
        f"{report.foreign} outside this federation"
        if dry_run
        else f"{len(report.created)} granted, {len(report.removed)} revoked, "
        f"users +{len(report.users_created)} -{len(report.users_removed)}"
    )


@acl_app.command("plan")
@uses(KAFKA, TRUST)
def acl_plan(
    ctx: Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show what ``crb acl apply`` would change (the drift), without changing it."""
    _acl(ctx, dry_run=True, as_json=as_json)


@acl_app.command("apply")
@uses(KAFKA, TRUST)
def acl_apply(
    ctx: Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create the users and ACLs the directory grants; remove what it no longer grants."""
    _acl(ctx, dry_run=False, as_json=as_json)


@router_app.command("run")
@uses(KAFKA, TRUST)
def router_run(
    ctx: Context,
    *,
    group: Annotated[str | None, typer.Option(help="Consumer group of the routers.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on 127.0.0.1:PORT.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug logs every forward; info logs rejections and lifecycle.")
    ] = "info",
) -> None:
    """Run the router until SIGTERM/SIGINT (finishes or aborts its transaction, then exits).

    Its memory is kept in ``$CRB_HOME/router/memory.sqlite`` (``CRB_ROUTER__SNAPSHOT``):
    a restart reads only the audit records written since the last checkpoint."""
    from broker.router import Router, RouterMetrics

    settings = ctx.build_settings(router={"group_id": group} if group else {})
    if settings.router.snapshot is None:
        router_section = settings.router.model_copy(
            update={"snapshot": settings.home / "router" / "memory.sqlite"}
        )
        settings = settings.model_copy(update={"router": router_section})
    settings = settings.model_copy(update={"kafka": ctx.login(ROUTER)})
    try:
        configure_logging(log_level)
    except KeyError as exc:
        raise CliError(f"unknown --log-level {log_level!r}", exit_code=2) from exc
    clients = KafkaClients(settings.kafka)
    with errors():
        live, follower = ctx.follow(clients)
        signer = ctx.signer(ServiceRole.ROUTER)
    metrics = RouterMetrics()
    port = metrics_port or settings.router.metrics_port
    if port:
        require_port(settings.router.metrics_host, port, "--metrics-port")
        metrics.serve(settings.router.metrics_host, port)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        router = Router(
            settings, live, signer=signer, clients=clients, metrics=metrics, follower=follower
        )
        await follower.alongside(router.run(stop))

    run(main())


@audit_app.command("verify")
@uses(KAFKA, TRUST)
def audit_verify(
    ctx: Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check every audit chain and that the router signed every record; name the first
    broken link and every unauthenticated record. Exit 1 if any."""
    rows: list[tuple[str, bytes]] = []

    def take(r: Record) -> None:
        rows.append((r.where, r.value or b""))

    run(read_topic(ctx.clients, ctx.names.audit, take))
    with errors():
        directory = ctx.directory()
    counts, breaks = audit_mod.verify_chains(
        rows, authentic=lambda record: audit_mod.authentic(record, directory)
    )
    if as_json:
        typer.echo(json.dumps({"chains": counts, "breaks": [b.__dict__ for b in breaks]}))
    else:
        for chain, n in sorted(counts.items()):
            typer.echo(f"{chain}: {n} records")
        for b in breaks:
            typer.echo(f"BROKEN {b.chain} at record {b.position} ({b.where}): {b.problem}")
        typer.echo(f"{sum(counts.values())} records in {len(counts)} chains; {len(breaks)} broken")
    if breaks:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
    app.add_typer(router_app, name="router")
    app.add_typer(acl_app, name="acl")
    app.add_typer(audit_app, name="audit")
