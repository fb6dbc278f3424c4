"""EnvelopeHeader: validation and the canonical bytes the signature covers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

import schemas as s
from tests.strategies import headers

from ._schema_fixtures import CASE, MSG, header_data

CANONICAL = (
    '{"case_id":"' + str(CASE) + '","category":"csam",'
    '"created_at":"2026-11-23T17:00:00.000000Z","decision":null,"deconfliction":null,"escalation_of":null,"handling_code":"H0",'
    '"in_reply_to":null,'
    '"jurisdiction":"NL","key_commitment":"' + "ab" * 32 + '","message_id":"' + str(MSG) + '",'
    '"message_type":"referral","priority":"routine","recipients":["nl.hotline","nl.police"],'
    '"schema_version":1,"sender":"de.hotline","sender_key_id":"de.hotline/sig/1"}'
).encode()


def test_canonical_bytes_are_the_documented_encoding() -> None:
    """canonical_bytes is compact JSON with sorted keys, null for absent optional
    fields, UTC ``Z`` timestamps with six fraction digits: a fixed vector."""
    header = s.EnvelopeHeader.model_validate(header_data())
    assert header.canonical_bytes() == CANONICAL


def test_canonical_bytes_do_not_depend_on_input_form() -> None:
    """Recipient order and the time zone of the input do not change the bytes."""
    a = s.EnvelopeHeader.model_validate(header_data())
    b = s.EnvelopeHeader.model_validate(
        header_data(recipients=["nl.police", "nl.hotline"], created_at="2026-11-23T18:00:00+01:00")
    )
    assert a.canonical_bytes() == b.canonical_bytes()
    assert b.recipients == ("nl.hotline", "nl.police")


def test_from_canonical_bytes_round_trips() -> None:
    """Canonical bytes parse back to an equal header."""
    header = s.EnvelopeHeader.model_validate(header_data())
    assert header == s.EnvelopeHeader.from_canonical_bytes(header.canonical_bytes())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b'"nl.hotline","nl.police"', b'"nl.police","nl.hotline"'),
        lambda b: json.dumps(json.loads(b), sort_keys=True).encode(),
        lambda b: b.replace(b"17:00:00.000000Z", b"18:00:00.000000+01:00"),
        lambda b: b.replace(b',"in_reply_to":null', b""),
    ],
    ids=["unsorted-recipients", "whitespace", "offset", "omitted-null"],
)
def test_from_canonical_bytes_refuses_other_encodings(mangle: object) -> None:
    """Valid but non-canonical encodings of the same header are refused, so a
    signed header has exactly one byte form."""
    data = s.EnvelopeHeader.model_validate(header_data()).canonical_bytes()
    mangled = mangle(data)  # type: ignore[operator]
    assert mangled != data
    with pytest.raises(s.NonCanonicalHeaderError):
        s.EnvelopeHeader.from_canonical_bytes(mangled)


@given(headers())
@settings(deadline=None)
def test_canonical_bytes_round_trip_property(header: s.EnvelopeHeader) -> None:
    """For any valid header, from_canonical_bytes(canonical_bytes(h)) == h."""
    assert header == s.EnvelopeHeader.from_canonical_bytes(header.canonical_bytes())


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"surprise": 1}, "Extra inputs"),
        ({"message_id": "3b241101-e2bb-4255-8caf-4136c566a962"}, "UUIDv7"),
        ({"case_id": "00000000-0000-0000-0000-000000000000"}, "UUIDv7"),
        ({"jurisdiction": "nl"}, "pattern"),
        ({"jurisdiction": "ZZ"}, "ISO 3166"),
        ({"created_at": "2026-11-23T17:00:00"}, "timezone"),
        ({"recipients": []}, "at least 1"),
        ({"recipients": ["nl.hotline", "nl.hotline"]}, "duplicate"),
        ({"recipients": [f"nl.p{i}" for i in range(65)]}, "at most 64"),
        ({"recipients": ["de.hotline"]}, "sender cannot"),
        ({"category": "spam"}, "Input should be"),
        ({"priority": "URGENT"}, "Input should be"),
        ({"key_commitment": "AB" * 32}, "pattern"),
        ({"key_commitment": "ab" * 16}, "pattern"),
        ({"key_commitment": "ab" * 33}, "pattern"),  # HMAC-SHA256: exactly 32 bytes
        ({"in_reply_to": None, "message_type": "receipt", "recipients": ["nl.hotline"]}, "needs"),
        ({"in_reply_to": str(CASE)}, "only receipts"),
        ({"schema_version": 2}, "Input should be 1"),
        ({"sender_key_id": "has space"}, "pattern"),
    ],
)
def test_header_refuses_bad_input(overrides: dict[str, object], match: str) -> None:
    """Each malformed field (extra, non-v7 ids, lowercase or unassigned country,
    naive time, empty/duplicate/oversize/self recipients, unknown enum values,
    bad commitment, reply rules, wrong version) is refused."""
    with pytest.raises(ValidationError, match=match):
        s.EnvelopeHeader.model_validate(header_data(**overrides))


def test_reply_has_exactly_one_recipient() -> None:
    """A receipt goes to the original sender only: two recipients are refused, one
    with in_reply_to is accepted."""
    reply = header_data(message_type="receipt", in_reply_to=str(CASE), sender="nl.hotline")
    with pytest.raises(ValidationError, match="exactly one recipient"):
        s.EnvelopeHeader.model_validate({**reply, "recipients": ["de.hotline", "nl.police"]})
    ok = s.EnvelopeHeader.model_validate({**reply, "recipients": ["de.hotline"]})
    assert ok.in_reply_to == CASE


def test_header_is_frozen() -> None:
    """Headers are immutable: assignment raises."""
    header = s.EnvelopeHeader.model_validate(header_data())
    with pytest.raises(ValidationError, match="frozen"):
        header.priority = s.Priority.URGENT  # type: ignore[misc]


def test_header_carries_nothing_content_revealing() -> None:
    """The clear header has exactly the routing fields: any new field is a
    deliberate decision about what the router (and Kafka) may see."""
    assert {
        "schema_version", "message_id", "message_type", "sender", "sender_key_id",
        "created_at", "case_id", "jurisdiction", "category", "priority", "handling_code",
        "recipients", "in_reply_to", "decision", "key_commitment", "deconfliction",
        "escalation_of",
    } == set(s.EnvelopeHeader.model_fields)  # fmt: skip
