"""``crb demo``: the end-to-end demonstration on a local, embedded Kafka."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.cli._common import CliError, free_port, require_port
from broker.cli._context import Context, uses
from broker.cli._router import stop_on_signals
from broker.dev.kafka_local import BrokerStartError, LocalKafka, LocalKafkaError
from broker.logs import configure_logging
from schemas import utcnow

if TYPE_CHECKING:
    from broker.dev.demo import DemoConfig, DemoReport

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
        bool,
        typer.Option(
            help="Keep everything running in the foreground (Kafka, router, tracker with "
            "the operator console, adapters) until Ctrl-C or SIGTERM, then stop it all."
        ),
    ] = False,
    port: Annotated[
        int | None, typer.Option(help="With --keep: the console's port (default: a free one).")
    ] = None,
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
    console_port = None
    if keep:
        console_port = port or free_port()
        require_port("127.0.0.1", console_port, "--port")
    config = DemoConfig(
        kafka=launcher.settings(),
        folder=folder,
        referrals=referrals,
        seed=seed,
        console_port=console_port,
    )
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

            def shown(report: DemoReport) -> None:
                bar.stop()
                _show(console, report)
                if console_port is not None:
                    token = _operator_token(folder)
                    console.print(f"console: http://127.0.0.1:{console_port}/")
                    console.print(f"operator token: {token}")
                    console.print("Running until Ctrl-C or SIGTERM.")

            report = asyncio.run(_run(run_demo, config, progress, shown, keep=keep))
    finally:
        if not was_running:
            launcher.down()
    if not report.ok:
        raise CliError(
            f"{report.expected_handovers - report.received_handovers} handovers not received "
            "or unexpected dead letters"
        )


async def _run(
    run_demo: Callable[..., Awaitable[DemoReport]],
    config: DemoConfig,
    progress: Callable[[str, int, int], None],
    shown: Callable[[DemoReport], None],
    *,
    keep: bool,
) -> DemoReport:
    stop: asyncio.Event | None = None
    if keep:
        stop = asyncio.Event()
        stop_on_signals(stop)
    return await run_demo(config, progress=progress, on_report=shown, keep=stop)


def _operator_token(folder: Path) -> str:
    """A fresh operator token for the console (12 h), in the demo's token store."""
    from broker.tracker import OPERATOR, TokenStore

    token, _ = TokenStore(folder / "tokens.json").issue(
        OPERATOR, label="demo console", ttl=timedelta(hours=12), now=utcnow()
    )
    return token


def _show(console: Console, report: DemoReport) -> None:
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
    case = Table(title="Case work")
    case.add_column("what")
    case.add_column("count", justify="right")
    case.add_row("referrals repeating another hotline's URL", str(report.repeats))
    case.add_row(
        "deconfliction notices: already referred (to the later hotline)",
        str(report.notices["already_referred"]),
    )
    case.add_row(
        "deconfliction notices: referred again (to the earlier hotline)",
        str(report.notices["referred_again"]),
    )
    case.add_row(
        f"hosting countries filled by lookup ({report.hosting_lookup})",
        str(report.hosting_filled),
    )
    case.add_row(
        f"urgent referrals {report.offline} (offline a while) did not answer in time",
        str(report.escalations_expected),
    )
    case.add_row(
        "escalated by their sender and received by the escalation recipient",
        str(report.escalations_delivered),
    )
    case.add_row(
        f"industry reporter's batch over HTTP: accepted of {report.industry_sent} "
        f"({report.industry_ms:.0f} ms)",
        str(report.industry_accepted),
    )
    console.print(case)
    console.print(
        f"{report.valid} valid referrals, {report.expected_handovers} handovers, "
        f"{report.received_handovers} received; {report.elapsed_s:.1f} s; "
        f"opened referrals in {report.inbox_folder}"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
