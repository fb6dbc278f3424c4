"""A federation valid around the real clock (keys made at test time), for tests that
run services or adapters: unit tests with stand-ins and real-Kafka tests alike.

Participants: ``de.hotline`` and ``de.police`` (DE), ``nl.hotline``, ``nl.police`` and
``nl.police24`` (NL, the last a 24/7 police contact), ``int.coordinator``. FR has no
receiver, so FR cases take the orphan path to the coordinator. Built with the one
federation builder, ``keys.testing.Federation``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from adapters import ReceivedMessage, receipt_for
from adapters.kafka import TopicSettings
from broker.audit import AuditRecord
from broker.audit import authentic as audit_authentic
from broker.settings import RouterSettings, Settings
from keys import OpeningKey, RecordSigner, SigningKey, parse, seal
from keys.testing import Federation, MemberSpec, synthetic_referral
from schemas import (
    Category,
    DeliveryRule,
    Directory,
    Priority,
    Referral,
    Role,
    RoutingRules,
    ServiceRole,
    utcnow,
)
from tests._kafka import kafka_settings

MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("de.police", "DE", (Role.POLICE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,)),
    MemberSpec("nl.police24", "NL", (Role.POLICE_24X7,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)

RULES = RoutingRules(
    # Hotlines receive every case; police only trafficking; urgent cases also reach
    # the 24/7 police contact (the default urgent role).
    delivery=(
        DeliveryRule(roles=(Role.HOTLINE,)),
        DeliveryRule(roles=(Role.POLICE,), categories=(Category.TRAFFICKING,)),
    ),
    coordinator="int.coordinator",
    escalation_recipient="int.coordinator",
)


def now() -> datetime:
    return utcnow()


class LiveFederation:
    """The federation above, keys valid from 30 days ago for a year."""

    def __init__(self) -> None:
        self.start = now() - timedelta(days=30)
        self.fed = Federation(
            MEMBERS, not_before=self.start, not_after=self.start + timedelta(days=365), rules=RULES
        )
        self.root: SigningKey = self.fed.root
        self.signing: dict[str, SigningKey] = {p: m.signing for p, m in self.fed.members.items()}
        self.opening: dict[str, OpeningKey] = {p: m.opening for p, m in self.fed.members.items()}

    def directory(self, *, without: tuple[str, ...] = ()) -> Directory:
        return self.fed.directory(without=without)

    def signer(self, role: ServiceRole) -> RecordSigner:
        """The router's or the tracker's signing identity."""
        return self.fed.signer(role)

    def authentic(self, record: AuditRecord) -> bool:
        """Whether this federation's router signed ``record`` (``crb audit verify``)."""
        return audit_authentic(record, self.directory())

    def write(self, folder: Path) -> tuple[Path, Path]:
        """The CLI's files under ``folder``: ``keys/`` (every private key, the
        services' too), ``directory.json``, ``trust.json``, and the root public key
        as ``root.pub.pem``; returns (directory, root public key)."""
        files = self.fed.write(folder)
        root = folder / "root.pub.pem"
        root.write_bytes(self.root.verify_key.to_pem())
        return files.directory, root

    def receipt(self, original: bytes, *, by: str, at: datetime | None = None) -> bytes:
        """The signed receipt ``by`` (a recipient of ``original``) sends back for it,
        built by the adapter's own code."""
        at = at or now()
        received = ReceivedMessage.of(
            parse(original).header, recipient=by, digest=hashlib.sha256(original).hexdigest()
        )
        draft, receipt = receipt_for(received, received_at=at)
        return seal(
            draft, receipt, signing_key=self.signing[by], directory=self.directory(), now=at
        )

    def referral(
        self,
        *,
        sender: str = "de.hotline",
        jurisdiction: str = "NL",
        priority: Priority = Priority.ROUTINE,
        at: datetime | None = None,
        summary: str = "Synthetic test report about a hosted URL.",
        recipients: tuple[str, ...] = (),
        directory: Directory | None = None,
        extra_urls: int = 0,
    ) -> bytes:
        """A sealed referral envelope from ``sender``."""
        return self.fed.seal_referral(
            sender,
            make_referral(priority=priority, summary=summary, extra_urls=extra_urls),
            jurisdiction=jurisdiction,
            now=at or now(),
            recipients=recipients,
            directory=directory,
        )


def make_referral(
    *,
    priority: Priority = Priority.ROUTINE,
    summary: str = "Synthetic test report.",
    extra_urls: int = 0,
) -> Referral:
    """A CSAM referral hosted in NL (``1 + extra_urls`` URLs)."""
    return synthetic_referral(
        jurisdiction="NL", priority=priority, summary=summary, urls=1 + extra_urls
    )


def settings_for(bootstrap: str, prefix: str, *, partitions: int = 1) -> Settings:
    return Settings(
        kafka=kafka_settings(bootstrap),
        topics=TopicSettings(prefix=prefix, partitions=partitions),
        router=RouterSettings(
            group_id=f"{prefix}-router", transactional_id_prefix=f"{prefix}-router"
        ),
    )


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]
