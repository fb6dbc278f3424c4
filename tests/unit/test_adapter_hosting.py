"""Hosting country from the recorded IP: offline lookup in the sending adapter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from adapters import (
    InputError,
    RirLookup,
    fill_hosting_countries,
    parse_submission,
    rir_lookup,
)
from schemas import CountrySource, Hosting, Referral
from tests.unit._schema_fixtures import referral_data


@pytest.fixture(scope="module")
def rir() -> RirLookup:
    return rir_lookup()


@pytest.mark.parametrize(
    "ip",
    [
        "192.0.2.10",  # TEST-NET-1
        "198.51.100.7",  # TEST-NET-2
        "203.0.113.200",  # TEST-NET-3
        "2001:db8::1",  # IPv6 documentation
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "127.0.0.1",
        "169.254.1.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "0.0.0.0",  # noqa: S104 - an address to look up, not to bind
        "255.255.255.255",
    ],
)
def test_unroutable_addresses_are_unknown(rir: RirLookup, ip: str) -> None:
    assert rir.country(ip) is None


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("193.0.6.139", "NL"),  # RIPE NCC's own block, allocated 1993
        ("2001:67c:2e8::2", "NL"),  # RIPE NCC, IPv6
        ("1.0.16.1", "JP"),  # APNIC, long-stable
        ("8.8.8.8", "US"),
        ("200.160.0.8", "BR"),  # NIC.br, LACNIC
    ],
)
def test_long_stable_allocations(rir: RirLookup, ip: str, country: str) -> None:
    assert rir.country(ip) == country


def test_garbage_is_unknown_not_an_error(rir: RirLookup) -> None:
    assert rir.country("not-an-ip") is None
    assert rir.country("") is None


def test_the_lookup_names_itself_and_its_data_date(rir: RirLookup) -> None:
    assert rir.name.startswith("iptocc ")
    assert rir.data_date is None or date(2020, 1, 1) < rir.data_date


@dataclass(frozen=True)
class FixedLookup:
    answers: dict[str, str]
    name: str = "fixed 1"
    data_date: date | None = date(2026, 1, 2)

    def country(self, ip: str) -> str | None:
        return self.answers.get(ip)


def _referral(*hostings: dict[str, Any] | None) -> Referral:
    data = referral_data()
    data["urls"] = [
        {"url": f"https://content.example.org/{i}", **({"hosting": h} if h is not None else {})}
        for i, h in enumerate(hostings)
    ]
    return Referral.model_validate(data)


def test_an_empty_country_is_filled_and_says_where_it_came_from() -> None:
    r = fill_hosting_countries(
        _referral({"ip": "198.51.100.1"}), FixedLookup({"198.51.100.1": "NL"})
    )
    hosting = r.urls[0].hosting
    assert hosting is not None
    assert hosting.country == "NL"
    assert hosting.country_source is CountrySource.IP_LOOKUP
    assert hosting.country_lookup == "fixed 1"
    assert hosting.country_data_date == date(2026, 1, 2)


def test_the_analysts_country_is_never_replaced() -> None:
    original = _referral({"ip": "198.51.100.1", "country": "DE"})
    assert fill_hosting_countries(original, FixedLookup({"198.51.100.1": "NL"})) is original


def test_unknown_and_missing_ips_change_nothing() -> None:
    original = _referral({"ip": "198.51.100.1"}, {"isp": "Example"}, None)
    assert fill_hosting_countries(original, FixedLookup({})) is original


def test_a_code_the_schema_refuses_stays_unknown() -> None:
    original = _referral({"ip": "198.51.100.1"})
    assert fill_hosting_countries(original, FixedLookup({"198.51.100.1": "EU"})) is original


def test_only_the_urls_that_need_it_change() -> None:
    lookup = FixedLookup({"198.51.100.1": "NL", "198.51.100.2": "BE"})
    r = fill_hosting_countries(
        _referral({"ip": "198.51.100.1"}, {"ip": "198.51.100.2", "country": "FR"}), lookup
    )
    assert [u.hosting.country for u in r.urls if u.hosting] == ["NL", "FR"]
    assert [u.hosting.country_source for u in r.urls if u.hosting] == [
        CountrySource.IP_LOOKUP,
        None,
    ]


def test_the_filled_country_sets_the_jurisdiction() -> None:
    data = referral_data()
    data["urls"] = [{"url": "https://content.example.org/a", "hosting": {"ip": "193.0.6.139"}}]
    data.pop("persons", None)
    submission = parse_submission(json.dumps(data).encode())
    assert submission.jurisdiction == "NL"
    hosting = submission.referral.urls[0].hosting
    assert hosting is not None
    assert hosting.country_source is CountrySource.IP_LOOKUP


def test_a_documentation_ip_still_needs_a_jurisdiction() -> None:
    data = referral_data()
    data["urls"] = [{"url": "https://content.example.org/a", "hosting": {"ip": "192.0.2.1"}}]
    data.pop("persons", None)
    with pytest.raises(InputError, match="no hosting or assigned country"):
        parse_submission(json.dumps(data).encode())


@pytest.mark.parametrize(
    "fields",
    [
        {"country_source": "analyst"},  # a source needs a country
        {"country": "NL", "country_lookup": "x 1"},  # lookup only for ip_lookup
        {"country": "NL", "country_source": "analyst", "country_data_date": "2026-01-01"},
        {"country": "NL", "country_source": "ip_lookup"},  # no ip to have looked up
    ],
)
def test_hosting_source_fields_are_consistent(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Hosting.model_validate(fields)


def test_hosting_from_a_lookup_validates() -> None:
    h = Hosting.model_validate(
        {
            "ip": "193.0.6.139",
            "country": "NL",
            "country_source": "ip_lookup",
            "country_lookup": "iptocc 3.3.170",
            "country_data_date": "2026-10-27",
        }
    )
    assert h.country_source is CountrySource.IP_LOOKUP
