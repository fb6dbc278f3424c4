"""A small federation built at test time (keys generated fresh, never committed).

Members: ``de.hotline`` (the usual sender), ``nl.hotline`` and ``nl.police``
(receivers for NL; ``nl.police`` uses the ML-KEM-768+X25519 hybrid) and
``int.coordinator``. Directory signed by a fresh root key. Built with the one
federation builder, ``keys.testing.Federation``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from keys import Draft, Kem, SigningKey
from keys.testing import Federation, KeyMaker, MemberSpec, random_keys
from schemas import HandlingCode, Referral, Role, uuid7

NOW = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)
KEY_START = NOW - timedelta(days=30)
KEY_END = NOW + timedelta(days=335)

MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,), Kem.MLKEM768_X25519),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)


def federation(*, keys: KeyMaker = random_keys, root: SigningKey | None = None) -> Federation:
    """The unit tests' federation (see the module docstring), keys valid around NOW."""
    return Federation(
        MEMBERS,
        not_before=KEY_START,
        not_after=KEY_END,
        issued_at=NOW - timedelta(days=1),
        keys=keys,
        root=root or SigningKey.generate(),
    )


def signed_bytes(fed: Federation, directory: Any = None) -> bytes:
    return fed.signed(directory).to_json()


def referral(summary: str = "Report about a hosted URL.") -> Referral:
    return Referral.model_validate(
        {
            "reporter": {"reference": "DE-2026-0001"},
            "incident": {"type": "csam", "summary": summary},
            "urls": [{"url": "https://files.example.org/abc", "hosting": {"country": "NL"}}],
            "handling": {
                "code": "H0",
                "source_reliability": "A",
                "information_accuracy": "1",
                "tlp": "AMBER",
            },
            "delete_after": date(2027, 11, 23).isoformat(),
        }
    )


def draft(sender: str = "de.hotline", *, message_id: UUID | None = None) -> Draft:
    ref = referral()
    return Draft(
        sender=sender,
        case_id=uuid7(NOW),
        jurisdiction="NL",
        category=ref.incident.type,
        priority=ref.urgency.priority,
        handling_code=HandlingCode.H0,
        message_id=message_id,
    )


# --- framing helpers for tamper tests (independent of keys' parser) -------------


@dataclass
class Frame:
    """An envelope taken apart; ``bytes()`` puts it back together."""

    header: bytes
    wrapped: list[list[Any]]  # [recipient, key_id, kem_id, enc, ct]
    ciphertext: bytes
    signature: bytes
    version: int = 1

    @classmethod
    def parse(cls, env: bytes) -> Frame:
        pos = 5

        def take(n: int) -> bytes:
            nonlocal pos
            out = env[pos : pos + n]
            pos += n
            return out

        def u16() -> int:
            return int(struct.unpack(">H", take(2))[0])

        header = take(struct.unpack(">I", take(4))[0])
        wrapped: list[list[Any]] = []
        for _ in range(u16()):
            rid, kid = take(u16()).decode(), take(u16()).decode()
            kem = u16()
            enc = take(u16())
            ct = take(u16())
            wrapped.append([rid, kid, kem, enc, ct])
        ciphertext = take(struct.unpack(">I", take(4))[0])
        return cls(header, wrapped, ciphertext, env[-64:], env[4])

    def body(self) -> bytes:
        out = b"CRBE" + bytes([self.version]) + struct.pack(">I", len(self.header)) + self.header
        out += struct.pack(">H", len(self.wrapped))
        for rid, kid, kem, enc, ct in self.wrapped:
            out += _lp16(rid.encode()) + _lp16(kid.encode()) + struct.pack(">H", kem)
            out += _lp16(enc) + _lp16(ct)
        return out + struct.pack(">I", len(self.ciphertext)) + self.ciphertext

    def __bytes__(self) -> bytes:
        return self.body() + self.signature

    def resigned(self, key: SigningKey) -> bytes:
        """Re-sign, as a malicious but authentic sender (or a forger holding its key) would."""
        return self.body() + key.sign(b"crb/envelope/v1 signature\x00" + self.body())

    def header_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.header)
        return data

    def with_header(self, data: dict[str, Any]) -> Frame:
        header = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return Frame(header, self.wrapped, self.ciphertext, self.signature, self.version)


def _lp16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b
