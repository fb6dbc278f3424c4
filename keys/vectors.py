"""Generate the committed envelope test vectors: ``python -m keys.vectors [--check]``.

Writes ``schemas/vectors/*.json`` (see ``schemas/ENVELOPE.md``). Everything is
deterministic: keys come from fixed seeds, time is fixed, and randomness is a
SHA-256 counter stream, so a second run writes identical bytes (``--check``
fails if the committed files differ). The private keys in these files are
test-only, published on purpose, hex-encoded, and must never be used elsewhere.

The hybrid KEM (ML-KEM-768+X25519) is sealed with a derandomised encapsulation
written here from the spec (ML-KEM from ``kyber-py``, a dev dependency, imported
only when vectors are built), and every vector is opened again with the
production code (``cryptography``'s HPKE) before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from keys import _envelope as E
from keys import _primitives as P
from keys._deconfliction import DeconflictionKey
from keys._directory import record_for, sign_directory
from keys._errors import EnvelopeError
from keys._keys import Kem, OpeningKey, SealingKey, SigningKey
from keys.testing import Federation, MemberSpec
from schemas import (
    TAG_LABEL,
    Accepted,
    CaseAck,
    Category,
    DecisionKind,
    Directory,
    HandlingCode,
    MessageType,
    ParticipantStatus,
    Priority,
    Receipt,
    Referral,
    Role,
    canonical_json,
    normalise_url,
)

__all__ = ["VECTORS_DIR", "build", "hpke_key_schedule", "main", "xwing_encaps_derand"]

VECTORS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
NOW = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)
BEFORE_ROTATION = datetime(2026, 10, 15, 9, 0, 0, tzinfo=UTC)
"""Before nl.hotline's second encryption key became valid (2026-11-01)."""
YEAR = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
ROTATED = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 11, 1, tzinfo=UTC))
REVOKED_AT = datetime(2026, 6, 1, tzinfo=UTC)
LIMITS = {"max_size": 1 << 20, "max_age_seconds": 86400, "max_skew_seconds": 300}
CASE = UUID("019ab1d2-3c40-7000-8000-000000000001")


class CounterRng:
    """Deterministic "randomness": SHA-256(seed || u32 counter) blocks, recorded."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._buffer = b""
        self.drawn: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += P.sha256(self._seed + struct.pack(">I", self._counter))
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.drawn.append(out)
        return out


def _seed(label: str, n: int = 32) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += P.sha256(b"crb test vector key: " + label.encode() + bytes([counter]) * counter)
        counter += 1
    return out[:n]


# --- the derandomised hybrid encapsulation (vectors only) ----------------------------

XWING_LABEL = b"\\.//^\\"
"""X-Wing's combiner label, the six bytes 5c 2e 2f 2f 5e 5c."""
MLKEM768_PUBLIC_LEN = 1184


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return P.hmac_sha256(salt or bytes(32), b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    labeled = struct.pack(">H", n) + b"HPKE-v1" + suite + label + info
    out, block, i = b"", b"", 1
    while len(out) < n:
        block = P.hmac_sha256(prk, block + labeled + bytes([i]))
        out += block
        i += 1
    return out[:n]


def hpke_key_schedule(kem_id: int, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 section 5.1, mode_base, HKDF-SHA256 / ChaCha20-Poly1305: (key, base_nonce)."""
    suite = b"HPKE" + struct.pack(">HHH", kem_id, 0x0001, 0x0003)
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    return (
        _labeled_expand(suite, secret, b"key", context, 32),
        _labeled_expand(suite, secret, b"base_nonce", context, 12),
    )


def xwing_encaps_derand(public: bytes, eseed: bytes) -> tuple[bytes, bytes]:
    """MLKEM768-X25519 (X-Wing) EncapsulateDerand: (shared secret, enc).
    ``eseed`` = 32 bytes ML-KEM randomness ``m`` || 32 bytes X25519 ephemeral key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from kyber_py.ml_kem import ML_KEM_768  # type: ignore[import-untyped]

    pk_m, pk_x = public[:MLKEM768_PUBLIC_LEN], public[MLKEM768_PUBLIC_LEN:]
    ss_m, ct_m = ML_KEM_768._encaps_internal(pk_m, eseed[:32])
    ek_x = X25519PrivateKey.from_private_bytes(eseed[32:])
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = ek_x.exchange(X25519PublicKey.from_public_bytes(pk_x))
    ss = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()
    return ss, ct_m + ct_x


def _hybrid_wrap(
    key: SealingKey, content_key: bytes, info: bytes, eseed: bytes
) -> tuple[bytes, bytes]:
    ss, enc = xwing_encaps_derand(key.public_raw(), eseed)
    k, nonce = hpke_key_schedule(P.KEM_ID_MLKEM768_X25519, ss, info)
    return enc, P.aead_seal(k, nonce, content_key, b"")


# --- the federation ---------------------------------------------------------------------

_MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,), kem=Kem.MLKEM768_X25519),
    MemberSpec("be.hotline", "BE", (Role.HOTLINE,), status=ParticipantStatus.SUSPENDED),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)
"""nl.police encrypts with the post-quantum hybrid; be.hotline is suspended."""


def _opening_from(label: str, kem: Kem) -> OpeningKey:
    x = P.x25519_private_from_raw(_seed(label))
    if kem is Kem.X25519:
        return OpeningKey(x)
    return OpeningKey(x, P.mlkem768_private_from_seed(_seed(label + "/mlkem768", 64)))


def _seeded_keys(spec: MemberSpec) -> tuple[SigningKey, OpeningKey]:
    pid = spec.participant_id
    return SigningKey.from_seed(_seed(pid + "/signing")), _opening_from(
        pid + "/encryption", spec.kem
    )


@dataclass
class Keyring:
    """Every private key of the vectors, by key id, with its published material."""

    signing: dict[str, SigningKey] = field(default_factory=dict)
    opening: dict[str, OpeningKey] = field(default_factory=dict)
    material: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_signing(self, owner: str, label: str) -> SigningKey:
        key = SigningKey.from_seed(_seed(label))
        self.signing[key.key_id] = key
        self.material[key.key_id] = {
            "owner": owner,
            "kind": "signing",
            "ed25519_seed_hex": _seed(label).hex(),
            "ed25519_public_hex": key.verify_key.public_raw().hex(),
        }
        return key

    def add_opening(self, owner: str, label: str, kem: Kem) -> OpeningKey:
        key = _opening_from(label, kem)
        self.opening[key.key_id] = key
        entry: dict[str, Any] = {
            "owner": owner,
            "kind": "encryption",
            "kem_id": kem.hpke_id,
            "x25519_private_hex": _seed(label).hex(),
            "public_hex": key.sealing_key.public_raw().hex(),
        }
        if kem is Kem.MLKEM768_X25519:
            entry["mlkem768_seed_hex"] = _seed(label + "/mlkem768", 64).hex()
        self.material[key.key_id] = entry
        return key


def _federation() -> tuple[SigningKey, Directory, Keyring]:
    """The vectors' directory: one member per case the vectors need (see _MEMBERS),
    de.hotline with a second signing key revoked on 2026-06-01 and nl.hotline with a
    second encryption key valid from 2026-11-01 (a rotation in progress)."""
    fed = Federation(
        _MEMBERS,
        not_before=YEAR[0],
        not_after=YEAR[1],
        issued_at=datetime(2026, 11, 1, tzinfo=UTC),
        federation_id="vectors",
        keys=_seeded_keys,
        root=SigningKey.from_seed(_seed("root")),
        services=(),  # the vectors are about envelopes; no random service keys
        deconfliction=None,
    )
    ring = Keyring()
    for spec in _MEMBERS:
        pid = spec.participant_id
        ring.add_signing(pid, pid + "/signing")
        ring.add_opening(pid, pid + "/encryption", spec.kem)
    old_signing = ring.add_signing("de.hotline", "de.hotline/signing-revoked")
    new_encryption = ring.add_opening("nl.hotline", "nl.hotline/encryption-2", Kem.X25519)
    extra = {
        "de.hotline": record_for(
            old_signing.verify_key, not_before=YEAR[0], not_after=YEAR[1]
        ).model_copy(update={"revoked_at": REVOKED_AT}),
        "nl.hotline": record_for(
            new_encryption.sealing_key, not_before=ROTATED[0], not_after=ROTATED[1]
        ),
    }
    base = fed.directory()
    participants = tuple(
        p.model_copy(update={"keys": (*p.keys, extra[p.participant_id])})
        if p.participant_id in extra
        else p
        for p in base.participants
    )
    directory = Directory.model_validate(
        {**base.model_dump(), "participants": [p.model_dump() for p in participants]}
    )
    return fed.root, directory, ring


def _referral(priority: Priority = Priority.ROUTINE) -> Referral:
    return Referral.model_validate(
        {
            "reporter": {"reference": "DE-2026-000123", "analyst": "analyst-7"},
            "incident": {
                "type": "csam",
                "summary": "Public report of a URL hosted in NL (test vector; no real case).",
            },
            "urgency": {"priority": priority.value},
            "urls": [
                {
                    "url": "https://files.example.nl/a/b/c.html",
                    "site_type": "file_host",
                    "hosting": {"country": "NL", "ip": "192.0.2.10", "asn": 64500},
                }
            ],
            "handling": {
                "code": "H0",
                "source_reliability": "B",
                "information_accuracy": "2",
                "tlp": "AMBER",
            },
            "delete_after": date(2027, 11, 23).isoformat(),
        }
    )


def _hex_fields(envelope: bytes) -> dict[str, Any]:
    header_bytes, wrapped, ciphertext, signature = E._split(envelope)
    return {
        "header_utf8": header_bytes.decode("utf-8"),
        "wrapped_keys": [
            {
                "recipient": w.recipient,
                "key_id": w.key_id,
                "kem_id": w.kem.hpke_id,
                "enc_hex": w.enc.hex(),
                "ct_hex": w.ct.hex(),
            }
            for w in wrapped
        ],
        "payload_ciphertext_hex": ciphertext.hex(),
        "signature_hex": signature.hex(),
        "signed_message_hex": (E.SIG_CONTEXT + envelope[: -E.SIGNATURE_LEN]).hex(),
    }


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Spec:
    """One envelope to seal for a vector."""

    name: str
    description: str
    draft: E.Draft
    payload: bytes
    signing_key: str
    now: datetime = NOW


def _seal(
    spec: Spec,
    directory: Directory,
    ring: Keyring,
    *,
    sealing_directory: Directory | None = None,
    header_overrides: dict[str, object] | None = None,
) -> tuple[bytes, CounterRng]:
    rng = CounterRng(f"crb vector rng: {spec.name}".encode())
    envelope = E._seal(
        spec.draft,
        spec.payload,
        signing_key=ring.signing[spec.signing_key],
        directory=sealing_directory or directory,
        now=spec.now,
        rng=rng,
        ephemeral=rng,
        hybrid_wrap=_hybrid_wrap,
        header_overrides=header_overrides,
    )
    return envelope, rng


def _envelope_vector(spec: Spec, directory: Directory, ring: Keyring) -> dict[str, Any]:
    envelope, rng = _seal(spec, directory, ring)
    message_id_rand, content_key, *seeds = rng.drawn
    v = E.verify(envelope, directory=directory, now=spec.now)
    header = v.header
    mid, sender = header.message_id, header.sender
    per_recipient = []
    for w, seed in zip(v.wrapped_keys, seeds, strict=True):
        derand = "ikm_e_hex" if w.kem is Kem.X25519 else "eseed_hex"
        per_recipient.append(
            {
                "participant_id": w.recipient,
                "key_id": w.key_id,
                "kem_id": w.kem.hpke_id,
                derand: seed.hex(),
                "hpke_info_hex": E._wrap_info(sender, w.recipient, mid).hex(),
            }
        )
        opened = E.open_envelope(
            envelope,
            recipient=w.recipient,
            opening_keys=[ring.opening[w.key_id]],
            directory=directory,
            now=spec.now,
        )
        assert opened.payload == spec.payload  # cryptography's HPKE opens what we sealed
    return {
        "name": spec.name,
        "description": spec.description,
        "message_type": header.message_type.value,
        "now": _instant(spec.now),
        "limits": LIMITS,
        "sender": {"participant_id": sender, "signing_key_id": spec.signing_key},
        "recipients": per_recipient,
        "rng": {
            "message_id_random_hex": message_id_rand.hex(),
            "content_key_hex": content_key.hex(),
        },
        "derived": {
            "message_id": str(mid),
            "key_commitment_hex": E._commitment(content_key, mid).hex(),
            "payload_key_hex": P.hmac_sha256(content_key, E.PAYLOAD_KEY_LABEL).hex(),
            "payload_nonce_hex": E.PAYLOAD_NONCE.hex(),
            "payload_aad_hex": E._payload_aad(sender, mid, header.canonical_bytes()).hex(),
        },
        "payload_utf8": spec.payload.decode("utf-8"),
        "parts": _hex_fields(envelope),
        "envelope_hex": envelope.hex(),
        "sha256_hex": P.sha256(envelope).hex(),
    }


def _referral_draft(
    recipients: tuple[str, ...] = (),
    *,
    sender: str = "de.hotline",
    priority: Priority = Priority.ROUTINE,
) -> E.Draft:
    return E.Draft(
        sender=sender,
        case_id=CASE,
        jurisdiction="NL",
        category=Category.CSAM,
        priority=priority,
        handling_code=HandlingCode.H0,
        recipients=recipients,
    )


def _reply_draft(
    original: dict[str, Any], message_type: MessageType, decision: DecisionKind | None = None
) -> E.Draft:
    header = json.loads(original["parts"]["header_utf8"])
    return E.Draft(
        message_type=message_type,
        sender="nl.hotline",
        case_id=UUID(header["case_id"]),
        jurisdiction=header["jurisdiction"],
        category=Category(header["category"]),
        priority=Priority(header["priority"]),
        handling_code=HandlingCode(header["handling_code"]),
        recipients=(header["sender"],),
        in_reply_to=UUID(header["message_id"]),
        decision=decision,
    )


def _signing_id(label: str) -> str:
    return SigningKey.from_seed(_seed(label)).key_id


def _specs(ring: Keyring) -> list[Spec]:
    de_key = _signing_id("de.hotline/signing")
    payload = canonical_json(_referral())
    return [
        Spec(
            "referral_one_recipient",
            "A routine referral from de.hotline to nl.hotline only (explicit recipients), "
            "sealed to nl.hotline's newer encryption key (the newest valid at now).",
            _referral_draft(("nl.hotline",)),
            payload,
            de_key,
        ),
        Spec(
            "referral_resolved_recipients",
            "A referral for NL whose recipients come from resolve(): nl.hotline (X25519) "
            "and nl.police (ML-KEM-768+X25519, KEM 0x647a).",
            _referral_draft(),
            payload,
            de_key,
        ),
        Spec(
            "referral_hybrid",
            "A referral to nl.police only: the post-quantum hybrid KEM alone.",
            _referral_draft(("nl.police",)),
            payload,
            de_key,
        ),
        Spec(
            "referral_before_rotation",
            "Sealed on 2026-10-15, before nl.hotline's second key was valid: wrapped to "
            "the first key, which still opens it (its own now).",
            _referral_draft(("nl.hotline",)),
            payload,
            de_key,
            now=BEFORE_ROTATION,
        ),
    ]


def _reply_specs(ring: Keyring, original: dict[str, Any]) -> list[Spec]:
    nl_key = _signing_id("nl.hotline/signing")
    mid = UUID(original["derived"]["message_id"])
    receipt = Receipt(
        original_message_id=mid,
        case_id=CASE,
        received_at=NOW + timedelta(seconds=2),
        envelope_sha256=original["sha256_hex"],
    )
    ack = CaseAck(
        original_message_id=mid,
        case_id=CASE,
        decided_at=NOW + timedelta(minutes=30),
        decision=Accepted(receiver_reference="NL-HL-2026-0042"),
    )
    later = NOW + timedelta(minutes=30)
    return [
        Spec(
            "receipt",
            "nl.hotline's signed receipt for referral_one_recipient, back to de.hotline: "
            "the SHA-256 of the exact envelope bytes it received.",
            _reply_draft(original, MessageType.RECEIPT),
            canonical_json(receipt),
            nl_key,
            now=NOW + timedelta(seconds=2),
        ),
        Spec(
            "case_ack",
            "nl.hotline accepts the case of referral_one_recipient (decision in the clear "
            "header, the receiver's own reference in the payload).",
            _reply_draft(original, MessageType.CASE_ACK, DecisionKind.ACCEPTED),
            canonical_json(ack),
            nl_key,
            now=later,
        ),
    ]


# --- rejections --------------------------------------------------------------------------


def _resign(body: bytes, ring: Keyring, key_id: str) -> bytes:
    """``body`` (an envelope without its signature) signed again by ``key_id``."""
    return body + ring.signing[key_id].sign(E.SIG_CONTEXT + body)


def _rebuild(
    envelope: bytes,
    *,
    header: bytes | None = None,
    wrapped: list[list[Any]] | None = None,
    version: int = 1,
) -> bytes:
    """The envelope's body reframed with another header / wrapped keys (unsigned)."""
    header_bytes, keys, ciphertext, _ = E._split(envelope)
    header_bytes = header if header is not None else header_bytes
    rows: list[list[Any]] = (
        wrapped
        if wrapped is not None
        else [[w.recipient.encode(), w.key_id.encode(), w.kem.hpke_id, w.enc, w.ct] for w in keys]
    )
    body = E.MAGIC + bytes([version]) + struct.pack(">I", len(header_bytes)) + header_bytes
    body += struct.pack(">H", len(rows))
    for rid, kid, kem, enc, ct in rows:
        body += E._lp16(rid) + E._lp16(kid) + struct.pack(">H", kem) + E._lp16(enc) + E._lp16(ct)
    return body + struct.pack(">I", len(ciphertext)) + ciphertext


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Rejection:
    description: str
    envelope: bytes
    expected: str
    now: datetime = NOW
    recipient: str = "nl.hotline"
    outbox_owner: str | None = None
    max_size: int | None = None


def _rejections(base: dict[str, Any], directory: Directory, ring: Keyring) -> list[Rejection]:
    envelope = bytes.fromhex(base["envelope_hex"])
    body = envelope[: -E.SIGNATURE_LEN]
    de_key = base["sender"]["signing_key_id"]
    header = json.loads(base["parts"]["header_utf8"])
    _, keys, _, _ = E._split(envelope)
    rows: list[list[Any]] = [
        [w.recipient.encode(), w.key_id.encode(), w.kem.hpke_id, w.enc, w.ct] for w in keys
    ]

    def flip(data: bytes, at: int) -> bytes:
        b = bytearray(data)
        b[at] ^= 0x01
        return bytes(b)

    def resigned(**kw: Any) -> bytes:
        return _resign(_rebuild(envelope, **kw), ring, de_key)

    def edited_header(**fields: Any) -> bytes:
        return resigned(header=_canonical({**header, **fields}))

    payload = canonical_json(_referral())
    spec = Spec("rejection", "", _referral_draft(("nl.hotline",)), payload, de_key)

    def sealed(name: str, draft: E.Draft, data: bytes, key: str, **kw: Any) -> bytes:
        return _seal(Spec(name, "", draft, data, key), directory, ring, **kw)[0]

    def changed(pid: str, **update: Any) -> Directory:
        return directory.model_copy(update={"participants": tuple(
            p.model_copy(update=update) if p.participant_id == pid else p
            for p in directory.participants
        )})  # fmt: skip

    de = directory.participant("de.hotline")
    assert de is not None
    fr = de.model_copy(update={"participant_id": "fr.hotline", "jurisdiction": "FR"})
    with_fr = directory.model_copy(update={"participants": (*directory.participants, fr)})
    fr_draft = _referral_draft(("nl.hotline",), sender="fr.hotline")
    unknown_sender = sealed("unknown_sender", fr_draft, payload, de_key, sealing_directory=with_fr)
    be_draft = _referral_draft(("nl.hotline",), sender="be.hotline")
    be_key = _signing_id("be.hotline/signing")
    be_active = changed("be.hotline", status=ParticipantStatus.ACTIVE)
    from_suspended = sealed("sender_suspended", be_draft, payload, be_key,
                            sealing_directory=be_active)  # fmt: skip
    unrevoked = changed("de.hotline", keys=tuple(
        k.model_copy(update={"revoked_at": None}) for k in de.keys))  # fmt: skip
    revoked_key = _signing_id("de.hotline/signing-revoked")
    with_revoked = sealed("key_revoked", spec.draft, payload, revoked_key,
                          sealing_directory=unrevoked)  # fmt: skip
    stranger = SigningKey.from_seed(_seed("nobody/signing"))
    ring.signing[stranger.key_id] = stranger
    stranger_record = record_for(stranger.verify_key, not_before=YEAR[0], not_after=YEAR[1])
    with_stranger = changed("de.hotline", keys=(*de.keys, stranger_record))
    unknown_signing_key = sealed("unknown_key", spec.draft, payload, stranger.key_id,
                                 sealing_directory=with_stranger)  # fmt: skip
    del ring.signing[stranger.key_id]
    bad_commitment = sealed("commitment", spec.draft, payload, de_key,
                            header_overrides={"key_commitment": "00" * 32})  # fmt: skip
    not_a_referral = sealed("schema_invalid", spec.draft,
                            b'{"schema_version":1,"note":"not a referral"}', de_key)  # fmt: skip
    mismatching = sealed("payload_mismatch", spec.draft,
                         canonical_json(_referral(Priority.HIGH)), de_key)  # fmt: skip
    wrong_ct = [list(row) for row in rows]
    wrong_ct[0][4] = flip(wrong_ct[0][4], 0)
    short_enc = [list(row) for row in rows]
    short_enc[0][3] = short_enc[0][3][:-1]
    unknown_kem = [list(row) for row in rows]
    unknown_kem[0][2] = 0x0021
    other_key = [list(row) for row in rows]
    other_key[0][1] = _signing_id("nl.hotline/signing").encode()  # a signing key's id
    text = base["parts"]["header_utf8"]
    header_at = 9 + text.index('"jurisdiction":"NL"') + len('"jurisdiction":"')
    edited = bytearray(envelope)
    edited[header_at : header_at + 2] = b"BE"
    r = Rejection
    return [
        r("longer than the verifier's max_size (here 1000 bytes)", envelope, "too_large",
          max_size=1000),
        r("shorter than the minimum length (79 bytes) and with format version 2: "
          "length wins", b"CRBE\x02" + bytes(70), "malformed"),
        r("wrong magic", b"XRBE" + envelope[4:], "malformed"),
        r("format version 2 (long enough, otherwise well framed)",
          envelope[:4] + b"\x02" + envelope[5:], "unsupported_version"),
        r("format version 2 and truncated by one byte: the version is read before "
          "the framing", envelope[:4] + b"\x02" + envelope[5:-1], "unsupported_version"),
        r("truncated by one byte", envelope[:-1], "malformed"),
        r("one byte too many", envelope + b"\x00", "malformed"),
        r("header not canonical (a space after a comma), signed",
          resigned(header=_canonical(header).replace(b",", b", ", 1)), "malformed"),
        r("header recipients differ from the wrapped keys' recipients, signed",
          edited_header(recipients=["nl.hotline", "nl.police"]), "malformed"),
        r("header with schema_version 2 and an unknown priority, signed: the version wins",
          edited_header(schema_version=2, priority="someday"), "unsupported_version"),
        r("header without schema_version, signed", resigned(header=_canonical(
            {k: v for k, v in header.items() if k != "schema_version"})), "malformed"),
        r("sender is its own recipient, signed", edited_header(sender="nl.hotline"),
          "malformed"),
        r("jurisdiction EU (not an assigned ISO 3166-1 code), signed",
          edited_header(jurisdiction="EU"), "malformed"),
        r("a wrapped key's enc one byte short (32 for X25519), signed",
          resigned(wrapped=short_enc), "malformed"),
        r("a wrapped key with KEM id 0x0021, signed", resigned(wrapped=unknown_kem),
          "unsupported_version"),
        r("sender not in the directory (fr.hotline)", unknown_sender, "unknown_sender"),
        r("sender suspended in the directory (be.hotline)", from_suspended,
          "sender_suspended"),
        r("read from nl.hotline's outbox but signed by de.hotline", envelope, "wrong_outbox",
          outbox_owner="nl.hotline"),
        r("signed with a key the sender does not publish", unknown_signing_key,
          "unknown_key"),
        r("signed with de.hotline's key revoked on 2026-06-01", with_revoked, "key_revoked"),
        r("verified after the signing key's not_after (2027-01-01)", envelope,
          "key_expired", now=datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)),
        r("flipped bit in the signature", flip(envelope, len(envelope) - 1),
          "bad_signature"),
        r("signature S + L (a non-canonical S, which ZIP-215 would accept)",
          body + _s_plus_l(envelope[-E.SIGNATURE_LEN:]), "bad_signature"),
        r("flipped bit in the payload ciphertext", flip(envelope, len(envelope) - 70),
          "bad_signature"),
        r("header field edited (jurisdiction NL -> BE), not signed again", bytes(edited),
          "bad_signature"),
        r("created one hour after now (beyond the 5-minute skew)", envelope,
          "future_dated", now=NOW - timedelta(hours=1)),
        r("verified two days after it was created", envelope, "stale",
          now=NOW + timedelta(days=2)),
        r("a wrapped key names a signing key of its recipient, signed",
          resigned(wrapped=other_key), "unknown_key"),
        r("opened by a participant it is not addressed to", envelope, "not_a_recipient",
          recipient="int.coordinator"),
        r("the recipient's HPKE ciphertext flipped, signed", resigned(wrapped=wrong_ct),
          "decrypt_failed"),
        r("key_commitment that the content key does not give", bad_commitment,
          "key_commitment_mismatch"),
        r("payload is JSON but not a Referral", not_a_referral, "schema_invalid"),
        r("payload priority high, header priority routine", mismatching,
          "payload_mismatch"),
    ]  # fmt: skip


_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 base point."""


def _s_plus_l(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "little") + _L
    return signature[:32] + s.to_bytes(32, "little")


def _rejection_vectors(
    base: dict[str, Any], directory: Directory, ring: Keyring
) -> list[dict[str, Any]]:
    out = []
    for r in _rejections(base, directory, ring):
        limits = E.Limits(max_size=r.max_size) if r.max_size else E.DEFAULT_LIMITS
        opening = [
            k for k in ring.opening.values() if ring.material[k.key_id]["owner"] == r.recipient
        ]
        try:
            E.verify(
                r.envelope,
                directory=directory,
                now=r.now,
                limits=limits,
                expected_sender=r.outbox_owner,
            )  # the router's admission
            E.open_envelope(r.envelope, recipient=r.recipient, opening_keys=opening,
                            directory=directory, now=r.now, limits=limits,
                            check_sender_status=False)  # fmt: skip
        except EnvelopeError as exc:
            reason = exc.reason.value
        else:  # pragma: no cover - a bug in the generator or the envelope
            raise AssertionError(f"vector {r.description!r} was accepted")
        if reason != r.expected:  # pragma: no cover
            raise AssertionError(f"vector {r.description!r}: {reason}, not {r.expected}")
        vector: dict[str, Any] = {
            "description": r.description,
            "now": _instant(r.now),
            "recipient": r.recipient,
            "envelope_hex": r.envelope.hex(),
            "expected_reason": reason,
        }
        if r.outbox_owner is not None:
            vector["outbox_owner"] = r.outbox_owner
        if r.max_size is not None:
            vector["max_size"] = r.max_size
        out.append(vector)
    return out


def _deconfliction_vector() -> dict[str, Any]:
    key = DeconflictionKey(1, _seed("deconfliction epoch 1"))
    urls = [
        "https://files.example.nl/a/b/c.html",
        "HTTP://FILES.example.nl:80/a/./x/../b/c.html#frag",
        "http://user@files.example.nl./a/b/%63.html",
        "https://files.example.nl/a/b/C.html",
        "https://[2001:DB8::1]:443/%7euser/?",
    ]
    return {
        "description": "Deconfliction tags: HMAC-SHA256(key, label || kind || 0x00 || value)[:16] "
        "over normalised URLs and exact hashes (see schemas/_deconfliction.py, ENVELOPE.md).",
        "key_hex": key.secret.hex(),
        "epoch": key.epoch,
        "label_hex": TAG_LABEL.hex(),
        "urls": [
            {"url": u, "normalised": normalise_url(u), "tag_hex": key.tag("url", normalise_url(u))}
            for u in urls
        ],
        "hashes": [
            {"algorithm": a, "value": v, "tag_hex": key.tag(a, v)}
            for a, v in (("sha256", "0f" * 32), ("md5", "ab" * 16), ("sha1", "cd" * 20))
        ],
    }


def build() -> dict[str, bytes]:
    """File name -> exact bytes of every vector file."""
    root, directory, ring = _federation()
    signed = sign_directory(directory, root)
    vectors = {s.name: _envelope_vector(s, directory, ring) for s in _specs(ring)}
    for s in _reply_specs(ring, vectors["referral_one_recipient"]):
        vectors[s.name] = _envelope_vector(s, directory, ring)
    directory_vector = {
        "description": "The signed federation directory the envelope vectors verify against, "
        "and every test-only private key (hex; never use them elsewhere).",
        "root_key_id": root.key_id,
        "root_ed25519_public_hex": root.verify_key.public_raw().hex(),
        "signed_message_prefix_utf8": "crb/directory/v1\u0000",
        "signed_message_prefix_hex": b"crb/directory/v1\x00".hex(),
        "signed_directory": json.loads(signed.to_json()),
        "private_keys": {k: ring.material[k] for k in sorted(ring.material)},
    }
    rejections = {
        "description": "Envelopes that must be refused, with the reason code of the first "
        "failing check: verified as the router does (ENVELOPE.md section 8; `outbox_owner`, "
        "when given, is the participant whose outbox it was read from), then opened as "
        "`recipient` (section 9), both at `now`, with the default limits unless `max_size` "
        "is given.",
        "base": "referral_one_recipient",
        "cases": _rejection_vectors(vectors["referral_one_recipient"], directory, ring),
    }
    files: dict[str, Any] = {"directory.json": directory_vector}
    files.update({f"envelope_{name}.json": v for name, v in vectors.items()})
    files["envelope_rejections.json"] = rejections
    files["deconfliction.json"] = _deconfliction_vector()
    return {
        name: (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        for name, data in files.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keys.vectors", description=__doc__)
    parser.add_argument("--out", type=Path, default=VECTORS_DIR)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [n for n, b in files.items() if _read(args.out / n) != b]
        if stale:
            print(f"vectors out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    print(f"wrote {len(files)} vector files to {args.out}")
    return 0


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
