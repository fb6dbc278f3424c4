"""``crb topics apply|plan``, ``crb router run``, ``crb audit verify``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from broker import audit as audit_mod
from broker import topics as topics_mod
from broker.cli._common import CliError, crb_home
from broker.cli._trust import (
    DEFAULT_PASSPHRASE_ENV,
    DirectoryOpt,
    RootOpt,
    TrustOpt,
    _errors,
    _Paths,
)
from broker.logs import configure_logging
from broker.settings import KafkaSettings, RouterSettings, Settings, TopicSettings
from schemas import Directory

__all__ = ["register"]

T = TypeVar("T")

topics_app = typer.Typer(help="Create the topics the directory implies.", no_args_is_help=True)
router_app = typer.Typer(help="The routing service.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)

BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap (default: $CRB_KAFKA__BOOTSTRAP or local)."),
]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="Topic name prefix (crb).")]


def _local_bootstrap() -> str | None:
    from broker.kafka_local import LocalKafka, LocalKafkaError

    try:
        return LocalKafka(crb_home() / "kafka").bootstrap
    except LocalKafkaError:
        return None


def build_settings(
    bootstrap: str | None,
    prefix: str | None,
    *,
    partitions: int | None = None,
    replication: int | None = None,
    router: dict[str, object] | None = None,
) -> Settings:
    """Environment settings, overridden by the CLI flags that were given."""
    try:
        base = Settings()
        kafka = base.kafka
        if bootstrap:
            kafka = kafka.model_copy(update={"bootstrap": bootstrap})
        elif "CRB_KAFKA__BOOTSTRAP" not in os.environ:
            local = _local_bootstrap()
            if local:
                kafka = kafka.model_copy(update={"bootstrap": local})
        topic_updates: dict[str, object] = {}
        if prefix:
            topic_updates["prefix"] = prefix
        if partitions:
            topic_updates["partitions"] = partitions
        if replication:
            topic_updates["replication"] = replication
        return base.model_copy(
            update={
                "kafka": KafkaSettings.model_validate(kafka.model_dump()),
                "topics": TopicSettings.model_validate(
                    {**base.topics.model_dump(), **topic_updates}
                ),
                "router": RouterSettings.model_validate(
                    {**base.router.model_dump(), **(router or {})}
                ),
            }
        )
    except ValueError as exc:
        raise CliError(f"invalid settings: {exc}".splitlines()[0], exit_code=2) from exc


def load_directory(directory: Path | None, root_key: Path | None, trust: Path | None) -> Directory:
    """The signed directory, verified against the pinned root key (rollback refused)."""
    with _errors():
        return _Paths(None, directory, trust, root_key, DEFAULT_PASSPHRASE_ENV).load()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(coro)
    except KafkaError as exc:
        raise CliError(f"Kafka: {type(exc).__name__}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot reach Kafka: {exc}") from exc


@topics_app.command("apply")
def topics_apply(
    bootstrap: BootstrapOpt = None,
    prefix: PrefixOpt = None,
    partitions: Annotated[int | None, typer.Option(help="Partitions per topic.")] = None,
    replication: Annotated[int | None, typer.Option(help="Replication factor.")] = None,
    directory: DirectoryOpt = None,
    root_key: RootOpt = None,
    trust_store: TrustOpt = None,
) -> None:
    """Create every topic the directory implies (idempotent); report drift."""
    settings = build_settings(bootstrap, prefix, partitions=partitions, replication=replication)
    d = load_directory(directory, root_key, trust_store)
    created, drift = _run(topics_mod.apply(d, settings.kafka, settings.topics))
    for name in created:
        typer.echo(f"created {name}")
    for item in drift:
        typer.echo(f"drift   {item.topic}: {item.problem}")
    typer.echo(f"{len(created)} created, {len(drift)} drift")


@topics_app.command("plan")
def topics_plan(
    prefix: PrefixOpt = None,
    directory: DirectoryOpt = None,
    root_key: RootOpt = None,
    trust_store: TrustOpt = None,
) -> None:
    """Print the topics the directory implies (no Kafka needed)."""
    settings = build_settings("unused:0", prefix)
    for spec in topics_mod.plan(load_directory(directory, root_key, trust_store), settings.topics):
        cfg = ",".join(f"{k}={v}" for k, v in spec.config.items())
        typer.echo(
            f"{spec.name}  partitions={spec.partitions} replication={spec.replication} {cfg}"
        )


@router_app.command("run")
def router_run(
    bootstrap: BootstrapOpt = None,
    prefix: PrefixOpt = None,
    directory: DirectoryOpt = None,
    root_key: RootOpt = None,
    trust_store: TrustOpt = None,
    group: Annotated[str | None, typer.Option(help="Consumer group of the routers.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on 127.0.0.1:PORT.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="debug logs every forward; info logs rejections and lifecycle.")
    ] = "info",
) -> None:
    """Run the router until SIGTERM/SIGINT (finishes or aborts its transaction, then exits)."""
    from broker.router import Router, RouterMetrics

    router_overrides: dict[str, object] = {}
    if group:
        router_overrides["group_id"] = group
    settings = build_settings(bootstrap, prefix, router=router_overrides)
    try:
        configure_logging(log_level)
    except KeyError as exc:
        raise CliError(f"unknown --log-level {log_level!r}", exit_code=2) from exc
    d = load_directory(directory, root_key, trust_store)
    metrics = RouterMetrics()
    port = metrics_port or settings.router.metrics_port
    if port:
        metrics.serve(settings.router.metrics_host, port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Router(settings, d, metrics=metrics).run(stop)

    _run(main())


@audit_app.command("verify")
def audit_verify(
    bootstrap: BootstrapOpt = None,
    prefix: PrefixOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check every audit chain; name the first broken link. Exit 1 if any is broken."""
    settings = build_settings(bootstrap, prefix)
    rows = _run(read_topic(settings.kafka, topics_mod.TopicNames(settings.topics.prefix).audit))
    counts, breaks = audit_mod.verify_chains(rows)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "chains": counts,
                    "breaks": [b.__dict__ for b in breaks],
                }
            )
        )
    else:
        for chain, n in sorted(counts.items()):
            typer.echo(f"{chain}: {n} records")
        for b in breaks:
            typer.echo(f"BROKEN {b.chain} at record {b.position} ({b.where}): {b.problem}")
        typer.echo(f"{sum(counts.values())} records in {len(counts)} chains; {len(breaks)} broken")
    if breaks:
        raise typer.Exit(1)


async def read_topic(kafka: KafkaSettings, topic: str) -> list[tuple[str, bytes]]:
    """Every committed record of a topic, as (coordinates, value), partition by partition."""
    return [(where, value) for where, value, _ in await read_records(kafka, topic)]


async def read_records(
    kafka: KafkaSettings, topic: str
) -> list[tuple[str, bytes, dict[str, bytes]]]:
    """Every committed record of a topic, as (coordinates, value, headers)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from broker.kafka_util import partitions_of
    from broker.settings import client_kwargs

    partitions = await partitions_of(client_kwargs(kafka), topic)
    if not partitions:
        raise CliError(f"topic {topic} does not exist")
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    rows: list[tuple[str, bytes, dict[str, bytes]]] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for r in batch.get(tp, []):
                    rows.append(
                        (
                            f"{tp.topic}/{tp.partition}@{r.offset}",
                            r.value or b"",
                            dict(r.headers or ()),
                        )
                    )
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return rows


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
    app.add_typer(router_app, name="router")
    app.add_typer(audit_app, name="audit")
