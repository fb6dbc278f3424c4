"""Directory, participants, public key records."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

import schemas as s

from ._schema_fixtures import KEY32, NOW, directory, key, participant


def key_data(**overrides: Any) -> dict[str, Any]:
    data = key("nl.hotline/sig/1").model_dump()
    data.update(overrides)
    return data


def test_key_validity_window_and_revocation() -> None:
    """A key is valid from not_before (inclusive) to not_after (exclusive), and not
    at or after its revocation."""
    record = key("nl.hotline/sig/1")
    assert record.is_valid_at(record.not_before)
    assert not record.is_valid_at(record.not_before - timedelta(microseconds=1))
    assert not record.is_valid_at(record.not_after)
    revoked = s.PublicKeyRecord.model_validate(key_data(revoked_at=NOW))
    assert revoked.is_valid_at(NOW - timedelta(seconds=1))
    assert not revoked.is_valid_at(NOW)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"kind": "encryption"}, "ed25519 keys are signing"),
        ({"algorithm": "x25519"}, "x25519 keys are encryption"),
        ({"algorithm": "rsa"}, "Input should be"),
        ({"public_key": "not base64!"}, "pattern"),
        ({"public_key": base64.b64encode(bytes(31)).decode()}, "must be 32 bytes"),
        ({"encoding": "spki-der"}, "must be 44 bytes"),
        ({"public_key": "AAAB"}, "must be 32 bytes"),
        ({"public_key": KEY32.rstrip("=") + "B="}, "canonical base64|valid base64"),
        ({"not_after": NOW - timedelta(days=31)}, "not_before must be before"),
        ({"extra": True}, "Extra inputs"),
    ],
)
def test_public_key_record_refuses_bad_input(overrides: dict[str, Any], match: str) -> None:
    """Kind/algorithm mismatch, bad or non-canonical base64, wrong key size for the
    algorithm and encoding, an empty validity window and extra fields are refused."""
    with pytest.raises(ValidationError, match=match):
        s.PublicKeyRecord.model_validate(key_data(**overrides))


def test_public_key_bytes_decodes() -> None:
    """public_key_bytes returns the decoded key."""
    assert bytes(32) == key("a/1").public_key_bytes()


def test_participant_prefix_must_match_jurisdiction() -> None:
    """``nl.*`` participants belong to NL; ``int.*`` ones have no jurisdiction."""
    with pytest.raises(ValidationError, match="must be prefixed de"):
        participant("nl.hotline", ["hotline"], jurisdiction="DE")
    with pytest.raises(ValidationError, match="must be prefixed nl"):
        participant("int.coordinator", ["coordinator"], jurisdiction="NL")
    assert participant("eu.europol", ["regional_body"]).jurisdiction is None


def test_participant_sets_are_normalised() -> None:
    """Roles and categories are sets: sorted on input, duplicates refused."""
    p = participant("nl.police", ["police_24x7", "police"], categories=["trafficking", "csam"])
    assert p.roles == (s.Role.POLICE, s.Role.POLICE_24X7)
    assert p.categories == (s.Category.CSAM, s.Category.TRAFFICKING)
    with pytest.raises(ValidationError, match="duplicate"):
        participant("nl.police", ["police", "police"])


def test_participant_key_lookup() -> None:
    """key() finds a record by id; keys_valid_at filters by kind and validity."""
    p = participant("nl.hotline", ["hotline"])
    assert p.key("nl.hotline/enc/1").key_id == "nl.hotline/enc/1"  # type: ignore[union-attr]
    assert p.key("nope") is None
    assert tuple(k.key_id for k in p.keys_valid_at(s.KeyKind.SIGNING, NOW)) == ("nl.hotline/sig/1",)
    assert p.keys_valid_at(s.KeyKind.SIGNING, NOW + timedelta(days=400)) == ()


def test_directory_canonical_bytes_ignore_participant_order() -> None:
    """Participants are sorted by id, so the signed bytes do not depend on the order
    they were listed in; participant() looks them up."""
    a = participant("nl.hotline", ["hotline"])
    b = participant("de.hotline", ["hotline"])
    d1, d2 = directory(a, b), directory(b, a)
    assert d1.canonical_bytes() == d2.canonical_bytes()
    assert d1 == s.Directory.model_validate_json(d1.canonical_bytes())
    assert a == d1.participant("nl.hotline")
    assert d1.participant("fr.hotline") is None


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: directory(participant("nl.a", ["hotline"]), participant("nl.a", ["police"])),
            "duplicate participant_id",
        ),
        (lambda: directory(coordinator="nl.nobody"), "unknown participants"),
        (
            lambda: directory(standing_copies=[{"recipient": "eu.europol"}]),
            "unknown participants",
        ),
        (
            lambda: directory(participant("nl.a", ["hotline"]), coordinator="nl.a"),
            "coordinator role",
        ),
        (
            lambda: directory(participant("int.coordinator", ["coordinator"], categories=["csam"])),
            "accept every category",
        ),
    ],
)
def test_directory_refuses_inconsistent_data(build: Any, match: str) -> None:
    """Duplicate participants, rules naming unknown participants and a coordinator
    that is not one (or does not take every category) are refused."""
    with pytest.raises(ValidationError, match=match):
        build()


def test_directory_refuses_shared_key_ids() -> None:
    """Key ids are unique across the directory (a header names sender + key id, and
    the root key id is not a participant key)."""
    p = participant("nl.a", ["hotline"])
    q = p.model_copy(update={"participant_id": "nl.b"})
    with pytest.raises(ValidationError, match="duplicate key_id"):
        directory(p, q)
    with pytest.raises(ValidationError, match="root_key_id"):
        s.Directory.model_validate({**directory(p).model_dump(), "root_key_id": "nl.a/sig/1"})


def test_directory_version_is_positive() -> None:
    """The version starts at 1."""
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        s.Directory.model_validate({**directory().model_dump(), "version": 0})


def test_participant_lookup_survives_model_copy() -> None:
    """participant() follows the current participants even after a model_copy that
    swapped them (model_copy skips validation, the lookup must not go stale)."""
    d = directory(participant("nl.hotline", ["hotline"]))
    swapped = d.model_copy(update={"participants": (participant("de.hotline", ["hotline"]),)})
    assert swapped.participant("nl.hotline") is None
    assert swapped.participant("de.hotline") is not None
    assert d.participant("nl.hotline") is not None
