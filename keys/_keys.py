"""One type per key role, each carrying its ``KeyId``.

============  ===========================  ====================================
type          holds                        used for
============  ===========================  ====================================
SigningKey    Ed25519 private key          sign envelopes / the directory
VerifyKey     Ed25519 public key           verify them
SealingKey    HPKE public key (recipient)  wrap a content key to a recipient
OpeningKey    HPKE private key (recipient) unwrap it
============  ===========================  ====================================

A key id is derived from the public key: ``<alg>-<first 16 hex of SHA-256(raw
public key)>``, e.g. ``ed25519-3f2a9c0d1e4b5a67``. It is therefore the same
wherever the key is seen and cannot be pointed at another key by mistake.

No raw key bytes travel between modules: the wire encodings (``public_raw()``,
``*_from_raw``) exist for the directory and the keystore only. No ``repr`` shows
key material.
"""

from __future__ import annotations

import enum
from typing import NewType

from keys import _primitives as P

__all__ = [
    "Kem",
    "KeyId",
    "OpeningKey",
    "SealingKey",
    "SigningKey",
    "VerifyKey",
    "derive_key_id",
]

KeyId = NewType("KeyId", str)


class Kem(enum.StrEnum):
    """The HPKE KEM of an encryption key; chosen per participant."""

    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"

    @property
    def hpke_id(self) -> int:
        return P.KEM_ID_X25519 if self is Kem.X25519 else P.KEM_ID_MLKEM768_X25519

    @classmethod
    def from_hpke_id(cls, kem_id: int) -> Kem | None:
        return _KEM_BY_ID.get(kem_id)


_KEM_BY_ID = {P.KEM_ID_X25519: Kem.X25519, P.KEM_ID_MLKEM768_X25519: Kem.MLKEM768_X25519}


def derive_key_id(algorithm: str, public_raw: bytes) -> KeyId:
    return KeyId(f"{algorithm}-{P.sha256(public_raw)[:8].hex()}")


class VerifyKey:
    """An Ed25519 public key with its id."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: P.Ed25519Public, key_id: KeyId | None = None) -> None:
        self._key = key
        self.key_id = key_id or derive_key_id("ed25519", P.ed25519_public_raw(key))

    @classmethod
    def from_raw(cls, raw: bytes, key_id: KeyId | None = None) -> VerifyKey:
        """Raises ``keys._primitives.CryptoFailure`` on a malformed key."""
        return cls(P.ed25519_public_from_raw(raw), key_id)

    @classmethod
    def from_der(cls, der: bytes, key_id: KeyId | None = None) -> VerifyKey:
        """From DER SubjectPublicKeyInfo (raises ``CryptoFailure`` if not Ed25519)."""
        return cls(P.ed25519_public_from_der(der), key_id)

    def to_der(self) -> bytes:
        return P.public_der(self._key)

    @classmethod
    def from_pem(cls, pem: bytes) -> VerifyKey:
        key = P.load_public_pem(pem)
        if not isinstance(key, P.Ed25519Public):
            raise P.CryptoFailure("not an Ed25519 public key")
        return cls(key)

    def public_raw(self) -> bytes:
        return P.ed25519_public_raw(self._key)

    def to_pem(self) -> bytes:
        return P.public_pem(self._key)

    def verify(self, signature: bytes, message: bytes) -> bool:
        return len(signature) == 64 and P.ed25519_verify(self._key, signature, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and self.public_raw() == other.public_raw()

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"VerifyKey({self.key_id!r})"


class SigningKey:
    """An Ed25519 private key with its id (the id of its public half)."""

    __slots__ = ("_key", "key_id", "verify_key")

    def __init__(self, key: P.Ed25519Private) -> None:
        self._key = key
        self.verify_key = VerifyKey(P.ed25519_public(key))
        self.key_id = self.verify_key.key_id

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(P.ed25519_generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from its 32-byte seed: for deterministic test vectors only."""
        return cls(P.ed25519_private_from_raw(seed))

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None = None) -> SigningKey:
        key = P.load_private_pem(pem, passphrase)
        if not isinstance(key, P.Ed25519Private):
            raise P.CryptoFailure("not an Ed25519 private key")
        return cls(key)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        return P.private_pem(self._key, passphrase)

    def sign(self, message: bytes) -> bytes:
        return P.ed25519_sign(self._key, message)

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id!r})"


class SealingKey:
    """A recipient's HPKE public key: X25519 or the ML-KEM-768+X25519 hybrid."""

    __slots__ = ("_key", "_raw", "kem", "key_id")

    def __init__(self, kem: Kem, raw: bytes) -> None:
        """``raw``: the KEM's public key encoding (raises ``CryptoFailure`` if bad)."""
        self.kem = kem
        self._raw = bytes(raw)
        self._key: P.X25519Public | P.HybridPublic = (
            P.x25519_public_from_raw(raw) if kem is Kem.X25519 else P.hybrid_public_from_raw(raw)
        )
        self.key_id = derive_key_id(kem.value, self._raw)

    def public_raw(self) -> bytes:
        return self._raw

    def wrap(self, content_key: bytes, *, info: bytes, ikm_e: bytes | None) -> tuple[bytes, bytes]:
        """HPKE SealBase of ``content_key`` -> ``(enc, ct)``.

        For X25519, ``ikm_e`` seeds the ephemeral key (RFC 9180 ``DeriveKeyPair``;
        deterministic vectors); ``None`` lets ``cryptography``'s HPKE draw it from
        the OS (the faster path ``seal`` takes with its default ``rng``). Both give
        the same format. The hybrid KEM always draws its own randomness.
        """
        if isinstance(self._key, P.X25519Public):
            if ikm_e is None:
                return P.hpke_x25519_seal_fast(self._key, content_key, info=info)
            return P.hpke_x25519_seal(self._key, content_key, info=info, aad=b"", ikm_e=ikm_e)
        return P.hpke_hybrid_seal(self._key, content_key, info=info)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealingKey) and (self.kem, self._raw) == (other.kem, other._raw)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"SealingKey({self.key_id!r})"


class OpeningKey:
    """A recipient's HPKE private key; knows its ``SealingKey``."""

    __slots__ = ("_hybrid", "_mlkem", "_x25519", "kem", "key_id", "sealing_key")

    def __init__(self, x25519: P.X25519Private, mlkem: P.MLKEM768Private | None = None) -> None:
        self._x25519 = x25519
        self._mlkem = mlkem
        if mlkem is None:
            self.kem = Kem.X25519
            self._hybrid = None
            raw = P.x25519_public_raw(P.x25519_public(x25519))
        else:
            self.kem = Kem.MLKEM768_X25519
            self._hybrid = P.hybrid_private(mlkem, x25519)
            raw = P.hybrid_public_raw(mlkem.public_key(), P.x25519_public(x25519))
        self.sealing_key = SealingKey(self.kem, raw)
        self.key_id = self.sealing_key.key_id

    @classmethod
    def generate(cls, kem: Kem = Kem.X25519) -> OpeningKey:
        if kem is Kem.X25519:
            return cls(P.x25519_generate())
        m, x = P.hybrid_generate()
        return cls(x, m)

    @classmethod
    def from_x25519_seed(cls, raw: bytes) -> OpeningKey:
        """An X25519 key from its 32-byte scalar: for deterministic test vectors only."""
        return cls(P.x25519_private_from_raw(raw))

    @classmethod
    def from_pems(
        cls, x25519_pem: bytes, mlkem_pem: bytes | None = None, passphrase: bytes | None = None
    ) -> OpeningKey:
        x = P.load_private_pem(x25519_pem, passphrase)
        if not isinstance(x, P.X25519Private):
            raise P.CryptoFailure("not an X25519 private key")
        if mlkem_pem is None:
            return cls(x)
        m = P.load_private_pem(mlkem_pem, passphrase)
        if not isinstance(m, P.MLKEM768Private):
            raise P.CryptoFailure("not an ML-KEM-768 private key")
        return cls(x, m)

    def to_pems(self, passphrase: bytes | None = None) -> tuple[bytes, bytes | None]:
        """``(x25519 PKCS#8 PEM, ML-KEM-768 PKCS#8 PEM or None)``."""
        m = None if self._mlkem is None else P.private_pem(self._mlkem, passphrase)
        return P.private_pem(self._x25519, passphrase), m

    def public_pems(self) -> tuple[bytes, bytes | None]:
        x = P.public_pem(P.x25519_public(self._x25519))
        m = None if self._mlkem is None else P.public_pem(self._mlkem.public_key())
        return x, m

    def unwrap(self, enc: bytes, ct: bytes, *, info: bytes) -> bytes:
        """HPKE OpenBase; raises ``CryptoFailure`` on any failure."""
        if self._hybrid is None:
            return P.hpke_x25519_open_fast(self._x25519, enc, ct, info=info)
        return P.hpke_hybrid_open(self._hybrid, enc, ct, info=info)

    def __repr__(self) -> str:
        return f"OpeningKey({self.key_id!r})"
