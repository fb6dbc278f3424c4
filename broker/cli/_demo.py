"""``crb demo``: the end-to-end demonstration on a local, embedded Kafka."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.cli._common import CliError, crb_home
from broker.kafka_local import BrokerStartError, LocalKafka, LocalKafkaError

__all__ = ["register"]


def demo(
    keep: Annotated[bool, typer.Option(help="Leave the local Kafka running afterwards.")] = False,
) -> None:
    """Start the local Kafka if none is running and show where it is."""
    launcher = LocalKafka(crb_home() / "kafka")
    already = any(row["running"] for row in launcher.status())
    try:
        bootstrap = launcher.up(nodes=len(launcher.nodes()) or 1)
    except BrokerStartError as exc:
        typer.echo(exc.log_tail, err=True)
        raise CliError(str(exc)) from exc
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    for row in launcher.status():
        typer.echo(
            f"node {row['node']}: {'up' if row['answering'] else 'down'} at {row['bootstrap']}"
        )
    typer.echo(f"Kafka bootstrap: {bootstrap}")
    if keep or already:
        typer.echo("left running: stop it with `.venv/bin/crb kafka down`")
    else:
        launcher.down()
        typer.echo("stopped the local Kafka again (use --keep to leave it running)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
