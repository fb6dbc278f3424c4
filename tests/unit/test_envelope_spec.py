"""An independent implementation of ``schemas/ENVELOPE.md``, run on every committed vector.

Nothing from ``keys``, ``schemas``, ``adapters`` or ``broker`` is imported. The
framing is parsed with ``struct`` as *Layout* says; the header and payloads are
validated with ``jsonschema`` against the committed JSON Schemas plus the rules
ENVELOPE.md lists; Ed25519, X25519 and ChaCha20-Poly1305 are PyNaCl (libsodium);
HPKE with X25519 is pyhpke; the hybrid KEM (MLKEM768-X25519, X-Wing) is built here
from kyber-py's ML-KEM-768, libsodium's X25519 and SHA3-256, with the RFC 9180 key
schedule written here; HMAC is the standard library. The check order and reason
codes are the spec's. If this file and ``keys`` ever disagree, the spec or the
implementation is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import nacl.bindings
import nacl.exceptions
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from kyber_py.ml_kem import ML_KEM_768  # type: ignore[import-untyped]
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "schemas" / "vectors"
SCHEMAS = ROOT / "schemas" / "json"
ENVELOPE_FILES = sorted(
    p for p in VECTORS.glob("envelope_*.json") if p.name != "envelope_rejections.json"
)
SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)
X25519_KEM, HYBRID_KEM = 0x0020, 0x647A
ENC_LEN = {X25519_KEM: 32, HYBRID_KEM: 1120}
KEM_OF_ALGORITHM = {"x25519": X25519_KEM, "mlkem768-x25519": HYBRID_KEM}
MIN_LEN = 5 + 4 + 2 + 4 + 64
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REPLIES = {"receipt", "case_ack"}
PAYLOAD_SCHEMA = {"referral": "referral", "receipt": "receipt", "case_ack": "case_ack"}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


def _schema(name: str) -> jsonschema.protocols.Validator:
    schema = _load(SCHEMAS / f"{name}.schema.json")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


DIRECTORY_VECTOR = _load(VECTORS / "directory.json")
DIRECTORY = DIRECTORY_VECTOR["signed_directory"]["directory"]
PRIVATE = DIRECTORY_VECTOR["private_keys"]
HEADER_SCHEMA = _schema("envelope_header")
HEADER_FIELDS = set(_load(SCHEMAS / "envelope_header.schema.json")["properties"])
"""Every field is present in a canonical header (``null`` when absent)."""
PAYLOAD_SCHEMAS = {t: _schema(n) for t, n in PAYLOAD_SCHEMA.items()}


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def lp16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def canonical(value: Any) -> bytes:
    """RFC 8785 for the value types our documents have (strings, integers < 2^53,
    booleans, null, arrays, objects with ASCII keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- parsing (ENVELOPE.md: Layout, and steps 1-3 of Verifying) ------------------------


@dataclass
class Envelope:
    header_bytes: bytes
    header: dict[str, Any]
    wrapped: list[dict[str, Any]]
    ciphertext: bytes
    signature: bytes
    body: bytes


def parse(env: bytes, max_size: int) -> Envelope:
    if len(env) > max_size:
        raise Refused("too_large")
    if len(env) < MIN_LEN or env[:4] != b"CRBE":
        raise Refused("malformed")
    if env[4] != 1:
        raise Refused("unsupported_version")
    end = len(env) - 64
    pos = 5

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > end:
            raise Refused("malformed")
        out = env[pos : pos + n]
        pos += n
        return out

    header_bytes = take(struct.unpack(">I", take(4))[0])
    wrapped = []
    for _ in range(struct.unpack(">H", take(2))[0]):
        rid = take(struct.unpack(">H", take(2))[0])
        kid = take(struct.unpack(">H", take(2))[0])
        (kem,) = struct.unpack(">H", take(2))
        enc = take(struct.unpack(">H", take(2))[0])
        ct = take(struct.unpack(">H", take(2))[0])
        if kem not in ENC_LEN:
            raise Refused("unsupported_version")
        if len(enc) != ENC_LEN[kem] or len(ct) != 48:
            raise Refused("malformed")
        try:
            wrapped.append(
                {"recipient": rid.decode("ascii"), "key_id": kid.decode("ascii"), "kem": kem,
                 "enc": enc, "ct": ct}
            )  # fmt: skip
        except UnicodeDecodeError as exc:
            raise Refused("malformed") from exc
    ciphertext = take(struct.unpack(">I", take(4))[0])
    if pos != end:
        raise Refused("malformed")
    header = parse_header(header_bytes)
    if [w["recipient"] for w in wrapped] != header["recipients"]:
        raise Refused("malformed")
    return Envelope(header_bytes, header, wrapped, ciphertext, env[end:], env[:end])


def parse_header(data: bytes) -> dict[str, Any]:
    """Header validity (ENVELOPE.md, *Header*), in the spec's precedence."""
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused("malformed") from exc
    if not isinstance(header, dict):
        raise Refused("malformed")
    if "schema_version" in header and not (
        type(header["schema_version"]) is int and header["schema_version"] == 1
    ):
        raise Refused("unsupported_version")
    if not HEADER_SCHEMA.is_valid(header) or not _header_rules(header):
        raise Refused("malformed")
    if set(header) != HEADER_FIELDS or canonical(header) != data or not _canonical_values(header):
        raise Refused("malformed")
    return header


def _header_rules(h: dict[str, Any]) -> bool:
    """The rules ENVELOPE.md lists beyond the JSON Schema."""
    recipients = h["recipients"]
    if len(set(recipients)) != len(recipients) or h["sender"] in recipients:
        return False
    if h["message_type"] in REPLIES:
        if h.get("in_reply_to") is None or len(recipients) != 1:
            return False
        if h["in_reply_to"] == h["message_id"]:
            return False
    elif h.get("in_reply_to") is not None:
        return False
    if (h.get("decision") is not None) != (h["message_type"] == "case_ack"):
        return False
    if h.get("escalation_of") is not None and (
        h["message_type"] != "referral" or h["escalation_of"] == h["message_id"]
    ):
        return False
    d = h.get("deconfliction")
    if d is not None and (h["message_type"] != "referral" or d["tags"] != sorted(set(d["tags"]))):
        return False
    return bool(INSTANT.match(h["created_at"]))


def _canonical_values(h: dict[str, Any]) -> bool:
    ids = [h["message_id"], h["case_id"]]
    ids += [h[k] for k in ("in_reply_to", "escalation_of") if h[k] is not None]
    return all(UUID_TEXT.match(i) for i in ids) and h["recipients"] == sorted(h["recipients"])


# --- the directory -----------------------------------------------------------------------


def participant(pid: str) -> dict[str, Any] | None:
    return next((p for p in DIRECTORY["participants"] if p["participant_id"] == pid), None)


def key_record(p: dict[str, Any], key_id: str) -> dict[str, Any] | None:
    return next((k for k in p["keys"] if k["key_id"] == key_id), None)


def revoked(record: dict[str, Any], at: datetime) -> bool:
    return record.get("revoked_at") is not None and when(record["revoked_at"]) <= at


def raw_public(record: dict[str, Any]) -> bytes:
    data = base64.b64decode(record["public_key"])
    return data[-32:] if record["encoding"] == "spki-der" else data


# --- Verifying (steps 4-8) and Opening (9-14) --------------------------------------------


def verify(v: dict[str, Any], env_bytes: bytes, now: datetime, *, admission: bool) -> Envelope:
    """Section 8; ``admission``: as the router (the sender must be active), not as a
    recipient opening mail the router admitted (section 9)."""
    limits = {"max_size": 1 << 20, "max_age_seconds": 86400, "max_skew_seconds": 300}
    env = parse(env_bytes, v.get("max_size", limits["max_size"]))
    h = env.header
    sender = participant(h["sender"])
    if sender is None:
        raise Refused("unknown_sender")
    if admission and sender["status"] != "active":
        raise Refused("sender_suspended")
    if v.get("outbox_owner") not in (None, h["sender"]):
        raise Refused("wrong_outbox")
    record = key_record(sender, h["sender_key_id"])
    if record is None or record["kind"] != "signing":
        raise Refused("unknown_key")
    if revoked(record, now):
        raise Refused("key_revoked")
    created = instant(h["created_at"])
    nb, na = when(record["not_before"]), when(record["not_after"])
    if not (nb <= now < na) or created < nb:
        raise Refused("key_expired")
    try:
        nacl.signing.VerifyKey(raw_public(record)).verify(
            b"crb/envelope/v1 signature\x00" + env.body, env.signature
        )
    except nacl.exceptions.BadSignatureError as exc:
        raise Refused("bad_signature") from exc
    if created > now + timedelta(seconds=limits["max_skew_seconds"]):
        raise Refused("future_dated")
    if created < now - timedelta(seconds=limits["max_age_seconds"]):
        raise Refused("stale")
    for w in env.wrapped:
        p = participant(w["recipient"])
        if p is None:
            continue
        rec = key_record(p, w["key_id"])
        if rec is None or rec["kind"] != "encryption":
            raise Refused("unknown_key")
        if revoked(rec, now):
            raise Refused("key_revoked")
        if revoked(rec, created) or not (
            when(rec["not_before"]) <= created < when(rec["not_after"])
        ):
            raise Refused("key_expired")
        if KEM_OF_ALGORITHM[rec["algorithm"]] != w["kem"]:
            raise Refused("malformed")
    return env


def open_as(v: dict[str, Any], env_bytes: bytes, recipient: str, now: datetime) -> bytes:
    env = verify(v, env_bytes, now, admission=False)
    h = env.header
    wrapped = next((w for w in env.wrapped if w["recipient"] == recipient), None)
    if wrapped is None:
        raise Refused("not_a_recipient")
    private = PRIVATE.get(wrapped["key_id"])
    if private is None or private["owner"] != recipient or private.get("kem_id") != wrapped["kem"]:
        raise Refused("unknown_key")
    mid = h["message_id"].encode()
    info = b"crb/envelope/v1 wrap\x00" + lp16(h["sender"].encode()) + lp16(recipient.encode())
    info += lp16(mid)
    k = unwrap(wrapped, private, info)
    commitment = hmac.new(k, b"crb/envelope/v1 commitment\x00" + lp16(mid), hashlib.sha256)
    if not hmac.compare_digest(commitment.hexdigest(), h["key_commitment"]):
        raise Refused("key_commitment_mismatch")
    payload_key = hmac.new(k, b"crb/envelope/v1 payload key\x00", hashlib.sha256).digest()
    aad = b"crb/envelope/v1 payload\x00" + lp16(h["sender"].encode()) + lp16(mid)
    aad += struct.pack(">I", len(env.header_bytes)) + env.header_bytes
    try:
        payload: bytes = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
            env.ciphertext, aad, bytes(12), payload_key
        )
    except nacl.exceptions.CryptoError as exc:
        raise Refused("decrypt_failed") from exc
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise Refused("schema_invalid") from exc
    if not PAYLOAD_SCHEMAS[h["message_type"]].is_valid(document):
        raise Refused("schema_invalid")
    if _mismatch(h, document):
        raise Refused("payload_mismatch")
    return payload


def _mismatch(h: dict[str, Any], d: dict[str, Any]) -> bool:
    if h["message_type"] == "referral":
        priority = d.get("urgency", {}).get("priority", "routine")
        return (d["incident"]["type"], priority, d["handling"]["code"]) != (
            h["category"],
            h["priority"],
            h["handling_code"],
        )
    if (d["original_message_id"], d["case_id"]) != (h["in_reply_to"], h["case_id"]):
        return True
    return bool(h["message_type"] == "case_ack" and d["decision"]["kind"] != h["decision"])


# --- HPKE: X25519 through pyhpke, the hybrid written from its specification ---------------

XWING_LABEL = b"\\.//^\\"


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    labeled = struct.pack(">H", n) + b"HPKE-v1" + suite + label + info
    out, block, i = b"", b"", 1
    while len(out) < n:
        block = hmac.new(prk, block + labeled + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:n]


def key_schedule(shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 5.1, mode_base, for KEM 0x647a with HKDF-SHA256 and ChaCha20-Poly1305."""
    suite = b"HPKE" + struct.pack(">HHH", HYBRID_KEM, 0x0001, 0x0003)
    context = b"\x00" + _labeled_extract(suite, b"", b"psk_id_hash", b"")
    context += _labeled_extract(suite, b"", b"info_hash", info)
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    return (
        _labeled_expand(suite, secret, b"key", context, 32),
        _labeled_expand(suite, secret, b"base_nonce", context, 12),
    )


def _x25519(scalar: bytes, point: bytes) -> bytes:
    out: bytes = nacl.bindings.crypto_scalarmult(scalar, point)
    return out


def xwing_decaps(mlkem_seed: bytes, x25519_private: bytes, enc: bytes) -> bytes:
    _, dk = ML_KEM_768.key_derive(mlkem_seed)
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = ML_KEM_768.decaps(dk, ct_m)
    pk_x = nacl.bindings.crypto_scalarmult_base(x25519_private)
    ss_x = _x25519(x25519_private, ct_x)
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def xwing_encaps_derand(public: bytes, eseed: bytes) -> tuple[bytes, bytes]:
    pk_m, pk_x = public[:1184], public[1184:]
    ss_m, ct_m = ML_KEM_768._encaps_internal(pk_m, eseed[:32])
    ct_x = nacl.bindings.crypto_scalarmult_base(eseed[32:])
    ss_x = _x25519(eseed[32:], pk_x)
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest(), ct_m + ct_x


def unwrap(w: dict[str, Any], private: dict[str, Any], info: bytes) -> bytes:
    x_private = bytes.fromhex(private["x25519_private_hex"])
    try:
        if w["kem"] == X25519_KEM:
            key = KEMKey.from_pyca_cryptography_key(X25519PrivateKey.from_private_bytes(x_private))
            k: bytes = SUITE.create_recipient_context(w["enc"], key, info=info).open(w["ct"])
        else:
            ss = xwing_decaps(bytes.fromhex(private["mlkem768_seed_hex"]), x_private, w["enc"])
            key_, nonce = key_schedule(ss, info)
            k = nacl.bindings.crypto_aead_chacha20poly1305_ietf_decrypt(w["ct"], b"", nonce, key_)
    except Exception as exc:
        raise Refused("decrypt_failed") from exc
    if len(k) != 32:
        raise Refused("decrypt_failed")
    return k


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENVELOPE_FILES, ids=lambda p: p.stem)
def test_vector_opens_with_independent_implementations(path: Path) -> None:
    """Every recipient of every vector opens it, following only the spec."""
    v = _load(path)
    env = bytes.fromhex(v["envelope_hex"])
    now = when(v["now"])
    verify(v, env, now, admission=True)
    for r in v["recipients"]:
        assert open_as(v, env, r["participant_id"], now) == v["payload_utf8"].encode()
    header = parse(env, 1 << 20).header
    assert header["message_type"] == v["message_type"]
    assert header["sender_key_id"] == v["sender"]["signing_key_id"]


def test_vectors_cover_every_message_type_and_kem() -> None:
    files = [_load(p) for p in ENVELOPE_FILES]
    assert {v["message_type"] for v in files} == {"referral", "receipt", "case_ack"}
    assert {r["kem_id"] for v in files for r in v["recipients"]} == {X25519_KEM, HYBRID_KEM}
    nl = participant("nl.hotline")
    assert nl is not None
    assert len([k for k in nl["keys"] if k["kind"] == "encryption"]) == 2  # a rotation


def test_the_newest_valid_key_is_the_one_sealed_to() -> None:
    """Sealing picks, per recipient, the encryption key valid at now with the latest
    not_before: the first key before the rotation, the second after it."""
    for name in ("referral_before_rotation", "referral_one_recipient"):
        v = _load(VECTORS / f"envelope_{name}.json")
        now = when(v["now"])
        p = participant("nl.hotline")
        assert p is not None
        valid = [
            k for k in p["keys"]
            if k["kind"] == "encryption" and not revoked(k, now)
            and when(k["not_before"]) <= now < when(k["not_after"])
        ]  # fmt: skip
        newest = max(valid, key=lambda k: (k["not_before"], k["key_id"]))
        (r,) = v["recipients"]
        assert r["key_id"] == newest["key_id"]


@pytest.mark.parametrize("path", ENVELOPE_FILES, ids=lambda p: p.stem)
def test_vector_reproduced_byte_for_byte_from_the_spec(path: Path) -> None:
    """Sealing per the spec with the vector's keys and randomness gives its exact bytes."""
    v = _load(path)
    header_bytes = parse(bytes.fromhex(v["envelope_hex"]), 1 << 20).header_bytes
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
        public = bytes.fromhex(PRIVATE[r["key_id"]]["public_hex"])
        if r["kem_id"] == X25519_KEM:
            eks = SUITE.kem.derive_key_pair(bytes.fromhex(r["ikm_e_hex"]))
            pk_r = KEMKey.from_pyca_cryptography_key(X25519PublicKey.from_public_bytes(public))
            enc, ctx = SUITE.create_sender_context(pk_r, info=info, eks=eks)
            ct = ctx.seal(k)
        else:
            ss, enc = xwing_encaps_derand(public, bytes.fromhex(r["eseed_hex"]))
            key, nonce = key_schedule(ss, info)
            ct = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(k, b"", nonce, key)
        body += lp16(rid) + lp16(r["key_id"].encode()) + struct.pack(">H", r["kem_id"])
        body += lp16(enc) + lp16(ct)
    payload_key = hmac.new(k, b"crb/envelope/v1 payload key\x00", hashlib.sha256).digest()
    aad = b"crb/envelope/v1 payload\x00" + lp16(sender) + lp16(mid)
    aad += struct.pack(">I", len(header_bytes)) + header_bytes
    ciphertext = nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
        v["payload_utf8"].encode(), aad, bytes(12), payload_key
    )
    body += struct.pack(">I", len(ciphertext)) + ciphertext
    signer = nacl.signing.SigningKey(
        bytes.fromhex(PRIVATE[v["sender"]["signing_key_id"]]["ed25519_seed_hex"])
    )
    signature = signer.sign(b"crb/envelope/v1 signature\x00" + body).signature
    assert v["envelope_hex"] == (body + signature).hex()


REJECTIONS = _load(VECTORS / "envelope_rejections.json")["cases"]


@pytest.mark.parametrize("case", REJECTIONS, ids=lambda c: c["expected_reason"])
def test_rejection_vectors_give_their_reason(case: dict[str, Any]) -> None:
    """Each rejection vector is refused, with its reason, by this implementation."""
    env = bytes.fromhex(case["envelope_hex"])
    now = when(case["now"])

    def route_then_open() -> None:
        verify(case, env, now, admission=True)
        open_as(case, env, case["recipient"], now)

    with pytest.raises(Refused) as refused:
        route_then_open()
    assert refused.value.reason == case["expected_reason"], case["description"]


def test_every_envelope_reason_code_has_a_rejection_vector() -> None:
    codes = {
        "too_large", "malformed", "unsupported_version", "unknown_sender",
        "sender_suspended", "wrong_outbox", "unknown_key", "key_revoked", "key_expired",
        "bad_signature", "stale", "future_dated", "not_a_recipient", "decrypt_failed",
        "key_commitment_mismatch", "schema_invalid", "payload_mismatch",
    }  # fmt: skip
    assert {c["expected_reason"] for c in REJECTIONS} == codes


def test_directory_vector_signature_verifies_with_pynacl() -> None:
    """The vector directory's root signature covers the canonical JSON as the spec says."""
    signed = DIRECTORY_VECTOR["signed_directory"]
    root = nacl.signing.VerifyKey(bytes.fromhex(DIRECTORY_VECTOR["root_ed25519_public_hex"]))
    prefix = bytes.fromhex(DIRECTORY_VECTOR["signed_message_prefix_hex"])
    assert DIRECTORY_VECTOR["signed_message_prefix_utf8"].encode() == prefix
    assert prefix == b"crb/directory/v1\x00"
    message = prefix + canonical(signed["directory"])
    assert message == root.verify(message, base64.b64decode(signed["signature"]))


def test_deconfliction_vector_from_the_spec() -> None:
    """Tags: HMAC-SHA256(key, label || kind || 0x00 || value)[:16]; URL normal forms
    follow the listed rules (the vector's spellings of one URL share a tag)."""
    d = _load(VECTORS / "deconfliction.json")
    key, label = bytes.fromhex(d["key_hex"]), bytes.fromhex(d["label_hex"])
    assert label == b"crb/deconfliction/v1\x00"

    def tag(kind: str, value: str) -> str:
        mac = hmac.new(key, label + kind.encode() + b"\x00" + value.encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    for u in d["urls"]:
        assert tag("url", u["normalised"]) == u["tag_hex"]
    for h in d["hashes"]:
        assert tag(h["algorithm"], h["value"]) == h["tag_hex"]
    first, *others = d["urls"]
    assert [u["tag_hex"] == first["tag_hex"] for u in others] == [True, True, False, False]
