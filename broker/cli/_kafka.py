"""``crb kafka fetch|up|down|status|logs``: the local Apache Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from broker.cli._common import CliError
from broker.cli._context import Context, uses
from broker.dev.kafka_local import (
    BrokerStartError,
    LocalKafka,
    LocalKafkaError,
    ensure_jars,
    external_port,
    find_java,
    kafka_version,
    write_compose_config,
)

__all__ = ["register"]

kafka_app = typer.Typer(help="Run a real Apache Kafka (KRaft) on loopback.", no_args_is_help=True)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Launcher state folder (default: $CRB_HOME/kafka)."),
]


def _launcher(ctx: Context, state_dir: Path | None) -> LocalKafka:
    return LocalKafka(state_dir or ctx.home / "kafka")


@kafka_app.command()
def fetch() -> None:
    """Check the JDK and download Kafka's jars from Maven Central once (cached)."""
    try:
        java = find_java()
        jars = ensure_jars()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    typer.echo(f"Kafka {kafka_version()} jars in {jars} (Java {java.major}: {java.executable})")


@kafka_app.command()
@uses()
def up(
    ctx: Context,
    *,
    nodes: Annotated[int, typer.Option(help="1, or 3 for a replicated cluster.")] = 1,
    port: Annotated[
        int | None, typer.Option(help="Client port of node 1 (free otherwise).")
    ] = None,
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the brokers.")] = 90.0,
) -> None:
    """Start the local Kafka (or keep the running one) and print its bootstrap address."""
    if nodes not in (1, 3):
        raise CliError(f"--nodes must be 1 or 3, not {nodes}", exit_code=2)
    try:
        bootstrap = _launcher(ctx, state_dir).up(nodes=nodes, port=port, timeout_s=timeout)
    except BrokerStartError as exc:
        typer.echo(exc.log_tail, err=True)
        raise CliError(str(exc)) from exc
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    typer.echo(bootstrap)


@kafka_app.command()
@uses()
def down(ctx: Context, *, state_dir: StateDir = None) -> None:
    """Stop the brokers this launcher started (and nothing else)."""
    try:
        stopped = _launcher(ctx, state_dir).down()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    typer.echo(f"stopped node(s) {', '.join(map(str, stopped))}" if stopped else "nothing running")


@kafka_app.command()
@uses()
def status(
    ctx: Context,
    *,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each node: pid, running, answering metadata, ports and folders."""
    try:
        rows = _launcher(ctx, state_dir).status()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no local Kafka: run `crb kafka up`")
    else:
        for r in rows:
            state = (
                "up"
                if r["running"] and r["answering"]
                else ("starting" if r["running"] else "down")
            )
            typer.echo(
                f"node {r['node']}: {state:8} {r['bootstrap']}  pid={r['pid']}  log={r['log_file']}"
            )
    if rows and not all(r["running"] for r in rows):
        raise typer.Exit(1)


@kafka_app.command()
@uses()
def logs(
    ctx: Context,
    *,
    node: Annotated[int | None, typer.Option(help="Only this node.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines per node.")] = 50,
    state_dir: StateDir = None,
) -> None:
    """Print the tail of each broker's log."""
    text = _launcher(ctx, state_dir).log_tail(node, lines)
    if not text:
        raise CliError("no local Kafka logs: run `crb kafka up`")
    typer.echo(text)


@kafka_app.command()
@uses()
def compose(
    ctx: Context,
    *,
    reset: Annotated[
        bool, typer.Option("--reset", help="Delete the compose cluster's data and secrets.")
    ] = False,
) -> None:
    """Write the secured configuration docker-compose.yml's Kafka nodes mount
    ($CRB_HOME/docker): fresh secrets (0600) and cluster id; the admin's login is
    kept where every crb command finds it."""
    folder = ctx.home / "docker"
    try:
        write_compose_config(folder, reset=reset)
    except LocalKafkaError as exc:
        raise CliError(str(exc), exit_code=2) from exc
    bootstrap = ",".join(f"127.0.0.1:{external_port(n)}" for n in (1, 2, 3))
    typer.echo(f"compose configuration in {folder}")
    typer.echo(
        f"next: CRB_UID=$(id -u) CRB_GID=$(id -g) docker compose up -d kafka-1 kafka-2 kafka-3\n"
        f"      export CRB_KAFKA__BOOTSTRAP={bootstrap}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
