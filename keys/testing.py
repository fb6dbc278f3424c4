"""Synthetic federations and referrals: for tests, vectors, the demo and benchmarks.

Never imported by a service (an import-linter contract says so). Everything it
makes is plainly synthetic: keys are generated when asked (or derived from
published seeds for the committed vectors), domains are ``example.org``, IPs are
documentation ranges, hashes are random.

:class:`Federation` is one builder for every federation the project needs::

    fed = Federation(
        [MemberSpec("de.hotline", "DE", (Role.HOTLINE,)), ...],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    fed.directory()                 # the Directory (version 1), every key valid
    fed.signed()                    # signed by the federation's root key
    fed.write(home)                 # keys/, directory.json, trust.json: the CLI's layout
    fed.seal_referral("de.hotline", synthetic_referral(), jurisdiction="NL", now=now)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from keys._deconfliction import DeconflictionKey, deconfliction_tags
from keys._directory import SignedDirectory, TrustStore, record_for, sign_directory
from keys._envelope import Draft, seal
from keys._files import atomic_write
from keys._keys import Kem, OpeningKey, SigningKey
from keys._keystore import FEDERATION_OWNER, Keystore
from keys._services import RecordSigner, service_owner
from schemas import (
    Category,
    Directory,
    HandlingCode,
    Participant,
    ParticipantStatus,
    Priority,
    Referral,
    Role,
    RoutingRules,
    Service,
    ServiceRole,
    uuid7,
)

__all__ = [
    "COORDINATOR",
    "Federation",
    "FederationFiles",
    "KeyMaker",
    "Member",
    "MemberSpec",
    "random_keys",
    "synthetic_referral",
]

COORDINATOR = "int.coordinator"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """Who a member is: id, the jurisdiction it receives for, roles, its KEM."""

    participant_id: str
    jurisdiction: str | None
    roles: tuple[Role, ...]
    kem: Kem = Kem.X25519
    status: ParticipantStatus = ParticipantStatus.ACTIVE


KeyMaker = Callable[[MemberSpec], tuple[SigningKey, OpeningKey]]
"""Makes a member's signing and opening keys (fresh, or from a seed for vectors)."""


def random_keys(spec: MemberSpec) -> tuple[SigningKey, OpeningKey]:
    """Fresh keys from the operating system's randomness."""
    return SigningKey.generate(), OpeningKey.generate(spec.kem)


@dataclass(slots=True)
class Member:
    """A member and its private keys."""

    spec: MemberSpec
    signing: SigningKey
    opening: OpeningKey

    @property
    def participant_id(self) -> str:
        return self.spec.participant_id


@dataclass(frozen=True, slots=True)
class FederationFiles:
    """Where :meth:`Federation.write` put things (the CLI's default layout)."""

    home: Path
    keystore: Path
    directory: Path
    trust_store: Path
    root_public_key: Path


def _coordinator_rules() -> RoutingRules:
    return RoutingRules(coordinator=COORDINATOR, escalation_recipient=COORDINATOR)


@dataclass
class Federation:
    """A whole federation: root key, members with their keys, routing rules."""

    specs: Iterable[MemberSpec]
    not_before: datetime
    not_after: datetime
    rules: RoutingRules = field(default_factory=_coordinator_rules)
    federation_id: str = "test-federation"
    issued_at: datetime | None = None
    """Defaults to ``not_before``."""
    keys: KeyMaker = random_keys
    root: SigningKey = field(default_factory=SigningKey.generate)
    services: Iterable[ServiceRole] = tuple(ServiceRole)
    """Services given a signing identity (generated; ``()`` for none)."""
    deconfliction: DeconflictionKey | None = field(
        default_factory=lambda: DeconflictionKey.generate(1)
    )
    """The members' shared deconfliction key (``None``: the federation has none)."""
    members: dict[str, Member] = field(init=False)
    service_keys: dict[ServiceRole, SigningKey] = field(init=False)

    def __post_init__(self) -> None:
        self.members = {}
        for spec in self.specs:
            signing, opening = self.keys(spec)
            self.members[spec.participant_id] = Member(spec, signing, opening)
        self.service_keys = {role: SigningKey.generate() for role in self.services}

    def signer(self, role: ServiceRole) -> RecordSigner:
        """The ``role`` service's signing identity (as its keystore would give it)."""
        return RecordSigner(role, self.service_keys[role])

    def signing(self, participant_id: str) -> SigningKey:
        return self.members[participant_id].signing

    def opening(self, participant_id: str) -> OpeningKey:
        return self.members[participant_id].opening

    def participant(self, participant_id: str) -> Participant:
        """A member as published: every category, both keys valid over the window."""
        m = self.members[participant_id]
        return Participant(
            participant_id=m.participant_id,
            display_name=m.participant_id,
            jurisdiction=m.spec.jurisdiction,
            roles=m.spec.roles,
            categories=tuple(Category),
            status=m.spec.status,
            keys=(
                record_for(
                    m.signing.verify_key, not_before=self.not_before, not_after=self.not_after
                ),
                record_for(
                    m.opening.sealing_key, not_before=self.not_before, not_after=self.not_after
                ),
            ),
        )

    def directory(self, *, without: Iterable[str] = (), version: int = 1) -> Directory:
        """The directory of every member but ``without``."""
        skip = set(without)
        return Directory(
            federation_id=self.federation_id,
            version=version,
            issued_at=self.issued_at or self.not_before,
            root_key_id=self.root.key_id,
            participants=tuple(self.participant(p) for p in self.members if p not in skip),
            rules=self.rules,
            services=tuple(
                Service(
                    role=role,
                    keys=(
                        record_for(
                            key.verify_key, not_before=self.not_before, not_after=self.not_after
                        ),
                    ),
                )
                for role, key in self.service_keys.items()
            ),
        )

    def signed(self, directory: Directory | None = None) -> SignedDirectory:
        return sign_directory(directory or self.directory(), self.root)

    def write(self, home: Path, *, passphrase: bytes | None = None) -> FederationFiles:
        """The keystore, the signed directory and the trust store under ``home``,
        where the CLI looks by default (``CRB_HOME=home crb ...``)."""
        files = FederationFiles(
            home=home,
            keystore=home / "keys",
            directory=home / "directory.json",
            trust_store=home / "trust.json",
            root_public_key=home / "keys" / FEDERATION_OWNER / f"{self.root.key_id}.pub.pem",
        )
        store = Keystore(files.keystore, passphrase)
        store.save_signing_key(FEDERATION_OWNER, self.root)
        for role, key in self.service_keys.items():
            store.save_signing_key(service_owner(role), key)
        if self.deconfliction is not None:
            store.save_deconfliction_key(FEDERATION_OWNER, self.deconfliction)
        for m in self.members.values():
            store.save_signing_key(m.participant_id, m.signing)
            store.save_opening_key(m.participant_id, m.opening)
            if self.deconfliction is not None:
                store.save_deconfliction_key(m.participant_id, self.deconfliction)
        directory = self.directory()
        atomic_write(files.directory, self.signed(directory).to_json(), mode=0o644)
        TrustStore(files.trust_store).accept(directory)
        return files

    def seal_referral(
        self,
        sender: str,
        referral: Referral,
        *,
        jurisdiction: str,
        now: datetime,
        recipients: tuple[str, ...] = (),
        directory: Directory | None = None,
        case_id: UUID | None = None,
        message_id: UUID | None = None,
        tagged: bool = False,
    ) -> bytes:
        """A referral envelope from ``sender`` (recipients resolved unless given);
        ``tagged``: with deconfliction tags under the federation's key."""
        key = self.deconfliction if tagged else None
        draft = Draft.for_referral(
            referral,
            sender=sender,
            jurisdiction=jurisdiction,
            case_id=case_id or uuid7(now),
            recipients=recipients,
            message_id=message_id,
            deconfliction=deconfliction_tags(referral, key) if key is not None else None,
        )
        return seal(
            draft,
            referral,
            signing_key=self.signing(sender),
            directory=directory or self.directory(),
            now=now,
        )


_INCIDENTS = (
    (Category.CSAM, "Gallery page with images assessed as CSAM."),
    (Category.GROOMING, "Adult user soliciting a minor in a chat room."),
    (Category.SEXTORTION, "Minor coerced to send images, then threatened."),
    (Category.TRAFFICKING, "Advertisement indicating trafficking of a minor."),
    (Category.LIVE_STREAMED_ABUSE, "Paid live stream of abuse announced in a forum."),
)
_NETS = ("192.0.2", "198.51.100", "203.0.113")


def synthetic_referral(
    *,
    rng: random.Random | None = None,
    jurisdiction: str = "NL",
    priority: Priority | None = None,
    category: Category | None = None,
    summary: str | None = None,
    urls: int = 1,
    reference: str | None = None,
    handling: HandlingCode = HandlingCode.H0,
    delete_after: date = date(2027, 12, 31),
) -> Referral:
    """A realistic, plainly synthetic referral hosted in ``jurisdiction``.

    Without ``rng`` every choice has a fixed default (CSAM, routine); with one,
    category, priority (routine or high), site types, hashes and IPs are drawn from
    it. URLs and the reporter's reference are unique per call either way.
    """
    tag = uuid.uuid4().hex[:12]
    draw = rng or random.Random(tag)  # noqa: S311 - synthetic data, not secrets
    if category is None:
        category = draw.choice(_INCIDENTS)[0] if rng else Category.CSAM
    text = summary or "Synthetic: " + dict(_INCIDENTS)[category]
    if priority is None:
        priority = draw.choice((Priority.ROUTINE, Priority.HIGH)) if rng else Priority.ROUTINE
    urgency: dict[str, Any] = {"priority": priority.value}
    if priority is Priority.URGENT:
        urgency["reason"] = "Synthetic: indications of ongoing abuse of an identifiable child."
    net = draw.choice(_NETS)
    return Referral.model_validate(
        {
            "reporter": {
                "reference": reference or f"TEST-{tag}",
                "memo": "Synthetic referral.",
            },
            "incident": {"type": category.value, "summary": text},
            "urgency": urgency,
            "urls": [
                {
                    "url": f"https://{draw.choice(('files', 'forum', 'social'))}{tag[:6]}"
                    f".example.org/item/{i:06d}",
                    "site_type": draw.choice(("image_host", "file_host", "forum", "social_site")),
                    "hosting": {
                        "country": jurisdiction,
                        "ip": f"{net}.{draw.randrange(1, 255)}",
                        "asn": draw.choice((64496, 64500, 64511)),
                    },
                }
                for i in range(urls)
            ],
            "items": [
                {
                    "media_type": "image",
                    "hashes": [
                        {"algorithm": "sha256", "value": f"{draw.getrandbits(256):064x}"},
                        {
                            "algorithm": "pdq",
                            "value": f"{draw.getrandbits(256):064x}",
                            "quality": 90,
                        },
                    ],
                    "classification": draw.choice(("baseline", "national")),
                    "age_group": draw.choice(("pre_pubescent", "pubescent")),
                    "url_index": 0,
                }
            ]
            if urls
            else [],
            "handling": {
                "code": handling.value,
                "source_reliability": "B",
                "information_accuracy": "2",
                "tlp": "AMBER",
            },
            "delete_after": delete_after.isoformat(),
        }
    )
