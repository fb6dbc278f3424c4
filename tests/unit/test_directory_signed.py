"""The signed federation directory: verification, rollback, rotation, revocation."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import keys
from keys import DirectoryError, DirectoryReason, OpeningKey, SigningKey, TrustStore
from schemas import KeyKind, ParticipantStatus, Reason
from tests.unit._federation import NOW, draft, federation, referral, signed_bytes

FED = federation()


def test_signed_directory_verifies_against_the_pinned_root() -> None:
    """A directory signed by the root verifies and comes back equal."""
    d = FED.directory()
    assert keys.verify_directory(signed_bytes(FED, d), root=FED.root.verify_key) == d


def test_other_root_key_is_refused() -> None:
    """Pinned to another root: unknown_root_key, nothing else is trusted."""
    with pytest.raises(DirectoryError) as info:
        keys.verify_directory(signed_bytes(FED), root=SigningKey.generate().verify_key)
    assert info.value.reason == DirectoryReason.UNKNOWN_ROOT_KEY


def test_any_edit_breaks_the_root_signature() -> None:
    """Editing a participant's key validity after signing is caught."""
    data = json.loads(signed_bytes(FED))
    data["directory"]["participants"][0]["keys"][0]["not_after"] = "2030-01-01T00:00:00.000000Z"
    with pytest.raises(DirectoryError) as info:
        keys.verify_directory(json.dumps(data).encode(), root=FED.root.verify_key)
    assert info.value.reason == DirectoryReason.BAD_SIGNATURE


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"directory": {}}'])
def test_malformed_files_are_refused(data: bytes) -> None:
    """Not JSON, or not a signed directory: malformed."""
    with pytest.raises(DirectoryError) as info:
        keys.verify_directory(data, root=FED.root.verify_key)
    assert info.value.reason == DirectoryReason.MALFORMED


def test_key_id_that_does_not_match_its_key_is_refused() -> None:
    """Verified as a whole: a record whose id is not derived from its key is invalid."""
    d = FED.directory()
    p = d.participants[0]
    bad = p.keys[0].model_copy(update={"key_id": "ed25519-0000000000000000"})
    fake = d.model_copy(
        update={
            "participants": (p.model_copy(update={"keys": (bad, p.keys[1])}), *d.participants[1:])
        }
    )
    with pytest.raises(DirectoryError) as info:
        keys.sign_directory(fake, FED.root)
    assert info.value.reason == DirectoryReason.INVALID


def test_rollback_and_equivocation_are_refused(tmp_path: Path) -> None:
    """A lower version, or the same version with other content, is refused; newer is fine."""
    store = TrustStore(tmp_path / "trust.json")
    v1 = FED.directory()
    v2 = keys.revoke(v1, "nl.police", key_id=None, now=NOW)
    store.accept(v2)
    with pytest.raises(DirectoryError) as info:
        store.accept(v1)
    assert info.value.reason == DirectoryReason.ROLLBACK
    v2_other = keys.revoke(v1, "nl.hotline", key_id=None, now=NOW)
    with pytest.raises(DirectoryError) as info:
        store.accept(v2_other)
    assert info.value.reason == DirectoryReason.EQUIVOCATION
    store.accept(v2)  # the identical directory again is fine
    store.accept(keys.revoke(v2, "nl.hotline", key_id=None, now=NOW))
    assert store.highest("test-federation") == 3


def test_load_directory_checks_signature_then_rollback(tmp_path: Path) -> None:
    """load_directory = verify + trust store."""
    store = TrustStore(tmp_path / "trust.json")
    v1, path = FED.directory(), tmp_path / "directory.json"
    v2 = keys.set_status(v1, "nl.police", ParticipantStatus.SUSPENDED, now=NOW)
    path.write_bytes(signed_bytes(FED, v2))
    assert keys.load_directory(path, root=FED.root.verify_key, trust_store=store) == v2
    path.write_bytes(signed_bytes(FED, v1))
    with pytest.raises(DirectoryError, match="rollback"):
        keys.load_directory(path, root=FED.root.verify_key, trust_store=store)


def test_rotation_new_key_signs_old_still_verifies_until_grace_ends() -> None:
    """After rotation the newest key is current; envelopes under the old key verify
    during the grace period and are refused as key_expired after it."""
    d1 = FED.directory()
    sender = FED.members["de.hotline"]
    old_env = keys.seal(draft(), referral(), signing_key=sender.signing, directory=d1, now=NOW)
    new_sig, new_enc = SigningKey.generate(), OpeningKey.generate()
    d2 = keys.rotate(
        d1,
        "de.hotline",
        new_keys=(new_sig.verify_key, new_enc.sealing_key),
        now=NOW,
        grace=timedelta(days=7),
    )
    p = d2.participant("de.hotline")
    assert p is not None
    assert keys.current_signing_record(p, NOW).key_id == new_sig.key_id  # type: ignore[union-attr]
    assert keys.current_sealing_key(p, NOW) == new_enc.sealing_key
    assert keys.verify(old_env, directory=d2, now=NOW).header.sender_key_id == sender.signing.key_id
    new_env = keys.seal(draft(), referral(), signing_key=new_sig, directory=d2, now=NOW)
    assert keys.verify(new_env, directory=d2, now=NOW).header.sender_key_id == new_sig.key_id
    late = NOW + timedelta(days=7, seconds=1)
    with pytest.raises(keys.EnvelopeError) as info:
        keys.verify(old_env, directory=d2, now=late, limits=keys.Limits(max_age=timedelta(days=30)))
    assert info.value.reason == Reason.KEY_EXPIRED


def test_rotated_recipient_still_opens_mail_sealed_to_its_old_key() -> None:
    """Old encryption keys decrypt until they expire; new mail goes to the new key."""
    d1 = FED.directory()
    sender, nl = FED.members["de.hotline"], FED.members["nl.hotline"]
    old_env = keys.seal(draft(), referral(), signing_key=sender.signing, directory=d1, now=NOW)
    new_enc = OpeningKey.generate()
    d2 = keys.rotate(d1, "nl.hotline", new_keys=(new_enc.sealing_key,), now=NOW)
    both = [nl.opening, new_enc]
    assert keys.open(old_env, recipient="nl.hotline", opening_keys=both, directory=d2, now=NOW)
    new_env = keys.seal(draft(), referral(), signing_key=sender.signing, directory=d2, now=NOW)
    v = keys.verify(new_env, directory=d2, now=NOW)
    assert [w.key_id for w in v.wrapped_keys if w.recipient == "nl.hotline"] == [new_enc.key_id]
    with pytest.raises(keys.EnvelopeError) as info:
        keys.open(new_env, recipient="nl.hotline", opening_keys=[nl.opening], directory=d2, now=NOW)
    assert info.value.reason == Reason.UNKNOWN_KEY


def test_revoke_one_key_leaves_the_others() -> None:
    """Revoking the signing key keeps the encryption key valid."""
    sender = FED.members["de.hotline"]
    d = keys.revoke(FED.directory(), "de.hotline", key_id=sender.signing.key_id, now=NOW)
    p = d.participant("de.hotline")
    assert p is not None
    assert p.keys_valid_at(KeyKind.SIGNING, NOW) == ()
    assert len(p.keys_valid_at(KeyKind.ENCRYPTION, NOW)) == 1
    assert d.version == FED.directory().version + 1
    with pytest.raises(keys.SealError):
        keys.seal(draft(), referral(), signing_key=sender.signing, directory=d, now=NOW)
