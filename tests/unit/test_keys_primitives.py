"""The hand-built HPKE suite in ``keys._primitives`` against RFC 9180 and two others."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from keys import _primitives as P

# RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, Base.
A21 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "ikmE": "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b",
    "pkRm": "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
    "skRm": "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
    "enc": "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db"
    "21993c62ce81883d2dd1b51a28",
}
H = {k: bytes.fromhex(v) for k, v in A21.items()}
CRYPTOGRAPHY_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
PYHPKE_SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
)


def test_rfc9180_a21_seal_is_reproduced() -> None:
    """With the RFC's ephemeral seed, our SealBase gives the RFC's enc and ciphertext."""
    pk = P.x25519_public_from_raw(H["pkRm"])
    enc, ct = P.hpke_x25519_seal(pk, H["pt"], info=H["info"], aad=H["aad"], ikm_e=H["ikmE"])
    assert (enc, ct) == (H["enc"], H["ct"])


def test_rfc9180_a21_open() -> None:
    """Our OpenBase recovers the RFC's plaintext and refuses a changed aad."""
    sk = P.x25519_private_from_raw(H["skRm"])
    assert P.hpke_x25519_open(sk, H["enc"], H["ct"], info=H["info"], aad=H["aad"]) == H["pt"]
    with pytest.raises(P.CryptoFailure):
        P.hpke_x25519_open(sk, H["enc"], H["ct"], info=H["info"], aad=b"Count-1")


def test_cryptography_hpke_opens_ours_and_we_open_theirs() -> None:
    """Byte compatibility with cryptography's own hpke.Suite (single-shot, no aad)."""
    sk = X25519PrivateKey.generate()
    enc, ct = P.hpke_x25519_seal(
        sk.public_key(), b"k" * 32, info=b"i", aad=b"", ikm_e=os.urandom(32)
    )
    assert CRYPTOGRAPHY_SUITE.decrypt(enc + ct, sk, info=b"i") == b"k" * 32
    theirs = CRYPTOGRAPHY_SUITE.encrypt(b"x" * 32, sk.public_key(), info=b"j")
    assert P.hpke_x25519_open(sk, theirs[:32], theirs[32:], info=b"j", aad=b"") == b"x" * 32


def test_pyhpke_opens_ours() -> None:
    """Byte compatibility with pyhpke, an independent implementation."""
    sk = X25519PrivateKey.generate()
    enc, ct = P.hpke_x25519_seal(
        sk.public_key(), b"k" * 32, info=b"i", aad=b"", ikm_e=os.urandom(32)
    )
    ctx = PYHPKE_SUITE.create_recipient_context(
        enc, KEMKey.from_pyca_cryptography_key(sk), info=b"i"
    )
    assert ctx.open(ct) == b"k" * 32


def test_hybrid_round_trip_and_wrong_info() -> None:
    """ML-KEM-768+X25519 wraps and unwraps; another info fails."""
    m, x = P.hybrid_generate()
    enc, ct = P.hpke_hybrid_seal(P.hybrid_public(m, x), b"k" * 32, info=b"i")
    assert len(enc) == P.HYBRID_ENC_LEN
    sk = P.hybrid_private(m, x)
    assert P.hpke_hybrid_open(sk, enc, ct, info=b"i") == b"k" * 32
    with pytest.raises(P.CryptoFailure):
        P.hpke_hybrid_open(sk, enc, ct, info=b"other")


@pytest.mark.parametrize("enc", [b"", b"\x00" * 31, b"\x00" * 32])
def test_bad_encapsulations_fail_cleanly(enc: bytes) -> None:
    """Wrong-length or low-order ephemeral keys are a CryptoFailure, not a crash."""
    sk = X25519PrivateKey.generate()
    with pytest.raises(P.CryptoFailure):
        P.hpke_x25519_open(sk, enc, b"\x00" * 48, info=b"", aad=b"")
