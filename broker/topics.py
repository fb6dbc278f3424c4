"""The topics a federation directory implies, and making the cluster have them.

Names follow ``schemas.TopicNames`` (a contract adapters in any language share).
:func:`plan` is pure (directory + settings -> wanted topics); :func:`diff` compares a
plan with what the cluster has (pure); :func:`apply` is the thin I/O shell that
creates what is missing and reports drift it will not fix by itself (a topic with
fewer partitions or other config than planned, or an outbox/inbox of a participant
that is no longer in the directory).

Sizes are explicit: outboxes and inboxes take a 1 MiB envelope with headroom, the
dead-letter topic more (any outbox record fits as is), so a size limit raised on
one topic shows as drift. Only the admin principal may change topic configs (ACLs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from adapters.kafka import KafkaClients, TopicDescription, TopicMissing, TopicSettings
from schemas import Directory, TopicNames

__all__ = [
    "Drift",
    "TopicError",
    "TopicSpec",
    "apply",
    "diff",
    "plan",
]


class TopicError(Exception):
    """Kafka refused to create a topic (bad config, not enough brokers, ACLs)."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int | None
    """``None`` only in a plan made without the cluster (``crb topics plan``)."""
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift:
    topic: str
    problem: str


def replication_for(settings: TopicSettings, brokers: int | None) -> int | None:
    """The replicas each topic gets: the setting, else as many as the cluster has
    brokers, at most 3 (``None`` when neither is known)."""
    if settings.replication is not None:
        return settings.replication
    return min(3, brokers) if brokers else None


def plan(
    directory: Directory, settings: TopicSettings, *, brokers: int | None = None
) -> list[TopicSpec]:
    """Every topic the directory implies, with partitions, replication and config.

    ``brokers``: how many the cluster has (for the default replication)."""
    names = TopicNames(settings.prefix)
    replication = replication_for(settings, brokers)
    base: dict[str, str] = {}
    if settings.min_insync_replicas is not None:
        base["min.insync.replicas"] = str(settings.min_insync_replicas)
    elif replication is not None and replication >= 3:
        base["min.insync.replicas"] = "2"
    specs: list[TopicSpec] = []

    def add(name: str, partitions: int, **config: str) -> None:
        specs.append(TopicSpec(name, partitions, replication, {**base, **config}))

    sized = {"max.message.bytes": str(settings.message_max_bytes)}
    outbox = {**sized, "retention.ms": str(settings.outbox_retention_ms)}
    inbox = {**sized, "retention.ms": str(settings.inbox_retention_ms)}
    for p in sorted(directory.participants, key=lambda p: p.participant_id):
        add(names.outbox(p.participant_id), settings.partitions, **outbox)
        add(names.inbox(p.participant_id), settings.partitions, **inbox)
    add(
        names.dlq,
        settings.partitions,
        **{
            "retention.ms": str(settings.dlq_retention_ms),
            "max.message.bytes": str(settings.dlq_message_max_bytes),
        },
    )
    add(names.audit, settings.partitions, **{"retention.ms": str(settings.audit_retention_ms)})
    add(names.actions, 1, **{"retention.ms": str(settings.audit_retention_ms)})
    add(names.status, settings.partitions, **{"cleanup.policy": "compact"})
    add(names.tracker, settings.partitions, **{"cleanup.policy": "compact"})
    add(
        names.directory,
        1,
        **{
            "cleanup.policy": "compact",
            "max.message.bytes": str(settings.directory_message_max_bytes),
        },
    )
    return specs


def diff(
    wanted: Iterable[TopicSpec], existing: Mapping[str, TopicDescription], prefix: str
) -> tuple[list[TopicSpec], list[Drift]]:
    """(topics to create, drift to report) — pure."""
    wanted = list(wanted)
    missing = [spec for spec in wanted if spec.name not in existing]
    drift: list[Drift] = []
    for spec in wanted:
        have = existing.get(spec.name)
        if have is None:
            continue
        if have.partitions < spec.partitions:
            drift.append(
                Drift(
                    spec.name, f"{have.partitions} partitions, directory implies {spec.partitions}"
                )
            )
        for key, value in spec.config.items():
            if key in have.config and have.config[key] != value:
                drift.append(Drift(spec.name, f"{key}={have.config[key]}, expected {value}"))
    wanted_names = {spec.name for spec in wanted}
    for name in sorted(existing):
        if name.startswith(f"{prefix}.") and name not in wanted_names:
            drift.append(Drift(name, "not implied by the directory (participant removed?)"))
    return missing, drift


async def apply(
    directory: Directory, clients: KafkaClients, topics: TopicSettings
) -> tuple[list[str], list[Drift]]:
    """Create the missing topics; return (created names, drift). Idempotent."""
    async with clients.admin() as admin:
        wanted = plan(directory, topics, brokers=await admin.brokers())
        ours = [t for t in await admin.list_topics() if t.startswith(f"{topics.prefix}.")]
        existing = await admin.describe(ours + [s.name for s in wanted])
        missing, drift = diff(wanted, existing, topics.prefix)
        # A concurrent apply may have created some: that is the wanted state.
        problems = await admin.create_topics(
            (s.name, s.partitions, s.replication or 1, s.config) for s in missing
        )
    if problems:
        topic, problem = problems[0]
        raise TopicError(f"cannot create {topic}: {problem}")
    for spec in missing:
        await _visible(clients, spec.name)
    return [s.name for s in missing], drift


async def _visible(clients: KafkaClients, topic: str, timeout_s: float = 30.0) -> None:
    """Wait until the metadata names ``topic``: a topic is created by the controller
    and reaches the brokers' metadata a moment later; whoever uses it next (the
    directory's publication, a service starting) should not see it missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await clients.partitions(topic)
            return
        except TopicMissing:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline
