"""``crb demo``: the end-to-end demonstration on a local, embedded Kafka."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.cli._common import CliError
from broker.cli._context import Context, uses
from broker.dev.kafka_local import BrokerStartError, LocalKafka, LocalKafkaError
from broker.logs import configure_logging

__all__ = ["register"]


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


@uses()
def demo(
    ctx: Context,
    *,
    referrals: Annotated[int, typer.Option(min=10, max=5000, help="How many to push.")] = 300,
    keep: Annotated[
        bool, typer.Option(help="Leave Kafka and the services running; print how to reach them.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed for the synthetic data.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every receipt.")] = 180.0,
) -> None:
    """Run the whole flow on a local Kafka and print the delivery table.

    A demo federation, the router, the tracker and an adapter per participant; a few
    hundred synthetic referrals. Exit 0 only if every valid referral was received.
    """
    from broker.dev.demo import DemoConfig, run_demo

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # CI logs and pipes: keep a route on one line
    configure_logging(logging.ERROR)
    # aiokafka reports transient start-up conditions (coordinator not yet available)
    # at ERROR through stdlib logging; the demo's own checks decide what is an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    launcher = LocalKafka(ctx.home / "kafka")
    was_running = any(row["running"] for row in launcher.status())
    try:
        with console.status("starting the local Apache Kafka…"):
            bootstrap = launcher.up(nodes=len(launcher.nodes()) or 1)
    except BrokerStartError as exc:
        typer.echo(exc.log_tail, err=True)
        raise CliError(str(exc)) from exc
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from exc
    console.print(f"Kafka at {bootstrap} ({'already running' if was_running else 'started'})")

    folder = ctx.home / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    config = DemoConfig(kafka=launcher.settings(), folder=folder, referrals=referrals, seed=seed)
    columns = (
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            tasks: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                label = {"send": "sealing and sending", "receive": "receipts back"}[stage]
                if stage not in tasks:
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

            report = asyncio.run(run_demo(config, progress=progress))
    finally:
        if not keep and not was_running:
            launcher.down()

    table = Table(title=f"Delivery by route (topic prefix {report.prefix})")
    for name in ("route", "sent", "received", "median to receipt", "p99 to receipt"):
        table.add_column(name, justify="left" if name == "route" else "right")
    for row in report.routes:
        table.add_row(
            f"{row.sender} → {row.recipient}",
            str(row.sent),
            str(row.received),
            _fmt(row.median_s),
            _fmt(row.p99_s),
        )
    table.add_row(
        "all routes",
        str(sum(r.sent for r in report.routes)),
        str(report.received_handovers),
        "",
        "",
        style="bold",
    )
    console.print(table)
    dead = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.dead_letters.items()))
    console.print(f"dead-lettered: {sum(report.dead_letters.values())} ({dead or 'none'})")
    console.print(
        f"{report.valid} valid referrals, {report.expected_handovers} handovers, "
        f"{report.received_handovers} received; {report.elapsed_s:.1f} s; "
        f"opened referrals in {report.inbox_folder}"
    )
    if keep:
        console.print(
            f"Kafka left running at {bootstrap}; stop it with `.venv/bin/crb kafka down`.\n"
            f"Look around: CRB_HOME={folder} .venv/bin/crb handovers --bootstrap {bootstrap} "
            f"--prefix {report.prefix}"
        )
    if not report.ok:
        raise CliError(
            f"{report.expected_handovers - report.received_handovers} handovers not received "
            "or unexpected dead letters"
        )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
