"""Topic names, and the topics a federation directory implies.

Names are a convention with a configurable prefix (default ``crb``)::

    <prefix>.outbox.<participant>   a participant writes only here (Kafka ACL)
    <prefix>.inbox.<participant>    a participant reads only here
    <prefix>.dlq                    every rejected record, with its original bytes
    <prefix>.audit                  hash-chained decisions (kept forever by default)
    <prefix>.status                 handover status events (compacted)
    <prefix>.tracker                the tracker's own handover state (compacted)

:func:`plan` is pure (directory + settings -> wanted topics); :func:`diff` compares a
plan with what the cluster has (pure); :func:`apply` is the thin I/O shell that
creates what is missing and reports drift it will not fix by itself (a topic with
fewer partitions or other config than planned, or an outbox/inbox of a participant
that is no longer in the directory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from broker.settings import KafkaSettings, TopicSettings, client_kwargs
from schemas import Directory

__all__ = [
    "Drift",
    "TopicError",
    "TopicNames",
    "TopicSpec",
    "apply",
    "describe",
    "diff",
    "plan",
]


class TopicError(Exception):
    """Kafka refused to create a topic (bad config, not enough brokers, ACLs)."""


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "crb"

    def outbox(self, participant: str) -> str:
        return f"{self.prefix}.outbox.{participant}"

    def inbox(self, participant: str) -> str:
        return f"{self.prefix}.inbox.{participant}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def tracker(self) -> str:
        return f"{self.prefix}.tracker"

    @property
    def outbox_pattern(self) -> str:
        """Regex matching every outbox topic (for the router's subscription)."""
        return "^" + self.prefix.replace(".", r"\.") + r"\.outbox\..+$"

    def participant_of_outbox(self, topic: str) -> str | None:
        head = f"{self.prefix}.outbox."
        return topic[len(head) :] if topic.startswith(head) else None


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift:
    topic: str
    problem: str


def plan(directory: Directory, settings: TopicSettings) -> list[TopicSpec]:
    """Every topic the directory implies, with partitions, replication and config."""
    names = TopicNames(settings.prefix)
    base: dict[str, str] = {}
    if settings.min_insync_replicas is not None:
        base["min.insync.replicas"] = str(settings.min_insync_replicas)
    specs: list[TopicSpec] = []

    def add(name: str, partitions: int, **config: str) -> None:
        specs.append(TopicSpec(name, partitions, settings.replication, {**base, **config}))

    for p in sorted(directory.participants, key=lambda p: p.participant_id):
        add(names.outbox(p.participant_id), settings.partitions)
        add(names.inbox(p.participant_id), settings.partitions)
    add(names.dlq, settings.partitions, **{"retention.ms": str(settings.dlq_retention_ms)})
    add(names.audit, settings.partitions, **{"retention.ms": str(settings.audit_retention_ms)})
    add(names.status, settings.partitions, **{"cleanup.policy": "compact"})
    add(names.tracker, settings.partitions, **{"cleanup.policy": "compact"})
    return specs


@dataclass(frozen=True)
class Existing:
    partitions: int
    config: Mapping[str, str]


def diff(
    wanted: Iterable[TopicSpec], existing: Mapping[str, Existing], prefix: str
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


async def describe(kafka: KafkaSettings, names: Iterable[str]) -> dict[str, Existing]:
    """Partition counts and configs of the given topics that exist."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        present = set(await admin.list_topics())
        wanted = [n for n in names if n in present]
        if not wanted:
            return {}
        described = await admin.describe_topics(wanted)
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        configs: dict[str, dict[str, str]] = {n: {} for n in wanted}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
        )
        for response in responses:
            for resource in response.resources:
                topic = resource[3]
                for entry in resource[4]:
                    configs.setdefault(topic, {})[entry[0]] = entry[1]
        return {n: Existing(partitions.get(n, 0), configs.get(n, {})) for n in wanted}
    finally:
        await admin.close()


async def apply(
    directory: Directory, kafka: KafkaSettings, topics: TopicSettings
) -> tuple[list[str], list[Drift]]:
    """Create the missing topics; return (created names, drift). Idempotent."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = plan(directory, topics)
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        all_topics = [t for t in await admin.list_topics() if t.startswith(f"{topics.prefix}.")]
    finally:
        await admin.close()
    existing = await describe(kafka, all_topics + [s.name for s in wanted])
    missing, drift = diff(wanted, existing, topics.prefix)
    if missing:
        admin = AIOKafkaAdminClient(**client_kwargs(kafka))
        await admin.start()
        try:
            new = [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
                for s in missing
            ]
            # A concurrent apply may have created them: that is the wanted state.
            with contextlib.suppress(TopicAlreadyExistsError):
                response = await admin.create_topics(new)
                for topic, code, *rest in response.topic_errors:
                    if code not in (0, TopicAlreadyExistsError.errno):
                        message = rest[0] if rest else ""
                        raise TopicError(f"cannot create {topic}: error {code} {message}")
        finally:
            await admin.close()
    return [s.name for s in missing], drift
