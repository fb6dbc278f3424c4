"""A federation for real-Kafka tests, valid around the real clock (keys made at test time).

Participants: ``de.hotline`` and ``de.police`` (DE), ``nl.hotline``, ``nl.police`` and
``nl.police24`` (NL, the last a 24/7 police contact), ``int.coordinator``. FR has no
receiver, so FR cases take the orphan path to the coordinator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from broker.settings import KafkaSettings, RouterSettings, Settings, TopicSettings
from keys import Draft, Kem, OpeningKey, SigningKey, record_for, seal, sign_directory
from schemas import (
    Category,
    DeliveryRule,
    Directory,
    HandlingCode,
    Participant,
    Priority,
    Referral,
    Role,
    RoutingRules,
    uuid7,
)

MEMBERS: dict[str, tuple[str | None, tuple[Role, ...]]] = {
    "de.hotline": ("DE", (Role.HOTLINE,)),
    "de.police": ("DE", (Role.POLICE,)),
    "nl.hotline": ("NL", (Role.HOTLINE,)),
    "nl.police": ("NL", (Role.POLICE,)),
    "nl.police24": ("NL", (Role.POLICE_24X7,)),
    "int.coordinator": (None, (Role.COORDINATOR,)),
}


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LiveFederation:
    root: SigningKey = field(default_factory=SigningKey.generate)
    signing: dict[str, SigningKey] = field(default_factory=dict)
    opening: dict[str, OpeningKey] = field(default_factory=dict)
    start: datetime = field(default_factory=lambda: now() - timedelta(days=30))

    def __post_init__(self) -> None:
        for pid in MEMBERS:
            self.signing[pid] = SigningKey.generate()
            self.opening[pid] = OpeningKey.generate(Kem.X25519)

    def directory(self, *, without: tuple[str, ...] = ()) -> Directory:
        end = self.start + timedelta(days=365)
        participants = []
        for pid, (jurisdiction, roles) in MEMBERS.items():
            if pid in without:
                continue
            participants.append(
                Participant(
                    participant_id=pid,
                    display_name=pid,
                    jurisdiction=jurisdiction,
                    roles=roles,
                    categories=tuple(Category),
                    keys=(
                        record_for(
                            self.signing[pid].verify_key, not_before=self.start, not_after=end
                        ),
                        record_for(
                            self.opening[pid].sealing_key, not_before=self.start, not_after=end
                        ),
                    ),
                )
            )
        return Directory(
            federation_id="test-federation",
            version=1,
            issued_at=self.start,
            root_key_id=self.root.key_id,
            participants=tuple(participants),
            rules=RoutingRules(
                # Hotlines receive every case; police only trafficking; urgent cases
                # also reach the 24/7 police contact (the default urgent role).
                delivery=(
                    DeliveryRule(roles=(Role.HOTLINE,)),
                    DeliveryRule(roles=(Role.POLICE,), categories=(Category.TRAFFICKING,)),
                ),
                coordinator="int.coordinator",
                escalation_recipient="int.coordinator",
            ),
        )

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Signed directory and root public key as files, for the CLI."""
        folder.mkdir(parents=True, exist_ok=True)
        directory = folder / "directory.json"
        directory.write_bytes(sign_directory(self.directory(), self.root).to_json())
        root = folder / "root.pub.pem"
        root.write_bytes(self.root.verify_key.to_pem())
        return directory, root

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
        at = at or now()
        ref = make_referral(priority=priority, summary=summary, extra_urls=extra_urls)
        d = Draft(
            sender=sender,
            case_id=uuid7(at),
            jurisdiction=jurisdiction,
            category=ref.incident.type,
            priority=priority,
            handling_code=HandlingCode.H0,
            recipients=recipients,
        )
        return seal(
            d,
            ref,
            signing_key=self.signing[sender],
            directory=directory or self.directory(),
            now=at,
        )


def make_referral(
    *,
    priority: Priority = Priority.ROUTINE,
    summary: str = "Synthetic test report.",
    extra_urls: int = 0,
) -> Referral:
    urgency: dict[str, object] = {"priority": priority.value}
    if priority is Priority.URGENT:
        urgency["reason"] = "Synthetic: ongoing abuse indicated in the report."
    return Referral.model_validate(
        {
            "reporter": {"reference": f"TEST-{uuid.uuid4().hex[:12]}"},
            "incident": {"type": "csam", "summary": summary},
            "urgency": urgency,
            "urls": [
                {
                    "url": f"https://{uuid.uuid4().hex[:8]}.example.org/item/{i}",
                    "hosting": {"country": "NL", "ip": f"192.0.2.{10 + i % 200}"},
                }
                for i in range(1 + extra_urls)
            ],
            "handling": {
                "code": "H0",
                "source_reliability": "A",
                "information_accuracy": "1",
                "tlp": "AMBER",
            },
            "delete_after": date(2027, 12, 31).isoformat(),
        }
    )


def settings_for(bootstrap: str, prefix: str, *, partitions: int = 1) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap=bootstrap),
        topics=TopicSettings(prefix=prefix, partitions=partitions),
        router=RouterSettings(
            group_id=f"{prefix}-router", transactional_id_prefix=f"{prefix}-router"
        ),
    )


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]
