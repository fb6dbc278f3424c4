"""An independent reading of ``schemas/ENVELOPE.md`` against the committed vectors.

Nothing from ``keys`` is imported: the framing is parsed with ``struct`` from
the spec, HPKE is pyhpke, Ed25519 and ChaCha20-Poly1305 are PyNaCl (libsodium),
HMAC is the standard library. If this file and ``keys`` ever disagree, the spec
or the implementation is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "vectors"
ENVELOPE_FILES = sorted(VECTORS.glob("envelope_referral_*.json"))
SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def lp16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def parse(env: bytes) -> dict[str, Any]:
    """The *Layout* section, literally."""
    assert env[:4] == b"CRBE"
    assert env[4] == 1
    pos = 5

    def take(n: int) -> bytes:
        nonlocal pos
        out = env[pos : pos + n]
        assert len(out) == n
        pos += n
        return out

    (h,) = struct.unpack(">I", take(4))
    header = take(h)
    (n,) = struct.unpack(">H", take(2))
    wrapped = []
    for _ in range(n):
        rid = take(struct.unpack(">H", take(2))[0]).decode()
        kid = take(struct.unpack(">H", take(2))[0]).decode()
        (kem,) = struct.unpack(">H", take(2))
        enc = take(struct.unpack(">H", take(2))[0])
        ct = take(struct.unpack(">H", take(2))[0])
        wrapped.append({"recipient": rid, "key_id": kid, "kem": kem, "enc": enc, "ct": ct})
    (c,) = struct.unpack(">I", take(4))
    ciphertext = take(c)
    signature = take(64)
    assert pos == len(env), "trailing bytes"
    return {
        "header": header,
        "wrapped": wrapped,
        "ciphertext": ciphertext,
        "signature": signature,
        "body": env[:-64],
    }


def _x25519_private(hex_scalar: str) -> Any:
    return KEMKey.from_pyca_cryptography_key(
        X25519PrivateKey.from_private_bytes(bytes.fromhex(hex_scalar))
    )


@pytest.mark.parametrize("path", ENVELOPE_FILES, ids=lambda p: p.stem)
def test_vector_opens_with_independent_implementations(path: Path) -> None:
    """Following only the spec, pyhpke + PyNaCl verify and decrypt each vector."""
    v = _load(path)
    env = bytes.fromhex(v["envelope_hex"])
    parts = parse(env)
    header = json.loads(parts["header"])
    mid = header["message_id"].encode()

    sender_pk = nacl.signing.VerifyKey(bytes.fromhex(v["sender"]["ed25519_public_hex"]))
    signed = b"crb/envelope/v1 signature\x00" + parts["body"]
    assert signed == sender_pk.verify(signed, parts["signature"])
    assert header["sender_key_id"] == v["sender"]["signing_key_id"]
    assert [w["recipient"] for w in parts["wrapped"]] == header["recipients"]

    for r in v["recipients"]:
        (w,) = [w for w in parts["wrapped"] if w["recipient"] == r["participant_id"]]
        assert w["kem"] == 0x0020
        info = (
            b"crb/envelope/v1 wrap\x00"
            + lp16(header["sender"].encode())
            + lp16(r["participant_id"].encode())
            + lp16(mid)
        )
        assert info.hex() == r["hpke_info_hex"]
        ctx = SUITE.create_recipient_context(
            w["enc"], _x25519_private(r["x25519_private_hex"]), info=info
        )
        k = ctx.open(w["ct"])
        commitment = hmac.new(k, b"crb/envelope/v1 commitment\x00" + lp16(mid), hashlib.sha256)
        assert hmac.compare_digest(commitment.hexdigest(), header["key_commitment"])
        payload_key = hmac.new(k, b"crb/envelope/v1 payload key\x00", hashlib.sha256).digest()
        aad = (
            b"crb/envelope/v1 payload\x00"
            + lp16(header["sender"].encode())
            + lp16(mid)
            + struct.pack(">I", len(parts["header"]))
            + parts["header"]
        )
        payload = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            parts["ciphertext"], aad, bytes(12), payload_key
        )
        assert v["payload_utf8"].encode() == payload


@pytest.mark.parametrize("path", ENVELOPE_FILES, ids=lambda p: p.stem)
def test_vector_reproduced_byte_for_byte_from_the_spec(path: Path) -> None:
    """Sealing per the spec with the vector's keys and randomness gives its exact bytes."""
    v = _load(path)
    parts = parse(bytes.fromhex(v["envelope_hex"]))
    header_bytes = parts["header"]
    header = json.loads(header_bytes)
    sender, mid = header["sender"].encode(), header["message_id"].encode()
    k = bytes.fromhex(v["rng"]["content_key_hex"])
    commitment = hmac.new(k, b"crb/envelope/v1 commitment\x00" + lp16(mid), hashlib.sha256)
    assert commitment.hexdigest() == header["key_commitment"]

    body = b"CRBE\x01" + struct.pack(">I", len(header_bytes)) + header_bytes
    body += struct.pack(">H", len(v["recipients"]))
    for r in v["recipients"]:
        rid = r["participant_id"].encode()
        info = b"crb/envelope/v1 wrap\x00" + lp16(sender) + lp16(rid) + lp16(mid)
        eks = SUITE.kem.derive_key_pair(bytes.fromhex(r["ikm_e_hex"]))
        pk_r = KEMKey.from_pyca_cryptography_key(
            X25519PublicKey.from_public_bytes(bytes.fromhex(r["x25519_public_hex"]))
        )
        enc, ctx = SUITE.create_sender_context(pk_r, info=info, eks=eks)
        ct = ctx.seal(k)
        body += lp16(rid) + lp16(r["key_id"].encode()) + struct.pack(">H", 0x0020)
        body += lp16(enc) + lp16(ct)
    payload_key = hmac.new(k, b"crb/envelope/v1 payload key\x00", hashlib.sha256).digest()
    aad = (
        b"crb/envelope/v1 payload\x00"
        + lp16(sender)
        + lp16(mid)
        + struct.pack(">I", len(header_bytes))
        + header_bytes
    )
    ciphertext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        v["payload_utf8"].encode(), aad, bytes(12), payload_key
    )
    body += struct.pack(">I", len(ciphertext)) + ciphertext
    signing = nacl.signing.SigningKey(bytes.fromhex(v["sender"]["ed25519_seed_hex"]))
    signature = signing.sign(b"crb/envelope/v1 signature\x00" + body).signature
    assert v["envelope_hex"] == (body + signature).hex()


def test_directory_vector_signature_verifies_with_pynacl() -> None:
    """The vector directory's root signature covers the canonical JSON as the spec says."""
    d = _load(VECTORS / "directory.json")
    signed = d["signed_directory"]
    canonical = json.dumps(
        signed["directory"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    root = nacl.signing.VerifyKey(bytes.fromhex(d["root_ed25519_public_hex"]))
    prefix = bytes.fromhex(d["signed_message_prefix_hex"])
    assert d["signed_message_prefix_utf8"].encode() == prefix, "a real NUL, not the text \\u0000"
    assert prefix.endswith(b"\x00")
    message = prefix + canonical
    sig = base64.b64decode(signed["signature"])
    assert message == root.verify(message, sig)


def test_rejection_vectors_are_all_distinct_from_the_base() -> None:
    """Each rejection vector names a reason and (except time/recipient cases) other bytes."""
    rej = _load(VECTORS / "envelope_rejections.json")
    base = _load(VECTORS / f"envelope_{rej['base']}.json")["envelope_hex"]
    reasons = {c["expected_reason"] for c in rej["cases"]}
    assert {"bad_signature", "malformed", "stale", "future_dated", "not_a_recipient"} <= reasons
    same = [c for c in rej["cases"] if c["envelope_hex"] == base]
    assert {c["expected_reason"] for c in same} == {"stale", "future_dated", "not_a_recipient"}
