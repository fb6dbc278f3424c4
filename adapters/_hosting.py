"""Hosting country from the IP address the analyst recorded — offline, in the sender.

Hotlines route by where content is hosted (ICCAM: the hosting country decides).
An analyst often records the hosting IP but not its country. The sending adapter —
the only party that ever sees the IP — fills the gap before it derives the
jurisdiction and seals:

- only an empty ``Hosting.country`` is filled; a country the analyst recorded is
  never replaced (it may reflect an origin behind a CDN, or a later finding);
- a filled country says where it came from: ``country_source = ip_lookup``,
  ``country_lookup`` (the lookup's name and version) and ``country_data_date``
  (the date of the allocation data), so a recipient can weigh it;
- no DNS, no network: :class:`RirLookup` reads the Regional Internet Registries'
  allocation tables compiled into the ``iptocc`` wheel (a Rust extension, about
  100 ns a lookup);
- addresses that are not globally routable (documentation ranges such as
  192.0.2.0/24 and 2001:db8::/32, private, loopback, link-local, CGNAT) are
  *unknown* before the table is consulted, as are codes that are not countries
  (``EU``, ``AP``) and codes our schema refuses.

:class:`CountryLookup` is the small interface; tests and other deployments can
inject their own (:class:`TableLookup` for a closed network's own table, a
commercial geolocation database) without touching the sender. Allocation data
says which country a block is *registered* to, not where a server stands: that is
why the source is recorded and why the analyst wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from importlib import metadata
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Protocol

from pydantic import ValidationError

from schemas import ISO_3166_ALPHA2, CountrySource, Hosting, Referral, ReportedUrl

__all__ = [
    "CountryLookup",
    "RirLookup",
    "TableLookup",
    "fill_hosting_countries",
    "rir_lookup",
]


class CountryLookup(Protocol):
    """IP address text -> ISO 3166-1 alpha-2 code, or ``None`` when unknown."""

    @property
    def name(self) -> str:
        """The lookup and its version, recorded as ``Hosting.country_lookup``."""
        ...

    @property
    def data_date(self) -> date | None:
        """The date of the data it answers from (``Hosting.country_data_date``)."""
        ...

    def country(self, ip: str) -> str | None: ...


def _routable(ip: str) -> bool:
    try:
        return ip_address(ip).is_global
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class RirLookup:
    """:class:`CountryLookup` over the ``iptocc`` wheel's allocation tables."""

    name: str
    data_date: date | None

    def country(self, ip: str) -> str | None:
        if not _routable(ip):
            return None
        import iptocc

        code = iptocc.country_code(ip)
        return code if code in ISO_3166_ALPHA2 else None


@dataclass(frozen=True, slots=True)
class TableLookup:
    """:class:`CountryLookup` over an allocation table of one's own — a closed test
    network, an operator's curated list: ``(network, country)`` pairs, the most
    specific network wins. Unlike :class:`RirLookup` it answers for any range
    (private and documentation ranges included), since it is the table's word."""

    name: str
    networks: tuple[tuple[IPv4Network | IPv6Network, str], ...]
    data_date: date | None = None

    @classmethod
    def of(
        cls, name: str, rows: Iterable[tuple[str, str]], data_date: date | None = None
    ) -> TableLookup:
        """From ``(cidr, country)`` rows; raises ``ValueError`` for a bad row."""
        networks = []
        for cidr, country in rows:
            if country not in ISO_3166_ALPHA2:
                raise ValueError(f"{cidr}: not a country code: {country!r}")
            networks.append((ip_network(cidr), country))
        networks.sort(key=lambda n: n[0].prefixlen, reverse=True)
        return cls(name, tuple(networks), data_date)

    def country(self, ip: str) -> str | None:
        try:
            address = ip_address(ip)
        except ValueError:
            return None
        for network, country in self.networks:
            if address.version == network.version and address in network:
                return country
        return None


def _wheel_date(dist: metadata.Distribution) -> date | None:
    """The build time in the wheel's CycloneDX SBOM: the data is refreshed nightly
    from the registries and compiled in, so that is the data's date."""
    for f in dist.files or ():
        if f.name.endswith(".cyclonedx.json"):
            try:
                stamp = json.loads(f.read_text() or "{}")["metadata"]["timestamp"]
                return datetime.fromisoformat(stamp[:19]).date()
            except (OSError, KeyError, TypeError, ValueError):
                return None
    return None


_RIR: RirLookup | None = None


def rir_lookup() -> RirLookup:
    """The process-wide :class:`RirLookup` (its version and data date read once)."""
    global _RIR  # noqa: PLW0603 - one lookup per process, built on first use
    if _RIR is None:
        dist = metadata.distribution("iptocc")
        _RIR = RirLookup(f"iptocc {dist.version}", _wheel_date(dist))
    return _RIR


def _filled(url: ReportedUrl, lookup: CountryLookup) -> ReportedUrl:
    hosting = url.hosting
    if hosting is None or hosting.country is not None or hosting.ip is None:
        return url
    code = lookup.country(hosting.ip)
    if code is None:
        return url
    try:
        filled = Hosting.model_validate(
            {
                **hosting.model_dump(exclude_none=True),
                "country": code,
                "country_source": CountrySource.IP_LOOKUP,
                "country_lookup": lookup.name,
                "country_data_date": lookup.data_date,
            }
        )
    except ValidationError:
        return url  # a code the schema refuses stays unknown
    return url.model_copy(update={"hosting": filled})


def fill_hosting_countries(referral: Referral, lookup: CountryLookup) -> Referral:
    """``referral`` with every empty hosting country that ``lookup`` knows filled
    (see the module docstring); the same object when nothing changed."""
    if not any(u.hosting and u.hosting.country is None and u.hosting.ip for u in referral.urls):
        return referral
    urls = tuple(_filled(u, lookup) for u in referral.urls)
    if urls == referral.urls:
        return referral
    return referral.model_copy(update={"urls": urls})
