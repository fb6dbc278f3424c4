"""Every raw cryptographic primitive the project uses, and nothing else.

This is the only module that imports ``cryptography``. The rest of ``keys`` wraps
these functions in role types (``SigningKey``, ``SealingKey``...) and recipes
(``seal``/``verify``/``open``); no other package calls this module.

HPKE (RFC 9180), two suites, both Base mode, single-shot:

* ``DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305`` (0x0020, 0x0001,
  0x0003) is implemented here from X25519/HKDF/ChaCha20Poly1305 so that the
  ephemeral key can be *derived from injected randomness* (RFC 9180 §7.1.3
  ``DeriveKeyPair(ikmE)``): that is what makes the committed envelope vectors
  reproducible. ``cryptography``'s own ``hpke.Suite`` takes no ephemeral key. The
  output is byte-identical to ``hpke.Suite`` and to pyhpke (checked in the tests,
  together with RFC 9180 A.2.1).
* ``MLKEM768-X25519, HKDF-SHA256, ChaCha20Poly1305`` (the post-quantum hybrid)
  is ``cryptography``'s ``hpke.Suite``; it draws its own randomness, so envelopes
  that use it are not reproducible (nor need to be).

Key material never reaches a ``repr``, a log or an exception message here.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Final, TypeVar

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from keys._errors import KeysError

__all__ = [
    "AEAD_ID_CHACHA20POLY1305",
    "HYBRID_ENC_LEN",
    "HYBRID_PUBLIC_LEN",
    "KDF_ID_HKDF_SHA256",
    "KEM_ID_MLKEM768_X25519",
    "KEM_ID_X25519",
    "X25519_ENC_LEN",
    "CryptoFailure",
    "Ed25519Private",
    "Ed25519Public",
    "HybridPrivate",
    "HybridPublic",
    "MLKEM768Private",
    "PrivateKey",
    "PublicKey",
    "X25519Private",
    "X25519Public",
    "aead_open",
    "aead_seal",
    "ed25519_generate",
    "ed25519_private_from_raw",
    "ed25519_public",
    "ed25519_public_from_der",
    "ed25519_public_from_raw",
    "ed25519_public_raw",
    "ed25519_sign",
    "ed25519_verify",
    "hmac_sha256",
    "hpke_hybrid_open",
    "hpke_hybrid_seal",
    "hpke_x25519_open",
    "hpke_x25519_open_fast",
    "hpke_x25519_seal",
    "hpke_x25519_seal_fast",
    "hybrid_generate",
    "hybrid_private",
    "hybrid_public",
    "hybrid_public_from_raw",
    "hybrid_public_raw",
    "load_private_pem",
    "load_public_pem",
    "mlkem768_private_from_seed",
    "private_pem",
    "public_der",
    "public_pem",
    "sha256",
    "x25519_der_from_raw",
    "x25519_generate",
    "x25519_private_from_raw",
    "x25519_public",
    "x25519_public_from_raw",
    "x25519_public_raw",
    "x25519_raw_from_der",
]

KEM_ID_X25519: Final = 0x0020
KEM_ID_MLKEM768_X25519: Final = 0x647A
KDF_ID_HKDF_SHA256: Final = 0x0001
AEAD_ID_CHACHA20POLY1305: Final = 0x0003
X25519_ENC_LEN: Final = 32
HYBRID_ENC_LEN: Final = 1120  # ML-KEM-768 ciphertext (1088) || X25519 ephemeral (32)
HYBRID_PUBLIC_LEN: Final = 1216  # ML-KEM-768 public key (1184) || X25519 public (32)
_MLKEM768_PUBLIC_LEN: Final = 1184

Ed25519Private = Ed25519PrivateKey
Ed25519Public = Ed25519PublicKey
X25519Private = X25519PrivateKey
X25519Public = X25519PublicKey
HybridPrivate = hpke.MLKEM768X25519PrivateKey
MLKEM768Private = mlkem.MLKEM768PrivateKey
HybridPublic = hpke.MLKEM768X25519PublicKey

_X25519_SUITE: Final = hpke.Suite(
    hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
)
_HYBRID_SUITE: Final = hpke.Suite(
    hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
)


class CryptoFailure(KeysError):
    """A primitive refused its input (bad tag, bad key encoding, wrong key type).

    Deliberately carries no detail: the envelope maps it to a reason code; loading
    a key file lets it through as a ``KeysError`` ("unreadable private key").
    """


# --- hashes and MACs ---------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


# --- Ed25519 -----------------------------------------------------------------


_T = TypeVar("_T")


def _decoded(parse: Callable[[bytes], _T], data: bytes) -> _T:
    """``parse(data)``, any refusal of the encoding as one ``CryptoFailure``."""
    try:
        return parse(data)
    except ValueError as exc:
        raise CryptoFailure("bad key") from exc


def ed25519_generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def ed25519_public(key: Ed25519PrivateKey) -> Ed25519PublicKey:
    return key.public_key()


def ed25519_public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def ed25519_public_from_raw(data: bytes) -> Ed25519PublicKey:
    return _decoded(Ed25519PublicKey.from_public_bytes, data)


def ed25519_private_from_raw(data: bytes) -> Ed25519PrivateKey:
    return _decoded(Ed25519PrivateKey.from_private_bytes, data)


def ed25519_sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def ed25519_verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --- X25519 and the hybrid KEM keys ------------------------------------------


def x25519_generate() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def x25519_private_from_raw(data: bytes) -> X25519PrivateKey:
    return _decoded(X25519PrivateKey.from_private_bytes, data)


def x25519_public(key: X25519PrivateKey) -> X25519PublicKey:
    return key.public_key()


def x25519_public_raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def x25519_public_from_raw(data: bytes) -> X25519PublicKey:
    return _decoded(X25519PublicKey.from_public_bytes, data)


def mlkem768_private_from_seed(seed: bytes) -> mlkem.MLKEM768PrivateKey:
    """An ML-KEM-768 key from its 64-byte FIPS 203 seed ``d || z`` (test vectors)."""
    return mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)


def hybrid_generate() -> tuple[mlkem.MLKEM768PrivateKey, X25519PrivateKey]:
    return mlkem.MLKEM768PrivateKey.generate(), X25519PrivateKey.generate()


def hybrid_private(
    mlkem_key: mlkem.MLKEM768PrivateKey, x_key: X25519PrivateKey
) -> hpke.MLKEM768X25519PrivateKey:
    return hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key)


def hybrid_public(
    mlkem_key: mlkem.MLKEM768PrivateKey, x_key: X25519PrivateKey
) -> hpke.MLKEM768X25519PublicKey:
    return hpke.MLKEM768X25519PublicKey(mlkem_key.public_key(), x_key.public_key())


def hybrid_public_raw(mlkem_key: mlkem.MLKEM768PublicKey, x_key: X25519PublicKey) -> bytes:
    """The hybrid public key on the wire: ML-KEM-768 encapsulation key || X25519 public."""
    return mlkem_key.public_bytes_raw() + x_key.public_bytes_raw()


def hybrid_public_from_raw(data: bytes) -> hpke.MLKEM768X25519PublicKey:
    if len(data) != HYBRID_PUBLIC_LEN:
        raise CryptoFailure("bad key")
    try:
        m = mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_LEN])
        x = X25519PublicKey.from_public_bytes(data[_MLKEM768_PUBLIC_LEN:])
    except ValueError as exc:
        raise CryptoFailure("bad key") from exc
    return hpke.MLKEM768X25519PublicKey(m, x)


# --- PEM (PKCS#8 / SubjectPublicKeyInfo) --------------------------------------

PrivateKey = Ed25519PrivateKey | X25519PrivateKey | mlkem.MLKEM768PrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey | mlkem.MLKEM768PublicKey


def private_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_pem(data: bytes, passphrase: bytes | None) -> PrivateKey:
    """Load a PKCS#8 PEM private key of one of our three kinds.

    Raises ``CryptoFailure`` for a wrong or missing passphrase, a corrupt file or
    an unexpected key type (no detail, so a wrong passphrase leaks nothing).
    """
    try:
        key = serialization.load_pem_private_key(data, passphrase or None)
    except (ValueError, TypeError) as exc:
        raise CryptoFailure("unreadable private key") from exc
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey | mlkem.MLKEM768PrivateKey):
        raise CryptoFailure("unexpected key type")
    return key


def load_public_pem(data: bytes) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CryptoFailure("unreadable public key") from exc
    if not isinstance(key, Ed25519PublicKey | X25519PublicKey | mlkem.MLKEM768PublicKey):
        raise CryptoFailure("unexpected key type")
    return key


def public_der(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ed25519_public_from_der(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CryptoFailure("bad key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CryptoFailure("bad key")
    return key


def x25519_raw_from_der(data: bytes) -> bytes:
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise CryptoFailure("bad key") from exc
    if not isinstance(key, X25519PublicKey):
        raise CryptoFailure("bad key")
    return key.public_bytes_raw()


def x25519_der_from_raw(raw: bytes) -> bytes:
    return public_der(x25519_public_from_raw(raw))


# --- the payload AEAD ---------------------------------------------------------


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise CryptoFailure("decrypt failed") from exc


# --- HPKE: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305 ----------

_KEM_SUITE_ID: Final = b"KEM" + struct.pack(">H", KEM_ID_X25519)
_HPKE_SUITE_ID: Final = b"HPKE" + struct.pack(
    ">HHH", KEM_ID_X25519, KDF_ID_HKDF_SHA256, AEAD_ID_CHACHA20POLY1305
)
_MODE_BASE: Final = b"\x00"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract(salt, ikm) = HMAC-Hash(salt, ikm); an empty salt is HashLen zeros.
    return hmac.digest(salt or b"\x00" * 32, ikm, "sha256")


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    # HKDF-Expand for L <= HashLen is the first block: T(1) = HMAC(PRK, info || 0x01).
    if length > 32:  # pragma: no cover - every length used here is <= 32
        return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    return _expand(prk, labeled_info, length)


_PSK_ID_HASH: Final = _labeled_extract(_HPKE_SUITE_ID, b"", b"psk_id_hash", b"")


def _derive_x25519(ikm: bytes) -> X25519PrivateKey:
    """RFC 9180 §7.1.3 DeriveKeyPair for X25519."""
    dkp_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    return X25519PrivateKey.from_private_bytes(
        _labeled_expand(_KEM_SUITE_ID, dkp_prk, b"sk", b"", 32)
    )


def _kem_shared_secret(dh: bytes, enc: bytes, pk_r: bytes) -> bytes:
    eae_prk = _labeled_extract(_KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(_KEM_SUITE_ID, eae_prk, b"shared_secret", enc + pk_r, 32)


def _key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    psk_id_hash = _PSK_ID_HASH
    info_hash = _labeled_extract(_HPKE_SUITE_ID, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(_HPKE_SUITE_ID, shared_secret, b"secret", b"")
    key = _labeled_expand(_HPKE_SUITE_ID, secret, b"key", context, 32)
    base_nonce = _labeled_expand(_HPKE_SUITE_ID, secret, b"base_nonce", context, 12)
    return key, base_nonce


def hpke_x25519_seal(
    public_key: X25519PublicKey, plaintext: bytes, *, info: bytes, aad: bytes, ikm_e: bytes
) -> tuple[bytes, bytes]:
    """RFC 9180 SealBase with the ephemeral key derived from ``ikm_e`` -> ``(enc, ct)``."""
    sk_e = _derive_x25519(ikm_e)
    enc = sk_e.public_key().public_bytes_raw()
    pk_r = public_key.public_bytes_raw()
    try:
        dh = sk_e.exchange(public_key)
    except ValueError as exc:  # an all-zero shared secret: a low-order recipient key
        raise CryptoFailure("bad key") from exc
    key, nonce = _key_schedule(_kem_shared_secret(dh, enc, pk_r), info)
    return enc, aead_seal(key, nonce, plaintext, aad)


def hpke_x25519_seal_fast(
    public_key: X25519PublicKey, plaintext: bytes, *, info: bytes
) -> tuple[bytes, bytes]:
    """SealBase with empty aad through ``cryptography``'s ``hpke.Suite`` (its own
    ephemeral randomness) -> ``(enc, ct)``; same bytes format as :func:`hpke_x25519_seal`."""
    out = _X25519_SUITE.encrypt(plaintext, public_key, info=info)
    return out[:X25519_ENC_LEN], out[X25519_ENC_LEN:]


def hpke_x25519_open_fast(
    private_key: X25519PrivateKey, enc: bytes, ciphertext: bytes, *, info: bytes
) -> bytes:
    """OpenBase with empty aad through ``cryptography``'s ``hpke.Suite`` (Rust; the
    hot path of ``open``). Byte-compatible with :func:`hpke_x25519_open`."""
    if len(enc) != X25519_ENC_LEN:
        raise CryptoFailure("decrypt failed")
    try:
        return _X25519_SUITE.decrypt(enc + ciphertext, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise CryptoFailure("decrypt failed") from exc


def hpke_x25519_open(
    private_key: X25519PrivateKey, enc: bytes, ciphertext: bytes, *, info: bytes, aad: bytes
) -> bytes:
    """RFC 9180 OpenBase (any aad). Any failure is ``CryptoFailure``."""
    if len(enc) != X25519_ENC_LEN:
        raise CryptoFailure("decrypt failed")
    try:
        dh = private_key.exchange(X25519PublicKey.from_public_bytes(enc))
    except ValueError as exc:
        raise CryptoFailure("decrypt failed") from exc
    pk_r = private_key.public_key().public_bytes_raw()
    key, nonce = _key_schedule(_kem_shared_secret(dh, enc, pk_r), info)
    return aead_open(key, nonce, ciphertext, aad)


def hpke_hybrid_seal(
    public_key: hpke.MLKEM768X25519PublicKey, plaintext: bytes, *, info: bytes
) -> tuple[bytes, bytes]:
    """SealBase with MLKEM768-X25519 (``cryptography``'s suite; its own randomness)."""
    out = _HYBRID_SUITE.encrypt(plaintext, public_key, info=info)
    return out[:HYBRID_ENC_LEN], out[HYBRID_ENC_LEN:]


def hpke_hybrid_open(
    private_key: hpke.MLKEM768X25519PrivateKey, enc: bytes, ciphertext: bytes, *, info: bytes
) -> bytes:
    if len(enc) != HYBRID_ENC_LEN:
        raise CryptoFailure("decrypt failed")
    try:
        return _HYBRID_SUITE.decrypt(enc + ciphertext, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise CryptoFailure("decrypt failed") from exc
