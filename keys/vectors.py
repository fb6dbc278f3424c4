"""Generate the committed envelope test vectors: ``python -m keys.vectors [--check]``.

Writes ``schemas/vectors/*.json`` (see ``schemas/ENVELOPE.md``). Everything is
deterministic: keys come from fixed seeds, time is fixed, and randomness is a
SHA-256 counter stream, so a second run writes identical bytes (``--check``
fails if the committed files differ). The private keys in these files are
test-only, published on purpose, hex-encoded, and must never be used elsewhere.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from keys import _envelope as E
from keys import _primitives as P
from keys._directory import sign_directory
from keys._errors import EnvelopeError
from keys._keys import OpeningKey, SigningKey
from keys.testing import Federation, MemberSpec
from schemas import (
    Category,
    Directory,
    HandlingCode,
    Priority,
    Referral,
    Role,
    canonical_json,
)

__all__ = ["VECTORS_DIR", "build", "main"]

VECTORS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
NOW = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)


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


def _seed(label: str) -> bytes:
    return P.sha256(b"crb test vector key: " + label.encode())


def _signing(label: str) -> tuple[SigningKey, bytes]:
    seed = _seed(label)
    return SigningKey.from_seed(seed), seed


def _opening(label: str) -> tuple[OpeningKey, bytes]:
    scalar = _seed(label)
    return OpeningKey.from_x25519_seed(scalar), scalar


_MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)


def _seeded_keys(spec: MemberSpec) -> tuple[SigningKey, OpeningKey]:
    return _signing(spec.participant_id + "/signing")[0], _opening(
        spec.participant_id + "/encryption"
    )[0]


def _federation() -> tuple[SigningKey, Directory, dict[str, dict[str, Any]]]:
    fed = Federation(
        _MEMBERS,
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
        issued_at=datetime(2026, 11, 1, tzinfo=UTC),
        federation_id="vectors",
        keys=_seeded_keys,
        root=_signing("root")[0],
        services=(),  # the vectors are about envelopes; no random service keys
    )
    secrets: dict[str, dict[str, Any]] = {
        pid: {
            "signing_key": m.signing,
            "opening_key": m.opening,
            "ed25519_seed_hex": _seed(pid + "/signing").hex(),
            "x25519_private_hex": _seed(pid + "/encryption").hex(),
        }
        for pid, m in fed.members.items()
    }
    return fed.root, fed.directory(), secrets


def _referral() -> Referral:
    return Referral.model_validate(
        {
            "reporter": {"reference": "DE-2026-000123", "analyst": "analyst-7"},
            "incident": {
                "type": "csam",
                "summary": "Public report of a URL hosted in NL (test vector; no real case).",
            },
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


def _envelope_vector(
    name: str,
    description: str,
    directory: Directory,
    secrets: dict[str, dict[str, Any]],
    *,
    recipients: tuple[str, ...],
    priority: Priority = Priority.ROUTINE,
) -> dict[str, Any]:
    rng = CounterRng(f"crb vector rng: {name}".encode())
    referral = _referral()
    if priority is not Priority.ROUTINE:
        referral = referral.model_copy(
            update={"urgency": referral.urgency.model_copy(update={"priority": priority})}
        )
    payload = canonical_json(referral)
    draft = E.Draft(
        sender="de.hotline",
        case_id=UUID("019ab1d2-3c40-7000-8000-000000000001"),
        jurisdiction="NL",
        category=Category.CSAM,
        priority=priority,
        handling_code=HandlingCode.H0,
        recipients=recipients,
    )
    sender = secrets["de.hotline"]
    envelope = E._seal(
        draft,
        payload,
        signing_key=sender["signing_key"],
        directory=directory,
        now=NOW,
        rng=rng,
        ephemeral=rng,
    )
    message_id_rand, content_key, *ikms = rng.drawn
    v = E.verify(envelope, directory=directory, now=NOW)
    header = v.header
    mid = header.message_id
    per_recipient = []
    for w, ikm in zip(v.wrapped_keys, ikms, strict=True):
        per_recipient.append(
            {
                "participant_id": w.recipient,
                "key_id": w.key_id,
                "x25519_private_hex": secrets[w.recipient]["x25519_private_hex"],
                "x25519_public_hex": secrets[w.recipient]["opening_key"]
                .sealing_key.public_raw()
                .hex(),
                "ikm_e_hex": ikm.hex(),
                "hpke_info_hex": E._wrap_info("de.hotline", w.recipient, mid).hex(),
            }
        )
        opened = E.open_envelope(
            envelope,
            recipient=w.recipient,
            opening_keys=[secrets[w.recipient]["opening_key"]],
            directory=directory,
            now=NOW,
        )
        assert opened.payload == payload
    return {
        "name": name,
        "description": description,
        "now": NOW.isoformat().replace("+00:00", "Z"),
        "limits": {"max_size": 1 << 20, "max_age_seconds": 86400, "max_skew_seconds": 300},
        "sender": {
            "participant_id": "de.hotline",
            "signing_key_id": sender["signing_key"].key_id,
            "ed25519_seed_hex": sender["ed25519_seed_hex"],
            "ed25519_public_hex": sender["signing_key"].verify_key.public_raw().hex(),
        },
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
            "payload_aad_hex": E._payload_aad("de.hotline", mid, header.canonical_bytes()).hex(),
        },
        "payload_utf8": payload.decode("utf-8"),
        "parts": _hex_fields(envelope),
        "envelope_hex": envelope.hex(),
        "sha256_hex": P.sha256(envelope).hex(),
    }


def _rejections(
    base: dict[str, Any], directory: Directory, secrets: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    envelope = bytes.fromhex(base["envelope_hex"])
    header_len = int.from_bytes(envelope[5:9], "big")
    cases: list[tuple[str, bytes, datetime, str]] = []

    def flip(at: int) -> bytes:
        b = bytearray(envelope)
        b[at] ^= 0x01
        return bytes(b)

    cases.append(("flipped bit in the signature", flip(len(envelope) - 1), NOW, "nl.hotline"))
    cases.append(("flipped bit in the payload ciphertext", flip(len(envelope) - 70), NOW, "x"))
    header = envelope[9 : 9 + header_len].decode()
    at = 9 + header.index('"jurisdiction":"NL"') + len('"jurisdiction":"')
    tampered = bytearray(envelope)
    tampered[at : at + 2] = b"BE"
    cases.append(("header field edited (jurisdiction NL -> BE)", bytes(tampered), NOW, "x"))
    cases.append(("truncated by one byte", envelope[:-1], NOW, "nl.hotline"))
    cases.append(("wrong magic", b"XRBE" + envelope[4:], NOW, "nl.hotline"))
    cases.append(("unknown format version", envelope[:4] + b"\x02" + envelope[5:], NOW, "x"))
    cases.append(("too old at verification time", envelope, NOW + timedelta(days=2), "x"))
    cases.append(("created in the future", envelope, NOW - timedelta(hours=1), "nl.hotline"))
    cases.append(("opened by a non-recipient", envelope, NOW, "int.coordinator"))
    out = []
    for description, data, now, who in cases:
        recipient = "nl.hotline" if who == "x" else who
        try:
            E.open_envelope(
                data,
                recipient=recipient,
                opening_keys=[secrets[recipient]["opening_key"]],
                directory=directory,
                now=now,
            )
        except EnvelopeError as exc:
            reason = exc.reason.value
        else:  # pragma: no cover - would be a bug in the generator or the envelope
            raise AssertionError(f"vector {description!r} was accepted")
        out.append(
            {
                "description": description,
                "now": now.isoformat().replace("+00:00", "Z"),
                "recipient": recipient,
                "envelope_hex": data.hex(),
                "expected_reason": reason,
            }
        )
    return out


def build() -> dict[str, bytes]:
    """File name -> exact bytes of every vector file."""
    root, directory, secrets = _federation()
    signed = sign_directory(directory, root)
    one = _envelope_vector(
        "referral_one_recipient",
        "A routine referral from de.hotline to nl.hotline only (explicit recipients).",
        directory,
        secrets,
        recipients=("nl.hotline",),
    )
    two = _envelope_vector(
        "referral_resolved_recipients",
        "A referral for NL whose recipients come from resolve(): nl.hotline and nl.police.",
        directory,
        secrets,
        recipients=(),
    )
    directory_vector = {
        "description": "The signed federation directory the envelope vectors verify against.",
        "root_key_id": root.key_id,
        "root_ed25519_public_hex": root.verify_key.public_raw().hex(),
        "signed_message_prefix_utf8": "crb/directory/v1\u0000",
        "signed_message_prefix_hex": b"crb/directory/v1\x00".hex(),
        "signed_directory": json.loads(signed.to_json()),
    }
    rejections = {
        "description": "Envelopes derived from referral_one_recipient that must be refused, "
        "with the reason code the reference implementation gives.",
        "base": "referral_one_recipient",
        "cases": _rejections(one, directory, secrets),
    }
    files = {
        "directory.json": directory_vector,
        "envelope_referral_one_recipient.json": one,
        "envelope_referral_resolved_recipients.json": two,
        "envelope_rejections.json": rejections,
    }
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
