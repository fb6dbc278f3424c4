"""Role types and the on-disk keystore (PEM, 0600, passphrase)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import keys
from keys import Kem, Keystore, KeystoreError, OpeningKey, SigningKey


def test_key_ids_derive_from_the_public_key() -> None:
    """A key id names the algorithm and a hash of the public key, so it is stable."""
    sk = SigningKey.generate()
    assert sk.key_id.startswith("ed25519-")
    assert sk.key_id == keys.VerifyKey.from_pem(sk.verify_key.to_pem()).key_id
    ok = OpeningKey.generate(Kem.MLKEM768_X25519)
    assert ok.key_id.startswith("mlkem768-x25519-")
    assert ok.key_id == ok.sealing_key.key_id


def test_repr_never_shows_key_material() -> None:
    """repr names the key id only."""
    sk = SigningKey.generate()
    assert repr(sk) == f"SigningKey({sk.key_id!r})"
    assert repr(OpeningKey.generate()).startswith("OpeningKey('x25519-")


def test_signing_key_signs_and_verify_key_verifies() -> None:
    """Sign/verify, and a wrong message or signature length is refused."""
    sk = SigningKey.generate()
    sig = sk.sign(b"m")
    assert sk.verify_key.verify(sig, b"m")
    assert not sk.verify_key.verify(sig, b"n")
    assert not sk.verify_key.verify(sig[:-1], b"m")


@pytest.mark.parametrize("passphrase", [None, b"correct horse"])
@pytest.mark.parametrize("kem", list(Kem))
def test_keystore_round_trip(tmp_path: Path, passphrase: bytes | None, kem: Kem) -> None:
    """Keys saved as PEM load back identical, with or without a passphrase."""
    store = Keystore(tmp_path, passphrase)
    sk, ok = SigningKey.generate(), OpeningKey.generate(kem)
    store.save_signing_key("nl.hotline", sk)
    store.save_opening_key("nl.hotline", ok)
    assert list(store.signing_keys("nl.hotline")) == [sk.key_id]
    assert store.opening_keys("nl.hotline")[ok.key_id].sealing_key == ok.sealing_key
    assert store.signing_key("nl.hotline", sk.key_id).verify_key == sk.verify_key


def test_private_files_are_0600_and_pkcs8(tmp_path: Path) -> None:
    """Every private file is owner-only and a PKCS#8 PEM; public files are SPKI PEM."""
    store = Keystore(tmp_path)
    store.save_signing_key("nl.hotline", SigningKey.generate())
    store.save_opening_key("nl.hotline", OpeningKey.generate(Kem.MLKEM768_X25519))
    files = sorted((tmp_path / "participants" / "nl.hotline").iterdir())
    private = [f for f in files if ".pub." not in f.name]
    assert len(private) == 3
    for f in private:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert f.read_bytes().startswith(b"-----BEGIN " + b"PRIVATE KEY-----")
    for f in files:
        if ".pub." in f.name:
            assert f.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_passphrase_encrypts_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    """Encrypted PKCS#8 on disk; wrong or missing passphrase -> KeystoreError."""
    sk = SigningKey.generate()
    Keystore(tmp_path, b"right").save_signing_key("nl.hotline", sk)
    path = tmp_path / "participants" / "nl.hotline" / f"{sk.key_id}.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----")
    for wrong in (b"wrong", None):
        with pytest.raises(KeystoreError, match="cannot load private key"):
            Keystore(tmp_path, wrong).signing_key("nl.hotline", sk.key_id)


def test_group_readable_private_key_is_refused(tmp_path: Path) -> None:
    """A private key file others can read is not used."""
    store = Keystore(tmp_path)
    sk = SigningKey.generate()
    path = store.save_signing_key("nl.hotline", sk)
    path.chmod(0o640)
    with pytest.raises(KeystoreError, match="chmod 600"):
        store.signing_key("nl.hotline", sk.key_id)


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    """Saving a key twice fails instead of replacing the file."""
    store = Keystore(tmp_path)
    sk = SigningKey.generate()
    store.save_signing_key("nl.hotline", sk)
    with pytest.raises(KeystoreError, match="already exists"):
        store.save_signing_key("nl.hotline", sk)


def test_missing_owner_and_bad_ids(tmp_path: Path) -> None:
    """Unknown owners and path-like ids are refused with a KeystoreError."""
    store = Keystore(tmp_path)
    with pytest.raises(KeystoreError, match="no keys"):
        store.signing_keys("nl.nobody")
    with pytest.raises(KeystoreError, match="not a usable"):
        store.owner_dir("../etc")
