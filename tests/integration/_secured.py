"""A federation provisioned on the session's secured Kafka, as an operator would:
topics, the signed directory published on its topic, a SCRAM login per principal
(generated at test time, 0600) and exactly the ACLs the directory grants."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from adapters import publish_directory
from adapters.kafka import (
    ROUTER,
    TRACKER,
    CredentialStore,
    KafkaClients,
    KafkaSettings,
    OutRecord,
)
from broker import acls, topics
from broker.settings import Settings
from keys.testing import Federation, MemberSpec
from schemas import DeliveryRule, Directory, Role, RoutingRules, TopicNames, utcnow
from tests._fed import settings_for, unique_prefix
from tests.conftest import KafkaEndpoint

HOTLINE_MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)
"""Two hotlines and the coordinator: the smallest federation that routes."""
HOTLINE_RULES = RoutingRules(
    delivery=(DeliveryRule(roles=(Role.HOTLINE,)),),
    coordinator="int.coordinator",
    escalation_recipient="int.coordinator",
)
"""Cases go to the jurisdiction's hotline; the coordinator takes the rest and
escalations."""

ACCESS_MEMBERS = (
    MemberSpec("de.a", "DE", (Role.HOTLINE,)),
    MemberSpec("de.ab", "DE", (Role.POLICE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)


class Cluster:
    """A federation provisioned on the session's Kafka, and each principal's clients."""

    def __init__(
        self,
        kafka: KafkaEndpoint,
        tmp: Path,
        fed: Federation | None = None,
    ) -> None:
        now = utcnow()
        self.fed = fed or Federation(
            ACCESS_MEMBERS, not_before=now, not_after=now.replace(year=now.year + 1)
        )
        self.settings: Settings = settings_for(kafka.bootstrap, unique_prefix(), partitions=1)
        self.names = TopicNames(self.settings.topics.prefix)
        self.admin = KafkaClients(kafka.settings)
        self.store = CredentialStore(tmp / "credentials")
        for principal in (ROUTER, TRACKER, *self.fed.members):
            self.store.ensure(principal)

    async def provision(
        self, directory: Directory | None = None, *, seed: Iterable[str] = ()
    ) -> None:
        """Topics, the published directory, users and ACLs; then one ``seed`` record
        (written as the admin) on each topic named in ``seed``."""
        await self.operate(directory or self.fed.directory())
        producer = self.admin.producer()
        await producer.start()
        try:
            for topic in seed:
                await producer.send_and_wait(OutRecord(topic, b"k", b"seed"))
        finally:
            await producer.stop()

    async def operate(self, directory: Directory) -> None:
        """What the operator's commands do after a directory change: topics, publish
        the signed version, then converge users and ACLs."""
        await topics.apply(directory, self.admin, self.settings.topics)
        await self.publish(directory)
        await acls.apply(directory, self.settings, self.admin, self.store, now=utcnow())

    async def publish(self, directory: Directory) -> None:
        await publish_directory(self.admin, self.names.directory, self.fed.signed(directory))

    def login(self, principal: str) -> KafkaSettings:
        credential = self.store.load(principal)
        assert credential is not None
        return credential.apply(self.settings.kafka)

    def clients(self, principal: str) -> KafkaClients:
        return KafkaClients(self.login(principal))

    def settings_as(self, principal: str) -> Settings:
        return self.settings.model_copy(update={"kafka": self.login(principal)})
