"""Shared building blocks: UUIDv7, country codes, timestamps, canonical JSON, surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from pydantic import TypeAdapter, ValidationError

import schemas as s

from ._schema_fixtures import NOW


def test_uuid7_is_version_7_time_ordered_and_deterministic() -> None:
    """uuid7 encodes the millisecond timestamp first, sets version/variant, and is a
    pure function of (now, rng)."""
    rng = lambda n: b"\xff" * n  # noqa: E731
    a = s.uuid7(NOW, rng)
    b = s.uuid7(NOW + timedelta(milliseconds=1), rng)
    assert a.version == 7
    assert a.variant == "specified in RFC 4122"
    assert a < b
    assert a == s.uuid7(NOW, rng)
    assert int(NOW.timestamp() * 1000) == a.int >> 80


def test_uuid7_refuses_naive_time() -> None:
    """A naive datetime has no instant; uuid7 refuses to guess."""
    with pytest.raises(ValueError, match="timezone-aware"):
        s.uuid7(datetime(2026, 1, 1))


def test_message_id_refuses_other_uuid_versions() -> None:
    """A MessageId must be a UUIDv7: v4 and the nil UUID are refused."""
    adapter = TypeAdapter(s.MessageId)
    assert adapter.validate_python(str(s.uuid7(NOW))).version == 7
    for bad in (uuid4(), UUID(int=0)):
        with pytest.raises(ValidationError, match="UUIDv7"):
            adapter.validate_python(str(bad))


@pytest.mark.parametrize("code", ["nl", "ZZ", "EU", "UK", "NLD", "N1", ""])
def test_country_code_refuses_non_iso(code: str) -> None:
    """Country codes are uppercase, officially assigned ISO 3166-1 alpha-2 codes."""
    with pytest.raises(ValidationError):
        TypeAdapter(s.CountryCode).validate_python(code)


def test_country_code_accepts_assigned_codes_and_kosovo() -> None:
    """All 249 assigned codes plus XK are accepted."""
    adapter = TypeAdapter(s.CountryCode)
    assert len(s.ISO_3166_ALPHA2) == 250
    for code in s.ISO_3166_ALPHA2:
        assert code == adapter.validate_python(code)


def test_utc_datetime_normalises_and_refuses_naive() -> None:
    """Timestamps must carry a zone; they are normalised to UTC and serialised with
    six fraction digits and ``Z``."""
    adapter = TypeAdapter(s.UtcDatetime)
    cet = datetime(2026, 11, 23, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    value = adapter.validate_python(cet)
    assert value.tzinfo == UTC
    assert adapter.dump_json(value) == b'"2026-11-23T17:00:00.000000Z"'
    with pytest.raises(ValidationError, match="timezone"):
        adapter.validate_python(datetime(2026, 11, 23))


@pytest.mark.parametrize(
    "pid", ["nl.hotline", "int.coordinator", "de.bka_24x7", "eu.europol", "fr.a-b"]
)
def test_participant_id_accepts_valid(pid: str) -> None:
    """Participant ids are ``<cc>.<name>`` or ``int.<name>``."""
    assert pid == TypeAdapter(s.ParticipantId).validate_python(pid)


@pytest.mark.parametrize(
    "pid", ["NL.hotline", "nl", "nl.", "nld.hotline", "nl.Hotline", "nl.x y", "nl." + "a" * 41]
)
def test_participant_id_refuses_invalid(pid: str) -> None:
    """Uppercase, missing name, three-letter prefixes other than ``int``, spaces and
    over-long names are refused."""
    with pytest.raises(ValidationError):
        TypeAdapter(s.ParticipantId).validate_python(pid)


def test_uuid7_refuses_short_randomness() -> None:
    """An rng that returns fewer bytes than asked for is a bug, not entropy."""
    with pytest.raises(ValueError, match="number of bytes"):
        s.uuid7(NOW, lambda n: b"\x00")


def test_canonical_json_is_compact_sorted_utf8() -> None:
    """canonical_json writes sorted keys, no whitespace, non-ASCII as UTF-8."""
    record = s.Participant(
        participant_id="fr.hotline",
        display_name="Pointe de Contact — é",
        jurisdiction="FR",
        roles=(s.Role.HOTLINE,),
        categories=(s.Category.CSAM,),
    )
    assert (
        '{"categories":["csam"],"display_name":"Pointe de Contact — é","jurisdiction":"FR",'
        '"keys":[],"participant_id":"fr.hotline","roles":["hotline"],"status":"active"}'
    ).encode() == s.canonical_json(record)
