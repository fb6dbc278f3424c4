"""Private keys on disk: one folder per owner, standard PEM files.

Layout (``root`` is ``$CRB_HOME/keys`` for the CLI)::

    root/
      federation/                         the federation root key (directory signer)
        ed25519-<hex16>.pem               PKCS#8, mode 0600
        ed25519-<hex16>.pub.pem           SubjectPublicKeyInfo
      participants/<participant id>/
        ed25519-<hex16>.pem / .pub.pem    signing keys
        x25519-<hex16>.pem / .pub.pem     HPKE X25519 opening keys
        mlkem768-x25519-<hex16>.x25519.pem   hybrid opening key: its two halves,
        mlkem768-x25519-<hex16>.mlkem768.pem each PKCS#8 (+ .pub.pem of each)

File names are key ids (derived from the public key), so a key is found by id
without an index file. Private files are created with ``O_EXCL`` and mode 0600
inside 0700 folders, and refused on load when group or others can read them.
With a passphrase every private file is encrypted (``BestAvailableEncryption``:
PKCS#8 with PBES2/scrypt or AES-256-CBC, whatever ``cryptography`` picks).
Keys are never deleted here: a rotated or revoked key still opens old mail.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from keys import _primitives as P
from keys._deconfliction import DeconflictionKey
from keys._errors import KeystoreError
from keys._files import atomic_write
from keys._keys import Kem, KeyId, OpeningKey, SigningKey

__all__ = ["FEDERATION_OWNER", "Keystore"]

FEDERATION_OWNER = "federation"
_K = TypeVar("_K", SigningKey, OpeningKey)
_PRIVATE_MODE = 0o600


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        atomic_write(path, data, mode=mode, exclusive=True)
    except FileExistsError as exc:
        raise KeystoreError(f"{path}: already exists") from exc
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot create: {exc.strerror}") from exc


class Keystore:
    """A folder of PEM key files; ``passphrase`` encrypts/decrypts private files."""

    def __init__(self, root: Path, passphrase: bytes | None = None) -> None:
        self.root = root
        self._passphrase = passphrase or None

    @property
    def encrypted(self) -> bool:
        """Whether private keys are written encrypted (a passphrase was given)."""
        return self._passphrase is not None

    def __repr__(self) -> str:
        return f"Keystore({str(self.root)!r})"

    # -- folders -------------------------------------------------------------

    def owner_dir(self, owner: str) -> Path:
        if owner == FEDERATION_OWNER:
            return self.root / FEDERATION_OWNER
        if owner.startswith("service.") and owner[8:].isidentifier():
            return self.root / "services" / owner[8:]
        if not owner or "/" in owner or owner.startswith("."):
            raise KeystoreError(f"not a usable participant id: {owner!r}")
        return self.root / "participants" / owner

    def _ensure_dir(self, owner: str) -> Path:
        d = self.owner_dir(owner)
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeystoreError(f"{d}: cannot create: {exc.strerror}") from exc
        return d

    def has_owner(self, owner: str) -> bool:
        return self.owner_dir(owner).is_dir()

    # -- writing -------------------------------------------------------------

    def save_signing_key(self, owner: str, key: SigningKey) -> Path:
        d = self._ensure_dir(owner)
        path = d / f"{key.key_id}.pem"
        _write_new(path, key.to_pem(self._passphrase), _PRIVATE_MODE)
        _write_new(d / f"{key.key_id}.pub.pem", key.verify_key.to_pem(), 0o644)
        return path

    def save_opening_key(self, owner: str, key: OpeningKey) -> Path:
        d = self._ensure_dir(owner)
        x_pem, m_pem = key.to_pems(self._passphrase)
        x_pub, m_pub = key.public_pems()
        if m_pem is None or m_pub is None:
            path = d / f"{key.key_id}.pem"
            _write_new(path, x_pem, _PRIVATE_MODE)
            _write_new(d / f"{key.key_id}.pub.pem", x_pub, 0o644)
            return path
        path = d / f"{key.key_id}.x25519.pem"
        _write_new(path, x_pem, _PRIVATE_MODE)
        _write_new(d / f"{key.key_id}.mlkem768.pem", m_pem, _PRIVATE_MODE)
        _write_new(d / f"{key.key_id}.x25519.pub.pem", x_pub, 0o644)
        _write_new(d / f"{key.key_id}.mlkem768.pub.pem", m_pub, 0o644)
        return path

    # -- reading -------------------------------------------------------------

    def _read_private(self, path: Path) -> bytes:
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise KeystoreError(f"{path}: no such key file") from exc
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeystoreError(
                f"{path}: private key readable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); run chmod 600"
            )
        try:
            return path.read_bytes()
        except OSError as exc:
            raise KeystoreError(f"{path}: cannot read: {exc.strerror}") from exc

    def _decode_failed(self, path: Path) -> KeystoreError:
        why = "wrong passphrase or corrupt file" if self._passphrase else "encrypted or corrupt"
        return KeystoreError(f"{path}: cannot load private key ({why})")

    def _key_ids(self, owner: str, prefix: str) -> list[KeyId]:
        d = self.owner_dir(owner)
        if not d.is_dir():
            raise KeystoreError(f"{d}: no keys for {owner!r}")
        ids: set[str] = set()
        for p in d.iterdir():
            name = p.name
            if not name.startswith(prefix) or ".pub." in name or not name.endswith(".pem"):
                continue
            ids.add(name.split(".", 1)[0])
        return sorted(KeyId(i) for i in ids)

    def _checked(self, path: Path, key_id: KeyId, decode: Callable[[], _K]) -> _K:
        """``decode()``, refused as a keystore error if unreadable or another key."""
        try:
            key = decode()
        except P.CryptoFailure as exc:
            raise self._decode_failed(path) from exc
        if key.key_id != key_id:
            raise KeystoreError(f"{path}: holds key {key.key_id}, not {key_id}")
        return key

    def signing_key(self, owner: str, key_id: KeyId) -> SigningKey:
        path = self.owner_dir(owner) / f"{key_id}.pem"
        data = self._read_private(path)
        return self._checked(path, key_id, lambda: SigningKey.from_pem(data, self._passphrase))

    def signing_keys(self, owner: str) -> dict[KeyId, SigningKey]:
        return {k: self.signing_key(owner, k) for k in self._key_ids(owner, "ed25519-")}

    def opening_key(self, owner: str, key_id: KeyId) -> OpeningKey:
        d = self.owner_dir(owner)
        if key_id.startswith(Kem.MLKEM768_X25519.value + "-"):
            x_path, m_path = d / f"{key_id}.x25519.pem", d / f"{key_id}.mlkem768.pem"
            x_data, m_data = self._read_private(x_path), self._read_private(m_path)
        else:
            x_path, m_path, m_data = d / f"{key_id}.pem", None, None
            x_data = self._read_private(x_path)
        return self._checked(
            x_path, key_id, lambda: OpeningKey.from_pems(x_data, m_data, self._passphrase)
        )

    def opening_keys(self, owner: str) -> dict[KeyId, OpeningKey]:
        ids = self._key_ids(owner, "x25519-") + self._key_ids(owner, "mlkem768-x25519-")
        return {k: self.opening_key(owner, k) for k in ids}

    # -- the federation deconfliction key -------------------------------------

    def save_deconfliction_key(self, owner: str, key: DeconflictionKey) -> Path:
        """``<owner>/deconfliction-<epoch>.key``: the 32 bytes in hex, mode 0600 (a
        shared secret of the participants; not encrypted by the passphrase)."""
        d = self._ensure_dir(owner)
        path = d / f"deconfliction-{key.epoch}.key"
        _write_new(path, key.secret.hex().encode() + b"\n", _PRIVATE_MODE)
        return path

    def deconfliction_keys(self, owner: str) -> dict[int, DeconflictionKey]:
        """Every epoch ``owner`` holds (none: an empty dict)."""
        d = self.owner_dir(owner)
        found: dict[int, DeconflictionKey] = {}
        for path in sorted(d.glob("deconfliction-*.key")) if d.is_dir() else ():
            epoch = path.name[len("deconfliction-") : -len(".key")]
            try:
                found[int(epoch)] = DeconflictionKey(
                    int(epoch), bytes.fromhex(self._read_private(path).decode().strip())
                )
            except (ValueError, UnicodeDecodeError) as exc:
                raise KeystoreError(f"{path}: not a deconfliction key") from exc
        return found

    def deconfliction_key(self, owner: str) -> DeconflictionKey | None:
        """The newest epoch ``owner`` holds, or ``None``."""
        held = self.deconfliction_keys(owner)
        return held[max(held)] if held else None
