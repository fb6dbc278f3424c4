"""The federation directory: participants, their public keys, and routing rules.

The directory is data signed by the federation's root key (``keys/`` signs
:meth:`Directory.canonical_bytes`). Routing reads only this and the header; see
:mod:`schemas._routing` for how the rules are applied.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, PrivateAttr, StringConstraints, model_validator

from ._common import (
    SCHEMA_VERSION,
    Category,
    CountryCode,
    FederationId,
    FrozenModel,
    KeyId,
    ParticipantId,
    Priority,
    ShortText,
    UtcDatetime,
    canonical_json,
    unique,
    unique_sorted,
)

MAX_PARTICIPANTS = 10_000
MAX_KEYS_PER_PARTICIPANT = 16
MAX_RULES = 4_096


class Role(StrEnum):
    """What a participant is; routing rules select receivers by role."""

    HOTLINE = "hotline"
    POLICE = "police"
    POLICE_24X7 = "police_24x7"
    """The jurisdiction's round-the-clock police contact: receives urgent cases."""
    COORDINATOR = "coordinator"
    """Receives cases for jurisdictions with no active receiver (orphan path)."""
    REGIONAL_BODY = "regional_body"
    """E.g. Europol or the EU Centre: receives standing copies."""
    ELECTRONIC_SERVICE_PROVIDER = "electronic_service_provider"
    """An industry reporter (NCMEC's "electronic service provider"): an online
    service reporting what it found on its own service. It sends referrals — which
    reach only the hotlines of the jurisdiction (the coordinator when there is
    none): no police, no urgent or standing copies — and receives back only
    receipts and case decisions about its own referrals, never a referral, a
    standing copy or a deconfliction notice."""


class ParticipantStatus(StrEnum):
    """Whether a participant may send and receive."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    """Keeps its identity and keys (old signatures stay verifiable), receives and
    sends nothing."""


class KeyKind(StrEnum):
    """What a key is for: signing or encryption."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"


class KeyAlgorithm(StrEnum):
    """The algorithm of a published key."""

    ED25519 = "ed25519"
    """Signing."""
    X25519 = "x25519"
    """HPKE DHKEM(X25519), encryption."""
    MLKEM768_X25519 = "mlkem768-x25519"
    """HPKE hybrid ML-KEM-768 + X25519 (X-Wing), encryption."""


class KeyEncoding(StrEnum):
    """How a published key is encoded."""

    SPKI_DER = "spki-der"
    """DER SubjectPublicKeyInfo."""
    RAW = "raw"
    """The algorithm's raw public key bytes."""


_KIND_OF: dict[KeyAlgorithm, KeyKind] = {
    KeyAlgorithm.ED25519: KeyKind.SIGNING,
    KeyAlgorithm.X25519: KeyKind.ENCRYPTION,
    KeyAlgorithm.MLKEM768_X25519: KeyKind.ENCRYPTION,
}

# Exact decoded sizes where they are fixed (None: any size up to the field limit).
_KEY_SIZES: dict[tuple[KeyAlgorithm, KeyEncoding], int | None] = {
    (KeyAlgorithm.ED25519, KeyEncoding.RAW): 32,
    (KeyAlgorithm.ED25519, KeyEncoding.SPKI_DER): 44,
    (KeyAlgorithm.X25519, KeyEncoding.RAW): 32,
    (KeyAlgorithm.X25519, KeyEncoding.SPKI_DER): 44,
    (KeyAlgorithm.MLKEM768_X25519, KeyEncoding.RAW): 1216,
    (KeyAlgorithm.MLKEM768_X25519, KeyEncoding.SPKI_DER): None,
}

Base64Key = Annotated[
    str,
    StringConstraints(min_length=4, max_length=4096, pattern=r"^[A-Za-z0-9+/]+={0,2}$"),
]
"""Standard base64 (RFC 4648 §4) with padding."""


class PublicKeyRecord(FrozenModel):
    """One public key of a participant and its validity.

    A key is usable at ``t`` when ``not_before <= t < not_after`` and it was not
    revoked at or before ``t`` (:meth:`is_valid_at`). ``kind`` must match
    ``algorithm`` (ed25519 signs; x25519 and mlkem768-x25519 encrypt).
    """

    key_id: KeyId
    kind: KeyKind
    algorithm: KeyAlgorithm
    encoding: KeyEncoding = KeyEncoding.SPKI_DER
    public_key: Base64Key
    not_before: UtcDatetime
    not_after: UtcDatetime
    revoked_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if _KIND_OF[self.algorithm] is not self.kind:
            raise ValueError(f"{self.algorithm} keys are {_KIND_OF[self.algorithm]} keys")
        if self.not_before >= self.not_after:
            raise ValueError("not_before must be before not_after")
        try:
            raw = base64.b64decode(self.public_key, validate=True)
        except binascii.Error as exc:
            raise ValueError("public_key is not valid base64") from exc
        if base64.b64encode(raw).decode("ascii") != self.public_key:
            raise ValueError("public_key is not canonical base64")
        expected = _KEY_SIZES[(self.algorithm, self.encoding)]
        if expected is not None and len(raw) != expected:
            raise ValueError(
                f"{self.algorithm} {self.encoding} key must be {expected} bytes, got {len(raw)}"
            )
        return self

    def public_key_bytes(self) -> bytes:
        """The decoded key (DER SubjectPublicKeyInfo or raw, per ``encoding``)."""
        return base64.b64decode(self.public_key, validate=True)

    def is_valid_at(self, when: datetime) -> bool:
        """Whether the key may be used (to sign, encrypt, or accept) at ``when``."""
        if self.revoked_at is not None and self.revoked_at <= when:
            return False
        return self.not_before <= when < self.not_after


class Participant(FrozenModel):
    """A member of the federation: a hotline, a police force, a coordinator...

    ``jurisdiction`` is the country it receives for; ``None`` for federation-wide
    bodies (coordinator, regional bodies), whose id starts with ``int.`` or with a
    two-letter prefix that is not a jurisdiction of theirs (``eu.europol``). A
    participant with a jurisdiction has that country as id prefix.
    ``categories`` lists what it accepts; routing never sends it anything else.
    """

    participant_id: ParticipantId
    display_name: ShortText
    jurisdiction: CountryCode | None
    roles: Annotated[
        tuple[Role, ...], Field(min_length=1, max_length=len(Role)), AfterValidator(unique_sorted)
    ]
    categories: Annotated[
        tuple[Category, ...],
        Field(min_length=1, max_length=len(Category)),
        AfterValidator(unique_sorted),
    ]
    status: ParticipantStatus = ParticipantStatus.ACTIVE
    keys: Annotated[
        tuple[PublicKeyRecord, ...],
        Field(max_length=MAX_KEYS_PER_PARTICIPANT),
    ] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        prefix = self.participant_id.split(".", 1)[0]
        if self.jurisdiction is not None and prefix != self.jurisdiction.lower():
            raise ValueError(
                f"participant {self.participant_id} must be prefixed "
                f"{self.jurisdiction.lower()}. (its jurisdiction)"
            )
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate key_id")
        return self

    @property
    def active(self) -> bool:
        return self.status is ParticipantStatus.ACTIVE

    def key(self, key_id: str) -> PublicKeyRecord | None:
        """The key record with ``key_id``, if this participant has it."""
        for record in self.keys:
            if record.key_id == key_id:
                return record
        return None

    def keys_valid_at(self, kind: KeyKind, when: datetime) -> tuple[PublicKeyRecord, ...]:
        """Keys of ``kind`` usable at ``when`` (several during a rotation)."""
        return tuple(k for k in self.keys if k.kind is kind and k.is_valid_at(when))


class ServiceRole(StrEnum):
    """A federation service with its own signing identity. Every instance of a
    service signs with the same identity (its key is in each instance's keystore)."""

    ROUTER = "router"
    """Signs its audit records and the status events it publishes."""
    TRACKER = "tracker"
    """Signs the status events it raises (SLA timers) and its state records."""


class Service(FrozenModel):
    """A service's published signing keys: what makes the records it writes to the
    audit, status and tracker topics verifiable by anyone holding the directory —
    a Kafka principal allowed to write those topics still cannot forge them."""

    role: ServiceRole
    keys: Annotated[
        tuple[PublicKeyRecord, ...],
        Field(min_length=1, max_length=MAX_KEYS_PER_PARTICIPANT),
    ]

    @model_validator(mode="after")
    def _check(self) -> Self:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate key_id")
        if any(k.kind is not KeyKind.SIGNING for k in self.keys):
            raise ValueError("a service publishes signing keys only")
        return self

    def key(self, key_id: str) -> PublicKeyRecord | None:
        """The key record with ``key_id``, if this service has it."""
        return next((k for k in self.keys if k.key_id == key_id), None)

    def keys_valid_at(self, when: datetime) -> tuple[PublicKeyRecord, ...]:
        return tuple(k for k in self.keys if k.is_valid_at(when))


_Categories = Annotated[
    tuple[Category, ...] | None,
    AfterValidator(lambda v: None if v is None else unique_sorted(v)),
]
_Priorities = Annotated[
    tuple[Priority, ...] | None,
    AfterValidator(lambda v: None if v is None else unique_sorted(v)),
]
_Jurisdictions = Annotated[
    tuple[CountryCode, ...] | None,
    AfterValidator(lambda v: None if v is None else unique_sorted(v)),
]


class DeliveryRule(FrozenModel):
    """Participants of the case's jurisdiction having one of ``roles`` receive cases
    matching ``categories`` and ``priorities`` (``None`` = any).

    ``jurisdiction=None`` makes it a default rule, applied to every jurisdiction.
    Rules add up: a participant receives if any rule selects it.
    """

    jurisdiction: CountryCode | None = None
    roles: Annotated[
        tuple[Role, ...], Field(min_length=1, max_length=len(Role)), AfterValidator(unique_sorted)
    ]
    categories: _Categories = None
    priorities: _Priorities = None

    def matches(self, jurisdiction: str, category: Category, priority: Priority) -> bool:
        return (
            (self.jurisdiction is None or self.jurisdiction == jurisdiction)
            and (self.categories is None or category in self.categories)
            and (self.priorities is None or priority in self.priorities)
        )


class StandingCopy(FrozenModel):
    """``recipient`` gets a copy of every case matching the filters (``None`` =
    any), wherever it is routed — e.g. a regional body copied on all trafficking."""

    recipient: ParticipantId
    jurisdictions: _Jurisdictions = None
    categories: _Categories = None
    priorities: _Priorities = None

    def matches(self, jurisdiction: str, category: Category, priority: Priority) -> bool:
        return (
            (self.jurisdictions is None or jurisdiction in self.jurisdictions)
            and (self.categories is None or category in self.categories)
            and (self.priorities is None or priority in self.priorities)
        )


def _default_delivery() -> tuple[DeliveryRule, ...]:
    return (DeliveryRule(roles=(Role.HOTLINE, Role.POLICE)),)


class RoutingRules(FrozenModel):
    """How cases are routed; interpreted by :func:`schemas.resolve`.

    - ``delivery``: who in the jurisdiction receives what (default: hotlines and
      police receive everything).
    - ``urgent_roles``: roles in the jurisdiction that also receive urgent cases
      (default: ``police_24x7``).
    - ``standing_copies``: extra recipients, independent of the jurisdiction.
    - ``coordinator``: receives cases of a jurisdiction with no active receiver.
    - ``escalation_recipient``: where the tracker escalates an overdue handover
      (not used by ``resolve``).
    """

    delivery: Annotated[tuple[DeliveryRule, ...], Field(max_length=MAX_RULES)] = Field(
        default_factory=_default_delivery
    )
    urgent_roles: Annotated[
        tuple[Role, ...], Field(max_length=len(Role)), AfterValidator(unique_sorted)
    ] = (Role.POLICE_24X7,)
    standing_copies: Annotated[
        tuple[StandingCopy, ...], Field(max_length=MAX_RULES), AfterValidator(unique)
    ] = ()
    coordinator: ParticipantId
    escalation_recipient: ParticipantId


class Directory(FrozenModel):
    """The signed federation directory (``keys/`` signs :meth:`canonical_bytes`).

    Build changed directories with ``model_validate`` (``model_copy(update=...)``
    skips the invariants below).

    ``version`` grows by at least one on every change; a party holding version
    ``n`` refuses any directory with version ``<= n`` other than the identical one.
    Participants are normalised to sorted by id; ids and key ids are unique, and
    every participant named by the rules exists.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    federation_id: FederationId
    version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    issued_at: UtcDatetime
    root_key_id: KeyId
    participants: Annotated[
        tuple[Participant, ...],
        Field(min_length=1, max_length=MAX_PARTICIPANTS),
        AfterValidator(lambda v: tuple(sorted(v, key=lambda p: p.participant_id))),
    ]
    rules: RoutingRules
    services: Annotated[
        tuple[Service, ...],
        Field(max_length=len(ServiceRole)),
        AfterValidator(lambda v: tuple(sorted(v, key=lambda s: s.role.value))),
    ] = ()
    """The services' signing identities (one per role)."""

    # Lookup index; rebuilt if ``participants`` is swapped under it (model_copy).
    _by_id: dict[str, Participant] = PrivateAttr(default_factory=dict)
    _indexed: tuple[Participant, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _check(self) -> Self:
        self._reindex()
        ids = [p.participant_id for p in self.participants]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate participant_id")
        key_ids = [k.key_id for p in self.participants for k in p.keys]
        key_ids += [k.key_id for s in self.services for k in s.keys]
        if len(set(key_ids)) != len(key_ids):
            raise ValueError("duplicate key_id across participants and services")
        if self.root_key_id in key_ids:
            raise ValueError("root_key_id must not be a participant or service key")
        roles = [s.role for s in self.services]
        if len(set(roles)) != len(roles):
            raise ValueError("one service entry per role")
        known = set(ids)
        named = {self.rules.coordinator, self.rules.escalation_recipient}
        named |= {c.recipient for c in self.rules.standing_copies}
        if missing := sorted(named - known):
            raise ValueError(f"routing rules name unknown participants: {missing}")
        coordinator = self._by_id[self.rules.coordinator]
        if Role.COORDINATOR not in coordinator.roles:
            raise ValueError("rules.coordinator must have the coordinator role")
        if set(coordinator.categories) != set(Category):
            raise ValueError("rules.coordinator must accept every category (orphan path)")
        return self

    def participant(self, participant_id: str) -> Participant | None:
        """The participant with this id, or ``None``."""
        if self._indexed is not self.participants:
            self._reindex()
        return self._by_id.get(participant_id)

    def service(self, role: ServiceRole) -> Service | None:
        """The signing identity of the service with ``role``, or ``None``."""
        return next((s for s in self.services if s.role is role), None)

    def _reindex(self) -> None:
        self._by_id = {p.participant_id: p for p in self.participants}
        self._indexed = self.participants

    def canonical_bytes(self) -> bytes:
        """The bytes the root signature covers: compact sorted-key UTF-8 JSON of the
        whole directory, every field present (see :func:`schemas.canonical_json`)."""
        return canonical_json(self)


__all__ = [
    "MAX_KEYS_PER_PARTICIPANT",
    "MAX_PARTICIPANTS",
    "MAX_RULES",
    "DeliveryRule",
    "Directory",
    "KeyAlgorithm",
    "KeyEncoding",
    "KeyKind",
    "Participant",
    "ParticipantStatus",
    "PublicKeyRecord",
    "Role",
    "RoutingRules",
    "Service",
    "ServiceRole",
    "StandingCopy",
]
