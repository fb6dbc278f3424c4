"""Fuzz the envelope and the router's decision with generated and mutated inputs.

``python -m bench.fuzz_envelope [--count N] [--seed S] [--coverage] [--json]``

Seeds are valid envelopes of a test federation (a referral to an X25519 and a
hybrid recipient, a receipt, a case acknowledgement). Each input is one mutation:
bit flips, extreme bytes, truncation, extension, splices of two envelopes,
length fields set to extremes, a header replaced by mutated JSON (unsigned, or
signed again with the sender's key so that the later checks are reached), a
payload of random JSON sealed properly, or random bytes. Every input goes through
``keys.parse``, ``keys.verify`` (as the router, with the outbox owner), ``keys.open``
(as each recipient) and the router's ``decide``.

What may happen: ``keys.EnvelopeError`` (the documented refusal) from the first
three, and a decision (forward or dead letter) from ``decide``, within
:data:`SLOW_S`. Anything else — another exception, or a slow input — is a
*crasher*: written to ``tests/fuzz_corpus/`` (its bytes, and the exception),
which ``tests/unit/test_fuzz_corpus.py`` replays for ever after. Reported: inputs,
time, crashers, and with ``--coverage`` the line coverage of ``keys/_envelope.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters.kafka import Record
from broker.router import SeenMessage, decide
from keys import Draft, EnvelopeError, Kem, Limits, OpeningKey, SigningKey, parse, seal, verify
from keys import open as open_envelope
from keys._envelope import SIG_CONTEXT
from keys.testing import Federation, MemberSpec, synthetic_referral
from schemas import (
    Accepted,
    CaseAck,
    DecisionKind,
    MessageType,
    Receipt,
    Role,
    TopicNames,
)

__all__ = ["Fuzzer", "main", "run"]

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fuzz_corpus"
NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
SLOW_S = 1.0
NAMES = TopicNames("fuzz")
MEMBERS = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,), kem=Kem.MLKEM768_X25519),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)
_JSON_VALUES: tuple[Any, ...] = (
    None, True, 0, -1, 2**53, 2**64, 1.5, "", "x" * 5000, "\u2028", "\x00", [], {},
    [1] * 100, {"a": {"b": {"c": []}}}, "019ab1d2-3c40-7000-8000-000000000001",
)  # fmt: skip


@dataclass
class World:
    fed: Federation
    seeds: list[bytes]
    keys: dict[str, OpeningKey]
    signing: dict[str, SigningKey]
    seen: dict[UUID, SeenMessage] = field(default_factory=dict)


def world() -> World:
    fed = Federation(
        MEMBERS,
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=300),
        issued_at=NOW - timedelta(days=1),
    )
    directory = fed.directory()
    referral = synthetic_referral(jurisdiction="NL", urls=3)
    ref_env = fed.seal_referral("de.hotline", referral, jurisdiction="NL", now=NOW)
    header = parse(ref_env).header
    receipt = Receipt(
        original_message_id=header.message_id,
        case_id=header.case_id,
        received_at=NOW,
        envelope_sha256=hashlib.sha256(ref_env).hexdigest(),
    )
    reply: dict[str, Any] = {
        "sender": "nl.hotline", "case_id": header.case_id, "jurisdiction": "NL",
        "category": header.category, "priority": header.priority,
        "handling_code": header.handling_code, "recipients": ("de.hotline",),
        "in_reply_to": header.message_id,
    }  # fmt: skip
    rec_env = seal(
        Draft(message_type=MessageType.RECEIPT, **reply),
        receipt, signing_key=fed.signing("nl.hotline"), directory=directory, now=NOW,
    )  # fmt: skip
    ack = CaseAck(
        original_message_id=header.message_id, case_id=header.case_id, decided_at=NOW,
        decision=Accepted(receiver_reference="NL-1"),
    )  # fmt: skip
    ack_env = seal(
        Draft(message_type=MessageType.CASE_ACK, decision=DecisionKind.ACCEPTED, **reply),
        ack, signing_key=fed.signing("nl.hotline"), directory=directory, now=NOW,
    )  # fmt: skip
    seen = {
        header.message_id: SeenMessage(
            "de.hotline", header.recipients, MessageType.REFERRAL, NOW - timedelta(minutes=5),
            (hashlib.sha256(ref_env).hexdigest(),),
        )
    }  # fmt: skip
    return World(
        fed,
        [ref_env, rec_env, ack_env],
        {pid: fed.opening(pid) for pid in fed.members},
        {pid: fed.signing(pid) for pid in fed.members},
        seen,
    )


def _frame(env: bytes) -> tuple[bytes, bytes]:
    """(header bytes, the rest after the header up to the signature) if it frames."""
    n = struct.unpack_from(">I", env, 5)[0]
    return env[9 : 9 + n], env[9 + n : -64]


def _mutate_json(value: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.8:
        out = dict(value)
        key = rng.choice(sorted(out))
        choice = rng.random()
        if choice < 0.3:
            del out[key]
        elif choice < 0.6 and depth < 3:
            out[key] = _mutate_json(out[key], rng, depth + 1)
        else:
            out[key] = rng.choice(_JSON_VALUES)
        if rng.random() < 0.1:
            out["extra"] = rng.choice(_JSON_VALUES)
        return out
    if isinstance(value, list) and value and rng.random() < 0.5:
        return [_mutate_json(value[0], rng, depth + 1), *value[1:]] if rng.random() < 0.5 else []
    if isinstance(value, str) and rng.random() < 0.5:
        pos = rng.randrange(len(value) + 1)
        return value[:pos] + rng.choice(["\x00", "Z", "é", "\u2028", "9", "-", " "]) + value[pos:]
    return rng.choice(_JSON_VALUES)


class Fuzzer:
    """One input per call, from the seeds, with a seeded random source."""

    def __init__(self, w: World, seed: int) -> None:
        self.w = w
        self.rng = random.Random(seed)
        self.mutators: list[Callable[[bytes], bytes]] = [
            self.flip, self.extreme, self.truncate, self.extend, self.splice,
            self.length_field, self.header_json, self.header_json_signed, self.random_bytes,
            self.resigned,
        ]  # fmt: skip

    def __call__(self) -> bytes:
        seed = self.rng.choice(self.w.seeds)
        data = self.rng.choice(self.mutators)(seed)
        if self.rng.random() < 0.2:  # stack a second mutation now and then
            data = self.rng.choice(self.mutators)(data)
        return data

    def flip(self, env: bytes) -> bytes:
        b = bytearray(env)
        for _ in range(self.rng.randint(1, 8)):
            if b:
                b[self.rng.randrange(len(b))] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def extreme(self, env: bytes) -> bytes:
        b = bytearray(env)
        if b:
            b[self.rng.randrange(len(b))] = self.rng.choice((0, 0xFF, 0x7F, 0x80))
        return bytes(b)

    def truncate(self, env: bytes) -> bytes:
        return env[: self.rng.randrange(len(env) + 1)]

    def extend(self, env: bytes) -> bytes:
        return env + self.rng.randbytes(self.rng.choice((1, 7, 64, 1000)))

    def splice(self, env: bytes) -> bytes:
        other = self.rng.choice(self.w.seeds)
        return env[: self.rng.randrange(len(env) + 1)] + other[self.rng.randrange(len(other) + 1) :]

    def length_field(self, env: bytes) -> bytes:
        b = bytearray(env)
        if len(b) < 11:
            return bytes(b)
        where = self.rng.choice(
            (5, 9 + struct.unpack_from(">I", b, 5)[0], self.rng.randrange(len(b) - 4))
        )
        value = self.rng.choice((0, 1, 2**16 - 1, 2**32 - 1, len(b), self.rng.randrange(2**32)))
        size = self.rng.choice((2, 4))
        if where + size <= len(b):
            b[where : where + size] = (value % (1 << (8 * size))).to_bytes(size, "big")
        return bytes(b)

    def _reframe(self, env: bytes, header: bytes, *, signed: bool) -> bytes:
        try:
            _, rest = _frame(env)
        except struct.error:
            return env
        body = env[:5] + struct.pack(">I", len(header)) + header + rest
        if not signed:
            return body + env[-64:]
        sender = self.rng.choice(sorted(self.w.signing))
        return body + self.w.signing[sender].sign(SIG_CONTEXT + body)

    def _header(self, env: bytes) -> bytes:
        try:
            header_bytes, _ = _frame(env)
            value = json.loads(header_bytes)
        except (struct.error, ValueError, UnicodeDecodeError):
            value = {}
        mutated = _mutate_json(value, self.rng)
        if self.rng.random() < 0.5:
            return canonical_json_of(mutated)
        return json.dumps(mutated).encode()

    def header_json(self, env: bytes) -> bytes:
        return self._reframe(env, self._header(env), signed=False)

    def header_json_signed(self, env: bytes) -> bytes:
        return self._reframe(env, self._header(env), signed=True)

    def resigned(self, env: bytes) -> bytes:
        """A byte of the body (wrapped keys, ciphertext, ...) changed, then signed again
        by the sender: past the signature, into decryption and the payload checks."""
        if len(env) < 80:
            return env
        body = bytearray(env[:-64])
        start = 9 + min(struct.unpack_from(">I", body, 5)[0], len(body) - 10)
        at = self.rng.randrange(max(start, 0), len(body))
        body[at] ^= 1 << self.rng.randrange(8)
        signer = self.w.signing.get(self._sender(env), self.w.signing["de.hotline"])
        return bytes(body) + signer.sign(SIG_CONTEXT + bytes(body))

    def _sender(self, env: bytes) -> str:
        try:
            return str(json.loads(_frame(env)[0]).get("sender", ""))
        except (struct.error, ValueError, UnicodeDecodeError, AttributeError):
            return ""

    def random_bytes(self, _env: bytes) -> bytes:
        if self.rng.random() < 0.5:
            return b"CRBE\x01" + self.rng.randbytes(self.rng.randrange(200))
        return self.rng.randbytes(self.rng.randrange(300))


def canonical_json_of(value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return b"{}"


@dataclass
class Crasher:
    data: bytes
    stage: str
    error: str


def check(w: World, data: bytes) -> Crasher | None:
    """Run one input through every stage; a crasher if anything but the documented
    refusal happens, or if it is slow."""
    directory = w.fed.directory()
    started = time.perf_counter()
    stage = "parse"
    try:
        try:
            parsed = parse(data)
        except EnvelopeError:
            parsed = None
        stage = "verify"
        if parsed is not None:
            with contextlib.suppress(EnvelopeError):
                verify(parsed, directory=directory, now=NOW, expected_sender=parsed.header.sender)
            stage = "open"
            for pid in parsed.header.recipients[:3]:
                key = w.keys.get(pid)
                with contextlib.suppress(EnvelopeError):
                    open_envelope(parsed, recipient=pid, opening_keys=[key] if key else [],
                                  directory=directory, now=NOW)  # fmt: skip
        stage = "decide"
        decide(
            Record(NAMES.outbox("de.hotline"), 0, 1, b"k", data), now=NOW, directory=directory,
            names=NAMES, seen=w.seen, limits=Limits(),
        )  # fmt: skip
    except Exception as exc:
        return Crasher(data, stage, "".join(traceback.format_exception_only(exc)).strip())
    if time.perf_counter() - started > SLOW_S:
        return Crasher(data, "time", f"took over {SLOW_S} s")
    return None


def save(c: Crasher) -> Path:
    CORPUS.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(c.data).hexdigest()[:16]
    (CORPUS / f"{name}.bin").write_bytes(c.data)
    (CORPUS / f"{name}.json").write_text(json.dumps({"stage": c.stage, "error": c.error}) + "\n")
    return CORPUS / f"{name}.bin"


def run(count: int, seed: int, *, keep: bool = True) -> dict[str, Any]:
    w = world()
    fuzz = Fuzzer(w, seed)
    crashers: list[Crasher] = []
    started = time.perf_counter()
    for _ in range(count):
        found = check(w, fuzz())
        if found is not None:
            crashers.append(found)
            if keep:
                save(found)
    elapsed = time.perf_counter() - started
    return {
        "inputs": count,
        "seconds": elapsed,
        "per_s": count / elapsed,
        "crashers": [{"stage": c.stage, "error": c.error.splitlines()[-1]} for c in crashers],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_envelope", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--coverage", action="store_true", help="line coverage of keys/_envelope.py"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.coverage:
        # Measured from the process start, so that the module's own definitions
        # count: the same run again under coverage.py.
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / ".coverage"
            base = [sys.executable, "-m", "coverage"]
            rest = ["--count", str(args.count), "--seed", str(args.seed)]
            subprocess.run(
                [*base, "run", f"--data-file={data}", "--include=*/keys/_envelope.py",
                 "-m", "bench.fuzz_envelope", *rest, "--json"],
                check=False, cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
            report = subprocess.run(
                [*base, "json", f"--data-file={data}", "-o", "-"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        percent = json.loads(report.stdout)["totals"]["percent_covered"]
        print(f"keys/_envelope.py line coverage {percent:.1f}%")
        return 0
    result = run(args.count, args.seed)
    covered = result.get("envelope_line_coverage_percent")
    line = f"{result['inputs']} inputs in {result['seconds']:.0f} s ({result['per_s']:.0f}/s), "
    line += f"{len(result['crashers'])} crashers"
    if covered is not None:
        line += f", keys/_envelope.py line coverage {covered}%"
    print(line)
    if args.json:
        print(json.dumps(result))
    return 1 if result["crashers"] else 0


if __name__ == "__main__":
    sys.exit(main())
