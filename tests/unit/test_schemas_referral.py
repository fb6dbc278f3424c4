"""Referral: the encrypted payload; validators and the JSON round-trip property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

import schemas as s
from tests.strategies import referrals

from ._schema_fixtures import referral_data


def _with(path: str, value: Any) -> dict[str, Any]:
    """referral_data() with one nested field (``a.0.b``) replaced."""
    data = referral_data()
    *parents, leaf = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(leaf) if leaf.isdigit() else leaf] = value
    return data


def test_minimal_referral_is_valid() -> None:
    """The fixture referral validates and defaults to routine priority."""
    referral = s.Referral.model_validate(referral_data())
    assert referral.urgency.priority == s.Priority.ROUTINE
    assert referral.schema_version == 1


@given(referrals())
@settings(max_examples=150, deadline=None)
def test_referral_json_round_trip(referral: s.Referral) -> None:
    """Any valid referral survives model -> JSON -> model unchanged."""
    assert referral == s.Referral.model_validate_json(referral.model_dump_json())


@given(referrals())
@settings(deadline=None)
def test_referral_python_round_trip(referral: s.Referral) -> None:
    """Any valid referral survives model -> JSON-mode dict -> model unchanged."""
    assert referral == s.Referral.model_validate(referral.model_dump(mode="json"))


def test_urgent_requires_reason() -> None:
    """An urgent referral without a reason (or with a blank one) is refused."""
    for urgency in ({"priority": "urgent"}, {"priority": "urgent", "reason": "   "}):
        with pytest.raises(ValidationError, match="urgent referral needs a reason"):
            s.Referral.model_validate(referral_data(urgency=urgency))
    ok = s.Referral.model_validate(
        referral_data(urgency={"priority": "urgent", "reason": "ongoing abuse"})
    )
    assert ok.urgency.reason == "ongoing abuse"


@pytest.mark.parametrize(
    ("algorithm", "length"), [("md5", 32), ("sha1", 40), ("sha256", 64), ("pdq", 64)]
)
def test_hash_length_must_match_algorithm(algorithm: str, length: int) -> None:
    """Each hash type accepts exactly its hex length; every other valid-looking
    length is refused."""
    for n in (32, 40, 64):
        h = {"algorithm": algorithm, "value": "a" * n}
        if n == length:
            assert n == len(s.ContentHash.model_validate(h).value)
        else:
            with pytest.raises(ValidationError, match="hex digits"):
                s.ContentHash.model_validate(h)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("surprise", 1, "Extra inputs"),
        ("urls.0.surprise", 1, "Extra inputs"),
        ("urls.0.hosting.country", "XX", "ISO 3166"),
        ("urls.0.hosting.country", "nl", "pattern"),
        ("urls.0.hosting.ip", "192.0.2.300", "IPv4"),
        ("urls.0.hosting.ip", "example.org", "IPv4"),
        ("urls.0.hosting.asn", 0, "greater than or equal"),
        ("urls.0.hosting.asn", 2**32, "less than or equal"),
        ("urls.0.url", "javascript:alert(1)", "absolute http"),
        ("urls.0.url", "https://example.org/" + "a" * 5000, "at most 4096"),
        ("items.0.hashes.0.value", "0F" * 32, "pattern"),
        ("items.0.hashes.0.value", "0f" * 31, "hex digits"),
        ("items.0.hashes", [], "at least 1"),
        ("items.0.url_index", 5, "has no url"),
        ("items.0.classification", "illegal", "Input should be"),
        ("incident.type", "spam", "Input should be"),
        ("incident.summary", "x" * 10_001, "at most 10000"),
        ("incident.summary", "", "at least 1"),
        ("handling.tlp", "AMBER-STRICT", "Input should be"),
        ("handling.source_reliability", "D", "Input should be"),
        ("handling.information_accuracy", "5", "Input should be"),
        ("handling.code", "H3", "H3 needs"),
        ("handling.restriction", "no onward use", "only for handling code H3"),
        ("delete_after", "someday", "date"),
        ("reporter.reference", " bad ref", "pattern"),
        ("annotations", ["sextortion", "sextortion"], "duplicate"),
        ("schema_version", 2, "Input should be 1"),
    ],
)
def test_referral_refuses_bad_input(path: str, value: Any, match: str) -> None:
    """Extra fields, bad countries/IPs/ASNs/URLs, oversize text, wrong hash form,
    dangling url_index, unknown enum values and inconsistent handling are refused."""
    with pytest.raises(ValidationError, match=match):
        s.Referral.model_validate(_with(path, value))


def test_too_many_urls_refused() -> None:
    """A referral holds at most MAX_URLS URLs."""
    url = referral_data()["urls"][0]
    with pytest.raises(ValidationError, match="at most 1000"):
        s.Referral.model_validate(referral_data(urls=[url] * (s.MAX_URLS + 1), items=[]))


def test_referral_needs_some_reference() -> None:
    """A referral with no URL, no item and no person refers to nothing: refused."""
    with pytest.raises(ValidationError, match="at least one url, item or person"):
        s.Referral.model_validate(referral_data(urls=[], items=[]))


def test_person_with_ip_events() -> None:
    """Reported persons carry IP capture events; the event type, port range and
    E.164 phone format are checked."""
    person: dict[str, Any] = {
        "role": "reported_user",
        "phones": ["+31201234567"],
        "ip_events": [
            {"ip": "2001:db8::1", "event": "login", "at": "2026-01-01T00:00:00Z", "port": 443}
        ],
    }
    referral = s.Referral.model_validate(referral_data(persons=[person]))
    assert referral.persons[0].ip_events[0].event == s.IpEventType.LOGIN
    for bad, match in (
        ({"event": "logout"}, "Input should be"),
        ({"port": 70_000}, "less than or equal"),
    ):
        event = {**person["ip_events"][0], **bad}
        with pytest.raises(ValidationError, match=match):
            s.Referral.model_validate(referral_data(persons=[{**person, "ip_events": [event]}]))
    with pytest.raises(ValidationError, match="pattern"):
        s.Referral.model_validate(referral_data(persons=[{**person, "phones": ["0201234567"]}]))


def test_pdq_quality_only_on_pdq() -> None:
    """The quality score belongs to PDQ hashes only."""
    assert s.ContentHash(algorithm="pdq", value="1" * 64, quality=80).quality == 80
    with pytest.raises(ValidationError, match="only for pdq"):
        s.ContentHash(algorithm="md5", value="1" * 32, quality=80)
