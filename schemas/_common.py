"""Shared constrained types, enums and the canonical JSON encoding.

Everything here is a building block for the contracts in the sibling modules.
Identifiers and codes are constrained strings (``Annotated[str, ...]``) so that
they stay plain JSON strings on the wire and in the exported JSON Schema.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, TypeVar
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

SCHEMA_VERSION: Final = 1
"""Version of every contract in this package. Bumped on any incompatible change;
each top-level model carries it as ``schema_version`` (a JSON Schema ``const``)."""

# --------------------------------------------------------------------------- base


class FrozenModel(BaseModel):
    """Base of every contract: immutable, hashable, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        str_strip_whitespace=False,
        validate_default=True,
        use_enum_values=False,
    )


# ------------------------------------------------------------------------- enums


class Category(StrEnum):
    """Incident type of a referral; the routing category in the envelope header."""

    CSAM = "csam"
    """Child sexual abuse material."""
    GROOMING = "grooming"
    """Online enticement / grooming of a child."""
    SEXTORTION = "sextortion"
    TRAFFICKING = "trafficking"
    """Child sex trafficking."""
    LIVE_STREAMED_ABUSE = "live_streamed_abuse"
    UNSOLICITED_OBSCENE_MATERIAL = "unsolicited_obscene_material"
    """Unsolicited obscene material sent to a child."""
    MISLEADING_DOMAIN = "misleading_domain"
    """Misleading domain name or words meant to lure a child."""


class Priority(StrEnum):
    """Handling priority. ``urgent`` needs a reason in the referral and also goes to
    the jurisdiction's 24/7 police contact."""

    ROUTINE = "routine"
    HIGH = "high"
    URGENT = "urgent"


class HandlingCode(StrEnum):
    """SIENA handling codes."""

    H0 = "H0"
    """Use only for preventing and combating crime."""
    H1 = "H1"
    """Not for judicial proceedings without the provider's permission."""
    H2 = "H2"
    """No onward dissemination without the provider's permission."""
    H3 = "H3"
    """Other restrictions, stated in free text (inside the encrypted referral)."""


class MessageType(StrEnum):
    """What an envelope carries; selects the payload model."""

    REFERRAL = "referral"
    """A :class:`Referral`, sender → recipients resolved from the directory."""
    RECEIPT = "receipt"
    """A transport :class:`Receipt`, recipient → original sender."""
    CASE_ACK = "case_ack"
    """A :class:`CaseAck` (case decision), recipient → original sender."""


class DecisionKind(StrEnum):
    """The kind of a case decision, clear in a ``case_ack`` header so that the
    router and tracker can follow the case lifecycle without reading the payload
    (compare ICCAM's action log). Not content-revealing: no reason, no reference."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    MOVED = "moved"
    ACTIONED = "actioned"
    CLOSED = "closed"


REPLY_MESSAGE_TYPES: Final = frozenset({MessageType.RECEIPT, MessageType.CASE_ACK})
"""Message types that answer an earlier message (``in_reply_to`` is required)."""

# -------------------------------------------------------------- constrained types

# ISO 3166-1 alpha-2 officially assigned codes, plus XK (Kosovo: user-assigned but
# used by Europol, INTERPOL and INHOPE). Exceptional reservations (EU, UK) are not
# countries and are refused; regional bodies have no jurisdiction instead.
ISO_3166_ALPHA2: Final = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
    BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV
    CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
    GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM
    IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK
    LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
    MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
    PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS
    ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
    UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW XK
    """.split()  # noqa: SIM905 - a code table reads better as a block than as 250 literals
)


def _check_country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise ValueError(f"not an ISO 3166-1 alpha-2 country code: {value!r}")
    return value


CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    AfterValidator(_check_country),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(ISO_3166_ALPHA2),
            "description": "ISO 3166-1 alpha-2, uppercase: the officially assigned codes "
            "and XK (EU, UK and other reserved or user-assigned codes are refused).",
        }
    ),
]
"""ISO 3166-1 alpha-2, uppercase, officially assigned (plus ``XK``)."""

PARTICIPANT_ID_PATTERN: Final = r"^(?:[a-z]{2}|int)\.[a-z0-9_-]{1,40}$"
ParticipantId = Annotated[str, StringConstraints(pattern=PARTICIPANT_ID_PATTERN)]
"""``<cc>.<name>`` (``nl.hotline``, ``de.bka_24x7``) or ``int.<name>`` for
federation-wide bodies (``int.coordinator``). Also names Kafka topics."""

KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$")]
"""Opaque key identifier chosen by ``keys/`` (unique across the directory)."""

FederationId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""SHA-256 digest, 64 lowercase hex characters."""

KeyCommitment = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""Key commitment: HMAC-SHA256, 32 bytes as 64 lowercase hex characters (computed by
``keys/``; ENVELOPE.md)."""

ReasonText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Reference = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$")]
"""A participant's own case reference (ICCAM / CyberTipline / local case id)."""


# ------------------------------------------------------------------- UUIDv7 ids


def _check_uuid7(value: UUID) -> UUID:
    if value.version != 7 or value.variant != "specified in RFC 4122":
        raise ValueError("must be a UUIDv7 (RFC 9562)")
    return value


_UUID7_PATTERN: Final = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)

MessageId = Annotated[
    UUID,
    AfterValidator(_check_uuid7),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": _UUID7_PATTERN}),
]
"""UUIDv7 (time-ordered, RFC 9562); serialised lowercase with hyphens."""

CaseId = MessageId
"""A case is named by the UUIDv7 of the message that opened it; it never changes,
also when the case is moved to another jurisdiction."""


def uuid7(now: datetime, rng: Callable[[int], bytes] = os.urandom) -> UUID:
    """A UUIDv7 for ``now`` (48-bit Unix milliseconds) with 74 bits from ``rng``.

    Time and randomness are injected so that test vectors are deterministic.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    millis = int(now.timestamp() * 1000)
    if not 0 <= millis < 1 << 48:
        raise ValueError("time out of UUIDv7 range")
    raw = rng(10)
    if len(raw) != 10:
        raise ValueError("rng must return the number of bytes asked for")
    rand = int.from_bytes(raw, "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = millis << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)


# ------------------------------------------------------------------------- times


def _check_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a timezone")
    return value.astimezone(UTC)


def _format_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_check_utc),
    PlainSerializer(_format_utc, return_type=str, when_used="json"),
]
"""Timezone-aware instant, normalised to UTC. Serialised in JSON always as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (six fraction digits) so the encoding of an
instant is unique."""


# ------------------------------------------------------------------ collections

T = TypeVar("T")


def _unique(values: Sequence[Any]) -> None:
    if len(set(values)) != len(values):
        raise ValueError("duplicate entries")


def unique_sorted(values: tuple[T, ...]) -> tuple[T, ...]:
    """Validator: refuse duplicates, return sorted (set-like fields are canonical)."""
    _unique(values)
    return tuple(sorted(values))  # type: ignore[type-var]


def unique(values: tuple[T, ...]) -> tuple[T, ...]:
    """Validator: refuse duplicates, keep order (order carries meaning)."""
    _unique(values)
    return values


# ---------------------------------------------------------- canonical encoding


def canonical_json(model: BaseModel) -> bytes:
    """Deterministic bytes of ``model``: the input of every signature and hash.

    Definition (stable, part of the envelope format):

    1. ``model.model_dump(mode="json")`` — every field present, ``None`` as
       ``null``, enums as their values, UUIDs lowercase hyphenated, instants as
       ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, tuples as arrays in model order (set-like
       fields are already sorted by validation).
    2. JSON text with object keys sorted, separators ``,`` and ``:`` and no other
       whitespace, non-ASCII characters written as themselves, UTF-8 encoded.

    Signed models contain no floating-point numbers and only ASCII keys, so
    this is also the RFC 8785 (JCS) encoding of the same value: an independent
    implementation may use a JCS library.
    """
    return canonical_json_of(model.model_dump(mode="json"))


def canonical_json_of(data: object) -> bytes:
    """Step 2 of :func:`canonical_json` for JSON-ready ``data`` (dicts, lists, str...).

    Encoded by orjson (ten times faster than the standard library at 16 KiB, the
    same bytes: keys sorted, compact, UTF-8, control characters as ``\\b \\t \\n \\f
    \\r`` or lowercase ``\\u00xx``; ``tests/unit/test_canonical_json.py`` holds it to
    ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
    Refused: integers beyond ±(2**53 - 1), which JCS cannot carry exactly.
    Floating-point numbers would be written as orjson writes them, which is not
    JCS: no signed model has one, and ``tests/unit/test_canonical_json.py`` keeps
    it so."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"not canonical JSON: {exc}") from exc


# ------------------------------------------------------------------ small helpers

Clock = Callable[[], datetime]
"""Where code that needs the time gets it; injected so tests control time."""


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC: the default :data:`Clock`."""
    return datetime.now(UTC)


def first_error(exc: ValidationError) -> str:
    """One line naming the first invalid field of ``exc`` and what is wrong with it.

    Never the input value (it may be case data), never pydantic's URL.
    """
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "input"
    return f"{where}: {err['msg']}"


__all__ = [
    "ISO_3166_ALPHA2",
    "PARTICIPANT_ID_PATTERN",
    "REPLY_MESSAGE_TYPES",
    "SCHEMA_VERSION",
    "CaseId",
    "Category",
    "Clock",
    "CountryCode",
    "DecisionKind",
    "FederationId",
    "FrozenModel",
    "HandlingCode",
    "KeyCommitment",
    "KeyId",
    "MessageId",
    "MessageType",
    "ParticipantId",
    "Priority",
    "ReasonText",
    "Reference",
    "Sha256Hex",
    "ShortText",
    "UtcDatetime",
    "canonical_json",
    "canonical_json_of",
    "first_error",
    "unique",
    "unique_sorted",
    "utcnow",
    "uuid7",
]
