"""The referral: the encrypted payload of a ``referral`` envelope.

Drawn from NCMEC's CyberTipline report and ICCAM's report (see
``reference/DOMAIN.md``). It never contains the material itself: only references
(URLs, hosting data, hashes) and case data. Lists and strings are bounded so a
referral stays well under SIENA's 50 MB (the bounds allow a few MB at most).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from ._common import (
    SCHEMA_VERSION,
    CaseId,
    Category,
    CountryCode,
    FrozenModel,
    HandlingCode,
    ParticipantId,
    Priority,
    ReasonText,
    Reference,
    ShortText,
    UtcDatetime,
    unique,
    unique_sorted,
)

MAX_URLS = 1_000
MAX_ITEMS = 5_000
MAX_PERSONS = 100
MAX_IP_EVENTS = 1_000
MAX_SMALL_LIST = 50

# --------------------------------------------------------------------- enums


class Annotation(StrEnum):
    """Case-level annotations (NCMEC incident annotations)."""

    SEXTORTION = "sextortion"
    SOLICITATION = "solicitation"
    MINOR_TO_MINOR = "minor_to_minor"
    SADISTIC_EXPLOITATION = "sadistic_exploitation"


class ItemAnnotation(StrEnum):
    """Per-item annotations."""

    GENERATIVE_AI = "generative_ai"
    LIVE_STREAMING = "live_streaming"
    INFANT = "infant"
    POSSIBLE_SELF_PRODUCTION = "possible_self_production"
    VIRAL = "viral"


class SiteType(StrEnum):
    """What kind of site a URL is on."""

    WEBSITE = "website"
    FILE_HOST = "file_host"
    IMAGE_BOARD = "image_board"
    IMAGE_HOST = "image_host"
    FORUM = "forum"
    SOCIAL_SITE = "social_site"
    CHAT = "chat"
    GAMING = "gaming"
    REDIRECTOR = "redirector"
    BANNER = "banner"
    OTHER = "other"


class MediaType(StrEnum):
    """What kind of content an item is."""

    IMAGE = "image"
    VIDEO = "video"
    LINK = "link"
    CONTAINER = "container"
    """Archive or other file holding several items."""
    TEXT = "text"


class HashAlgorithm(StrEnum):
    """How a content hash was computed."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    PDQ = "pdq"
    """256-bit perceptual hash; matches at Hamming distance <= 31."""


HASH_HEX_LENGTH: dict[HashAlgorithm, int] = {
    HashAlgorithm.MD5: 32,
    HashAlgorithm.SHA1: 40,
    HashAlgorithm.SHA256: 64,
    HashAlgorithm.PDQ: 64,
}


class Classification(StrEnum):
    """ICCAM assessment."""

    BASELINE = "baseline"
    """Illegal everywhere under INTERPOL's baseline criteria."""
    NATIONAL = "national"
    """Illegal in the assessing country."""
    DOUBTFUL = "doubtful"
    NOT_ILLEGAL = "not_illegal"


class AgeGroup(StrEnum):
    """Apparent age group of a depicted child."""

    NOT_DETERMINED = "not_determined"
    INFANT = "infant"
    PRE_PUBESCENT = "pre_pubescent"
    PUBESCENT = "pubescent"


class Gender(StrEnum):
    """Apparent gender of a depicted child."""

    NOT_DETERMINED = "not_determined"
    FEMALE = "female"
    MALE = "male"
    BOTH = "both"


class PersonRole(StrEnum):
    """How a person relates to the case."""

    REPORTED_USER = "reported_user"
    VICTIM = "victim"
    INTENDED_RECIPIENT = "intended_recipient"


class IpEventType(StrEnum):
    """The event at which an IP address was captured."""

    LOGIN = "login"
    REGISTRATION = "registration"
    UPLOAD = "upload"
    PURCHASE = "purchase"
    OTHER = "other"


class SourceReliability(StrEnum):
    """SIENA / 4x4 evaluation of the source."""

    A = "A"
    B = "B"
    C = "C"
    X = "X"


class InformationAccuracy(StrEnum):
    """SIENA / 4x4 evaluation of the information."""

    ONE = "1"
    TWO = "2"
    THREE = "3"
    FOUR = "4"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0."""

    RED = "RED"
    AMBER_STRICT = "AMBER+STRICT"
    AMBER = "AMBER"
    GREEN = "GREEN"
    CLEAR = "CLEAR"


# ------------------------------------------------------------------- scalars


_PLAIN_URL = re.compile(
    r"^(?i:https?|ftps?)://(?:[^/?#@\[\]]*@)?[^/?#:@\[\]]+(?::[0-9]*)?(?:[/?#]|$)"
)
"""The common shape (scheme, optional userinfo, a plain host, optional port): these
URLs are accepted without the slower ``urlsplit``; anything else takes it."""


def _check_url(value: str) -> str:
    if _PLAIN_URL.match(value):
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError as exc:  # e.g. an unclosed [IPv6 literal
        raise ValueError("must be an absolute http(s) or ftp(s) URL with a host") from exc
    if parts.scheme not in {"http", "https", "ftp", "ftps"} or not host:
        raise ValueError("must be an absolute http(s) or ftp(s) URL with a host")
    return value


_IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$")  # fmt: skip


def _check_ip(value: str) -> str:
    """An IPv4 or IPv6 address in its canonical text (IPv4 dotted quad without
    leading zeros, IPv6 compressed lowercase). Canonical IPv4 — almost every
    address reported — is checked by a pattern; the rest by ``ipaddress``."""
    if _IPV4.match(value):
        return value
    try:
        return str(ip_address(value))
    except ValueError as exc:
        raise ValueError("not an IPv4 or IPv6 address") from exc


_URL_LENGTH = StringConstraints(min_length=8, max_length=4096, pattern=r"^[^\s]+$")
_PLAIN_URL_WHOLE = (
    r"^(?i:https?|ftps?)://(?:[^/?#@\[\]\s]*@)?[^/?#:@\[\]\s]+(?::[0-9]*)?(?:[/?#]\S*)?$"
)
""":data:`_PLAIN_URL` over the whole value, without whitespace: checked inside
pydantic-core (its own regex engine), so the common URL never calls Python."""

Url = Annotated[
    Annotated[str, StringConstraints(min_length=8, max_length=4096, pattern=_PLAIN_URL_WHOLE)]
    | Annotated[str, _URL_LENGTH, AfterValidator(_check_url)],
    Field(union_mode="left_to_right"),
    WithJsonSchema({"type": "string", "minLength": 8, "maxLength": 4096, "pattern": r"^[^\s]+$"}),
]
"""Absolute URL kept exactly as reported (not normalised: it is evidence). The
plain shape is matched without leaving pydantic-core; anything else (IPv6 literal
hosts, unusual forms) takes :func:`_check_url`."""


def _ip_value(value: object) -> str:
    """One validator call per address (this runs for every URL of every referral)."""
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if not isinstance(value, str) or len(value) > 45:
        raise ValueError("not an IPv4 or IPv6 address")
    return _check_ip(value)


IpAddress = Annotated[
    Annotated[str, StringConstraints(pattern=_IPV4.pattern)]
    | Annotated[str, PlainValidator(_ip_value)],
    Field(union_mode="left_to_right"),
    WithJsonSchema(
        {"anyOf": [{"format": "ipv4", "type": "string"}, {"format": "ipv6", "type": "string"}]}
    ),
]
"""IPv4 or IPv6, kept as its canonical text (the same bytes in canonical JSON as
the ``ipaddress`` objects it replaces). A canonical dotted quad is matched inside
pydantic-core; anything else takes :func:`_ip_value`."""
Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{4,14}$")]
"""E.164."""
HandleText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


# -------------------------------------------------------------------- models


class Reporter(FrozenModel):
    """Who assessed the report; the reporting organisation is the envelope sender."""

    reference: Reference
    """The reporter's own case reference, unique per reporter."""
    analyst: ShortText | None = None
    """Pseudonymous analyst id, not a name."""
    received_at: UtcDatetime | None = None
    """When the reporter received the original public/industry report."""
    memo: Text | None = None


class Incident(FrozenModel):
    """What happened: the incident type and a summary."""

    type: Category
    occurred_at: UtcDatetime | None = None
    platform: ShortText | None = None
    summary: Text


class Urgency(FrozenModel):
    """``priority`` mirrors the header's; ``urgent`` requires a ``reason``."""

    priority: Priority = Priority.ROUTINE
    reason: ReasonText | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.priority is Priority.URGENT and not (self.reason and self.reason.strip()):
            raise ValueError("an urgent referral needs a reason")
        return self


class CountrySource(StrEnum):
    """Where a hosting country came from."""

    ANALYST = "analyst"
    """The reporting analyst recorded it (the default when no source is named)."""
    IP_LOOKUP = "ip_lookup"
    """Filled by the sending adapter from ``ip`` by an offline allocation lookup
    (``country_lookup`` names it: by default the Regional Internet Registries'
    data — the country a block is assigned to, not always where it is used)."""


class Hosting(FrozenModel):
    """Where a URL is hosted, as the reporting analyst found it.

    A ``country`` without ``country_source`` is the analyst's. The sending adapter
    fills an empty ``country`` from ``ip`` by an offline allocation lookup and then
    says so: ``country_source = ip_lookup``, with the lookup's name/version
    (``country_lookup``) and the date of its data (``country_data_date``). It never
    replaces a country the analyst recorded.
    """

    country: CountryCode | None = None
    country_source: CountrySource | None = None
    country_lookup: ShortText | None = None
    """For ``ip_lookup``: the lookup and its version, e.g. ``iptocc 3.3.170``."""
    country_data_date: date | None = None
    """For ``ip_lookup``: the date of the allocation data used."""
    ip: IpAddress | None = None
    asn: Annotated[int, Field(ge=1, le=4_294_967_295)] | None = None
    isp: ShortText | None = None
    organisation: ShortText | None = None
    cdn: bool = False
    """Served through a CDN: ``country``/``ip`` may be an edge, not the origin."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.country_source is not None and self.country is None:
            raise ValueError("country_source needs a country")
        looked_up = self.country_source is CountrySource.IP_LOOKUP
        if not looked_up and (self.country_lookup or self.country_data_date):
            raise ValueError("country_lookup and country_data_date are for ip_lookup only")
        if looked_up and self.ip is None:
            raise ValueError("a country from ip_lookup needs the ip it was looked up for")
        return self


class ReportedUrl(FrozenModel):
    """A URL the referral is about, with its hosting."""

    url: Url
    source_url: Url | None = None
    """Page where the URL was found."""
    referrer: Url | None = None
    site_type: SiteType = SiteType.OTHER
    hosting: Hosting | None = None
    assigned_country: CountryCode | None = None
    """The responsible country, when it differs from the hosting country."""


class ContentHash(FrozenModel):
    """A hash of an item; hex length is checked against the algorithm."""

    algorithm: HashAlgorithm
    value: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32,64}$")]
    """Lowercase hex."""
    quality: Annotated[int, Field(ge=0, le=100)] | None = None
    """PDQ quality score; only for ``pdq``."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        expected = HASH_HEX_LENGTH[self.algorithm]
        if len(self.value) != expected:
            raise ValueError(f"a {self.algorithm} hash has {expected} hex digits")
        if self.quality is not None and self.algorithm is not HashAlgorithm.PDQ:
            raise ValueError("quality is only for pdq hashes")
        return self


class ContentItem(FrozenModel):
    """One image, video, ... described by hashes, never by content."""

    media_type: MediaType
    hashes: Annotated[
        tuple[ContentHash, ...], Field(min_length=1, max_length=8), AfterValidator(unique)
    ]
    classification: Classification
    age_group: AgeGroup = AgeGroup.NOT_DETERMINED
    gender: Gender = Gender.NOT_DETERMINED
    virtual: bool = False
    """Virtual, drawn or AI-generated depiction."""
    annotations: Annotated[
        tuple[ItemAnnotation, ...],
        Field(max_length=len(ItemAnnotation)),
        AfterValidator(unique_sorted),
    ] = ()
    url_index: Annotated[int, Field(ge=0, lt=MAX_URLS)] | None = None
    """Index into ``Referral.urls`` of where the item was seen."""


class IpCaptureEvent(FrozenModel):
    """An IP address seen at an event of a reported person."""

    ip: IpAddress
    event: IpEventType
    at: UtcDatetime
    port: Annotated[int, Field(ge=0, le=65_535)] | None = None
    possible_proxy: bool = False


class Location(FrozenModel):
    """An estimated location."""

    country: CountryCode | None = None
    region: ShortText | None = None
    city: ShortText | None = None


class ReportedPerson(FrozenModel):
    """A reported user, a victim or an intended recipient."""

    role: PersonRole
    screen_names: Annotated[tuple[HandleText, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    profile_urls: Annotated[tuple[Url, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    emails: Annotated[tuple[Email, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    phones: Annotated[tuple[Phone, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    device_ids: Annotated[tuple[HandleText, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    estimated_location: Location | None = None
    age: Annotated[int, Field(ge=0, le=130)] | None = None
    ip_events: Annotated[tuple[IpCaptureEvent, ...], Field(max_length=MAX_IP_EVENTS)] = ()


class PriorReport(FrozenModel):
    """A link to an earlier report about the same user or content."""

    reference: Reference
    organisation: ParticipantId | None = None
    case_id: CaseId | None = None


class Handling(FrozenModel):
    """Sharing restrictions and evaluation; ``restriction`` iff code H3."""

    code: HandlingCode
    restriction: ReasonText | None = None
    source_reliability: SourceReliability
    information_accuracy: InformationAccuracy
    tlp: Tlp

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.code is HandlingCode.H3 and self.restriction is None:
            raise ValueError("handling code H3 needs the restriction in free text")
        if self.code is not HandlingCode.H3 and self.restriction is not None:
            raise ValueError("a free-text restriction is only for handling code H3")
        return self


class Referral(FrozenModel):
    """A case referral (encrypted payload of a ``referral`` envelope).

    ``incident.type``, ``urgency.priority`` and ``handling.code`` must equal the
    header's ``category``, ``priority`` and ``handling_code``; the receiving
    adapter checks that after decryption.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    reporter: Reporter
    incident: Incident
    urgency: Urgency = Urgency()
    annotations: Annotated[
        tuple[Annotation, ...], Field(max_length=len(Annotation)), AfterValidator(unique_sorted)
    ] = ()
    urls: Annotated[tuple[ReportedUrl, ...], Field(max_length=MAX_URLS)] = ()
    items: Annotated[tuple[ContentItem, ...], Field(max_length=MAX_ITEMS)] = ()
    persons: Annotated[tuple[ReportedPerson, ...], Field(max_length=MAX_PERSONS)] = ()
    prior_reports: Annotated[tuple[PriorReport, ...], Field(max_length=MAX_SMALL_LIST)] = ()
    group_id: Reference | None = None
    """Groups viral duplicates / bundled reports."""
    handling: Handling
    delete_after: date
    """Retention: every party deletes its copy of the case data after this day."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not (self.urls or self.items or self.persons):
            raise ValueError("a referral needs at least one url, item or person")
        for item in self.items:
            if item.url_index is not None and item.url_index >= len(self.urls):
                raise ValueError(f"item url_index {item.url_index} has no url")
        return self


__all__ = [
    "HASH_HEX_LENGTH",
    "MAX_ITEMS",
    "MAX_URLS",
    "AgeGroup",
    "Annotation",
    "Classification",
    "ContentHash",
    "ContentItem",
    "CountrySource",
    "Gender",
    "Handling",
    "HashAlgorithm",
    "Hosting",
    "Incident",
    "InformationAccuracy",
    "IpCaptureEvent",
    "IpEventType",
    "ItemAnnotation",
    "Location",
    "MediaType",
    "PersonRole",
    "PriorReport",
    "Referral",
    "ReportedPerson",
    "ReportedUrl",
    "Reporter",
    "SiteType",
    "SourceReliability",
    "Tlp",
    "Urgency",
]
