"""The hostile-record corpus: one entry per class of attack on the router's Kafka edge.

Each :class:`HostileClass` says what the attacker tries, how to build the record
(and its Kafka metadata: who produces it, where, key, headers, CreateTime,
compression, inside an aborted transaction) from a :class:`Kit` — a federation whose
keys are generated at test time, and its valid envelopes — and what must happen:

- :class:`DeadLetter`: the router dead-letters it with exactly this ``crb-reason``;
- :class:`KafkaRefused`: Kafka itself refuses the produce (an ACL, a failed login,
  the topic's ``max.message.bytes``, ``log.message.timestamp.after.max.ms``): the
  plumbing's error type and the broker's error, by aiokafka's class name;
- :class:`DroppedUncommitted`: produced in a transaction that is then aborted —
  never forwarded and never dead-lettered (a ``read_committed`` router never sees it).

Nothing may reach an inbox. ``CORPUS.md`` lists the table for readers (a unit test
keeps the two in step). The attacks are written from ``schemas/ENVELOPE.md`` as an
outsider would: bytes are cut, spliced and re-signed here, not through ``keys``.

The router is expected to have forwarded :attr:`Kit.primer` before the corpus is
produced (replays and replies need an original) and to run with a ``redelivery_min``
longer than the test (``REDELIVERY_MIN``), so a re-seal of the primer is never an
authorised redelivery.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from uuid import UUID

from adapters import ReceivedMessage, case_ack_for, receipt_for
from adapters.kafka import TRACKER, AccessDenied, RecordTooLarge, Refused, TransportError
from keys import STATUS_CONTEXT, Draft, OpeningKey, SigningKey, parse, record_for, seal
from keys._envelope import MAGIC, SIG_CONTEXT
from keys.testing import Federation, MemberSpec, synthetic_referral
from schemas import (
    Accepted,
    Category,
    Directory,
    KeyKind,
    ParticipantStatus,
    Priority,
    PublicKeyRecord,
    Reason,
    Role,
    ServiceRole,
    canonical_json_of,
    uuid7,
)
from tests._fed import RULES

__all__ = [
    "CORPUS",
    "MAX_ENVELOPE",
    "REDELIVERY_MIN",
    "Attempt",
    "DeadLetter",
    "DroppedUncommitted",
    "HostileClass",
    "KafkaRefused",
    "Kit",
    "Outcome",
    "Target",
]

MAX_ENVELOPE: Final = 1 << 20
"""The router's envelope limit (``router.max_envelope_bytes``, default)."""
TOPIC_MAX: Final = (1 << 20) + (64 << 10)
"""Outboxes' ``max.message.bytes`` (``topics.message_max_bytes``, default)."""
REDELIVERY_MIN: Final = timedelta(hours=1)
"""The router's ``redelivery_min`` in the hostile test: longer than the test runs."""
CASE_KEY: Final = b"019a0000-0000-7000-8000-000000000000"
"""The Kafka key of records that carry no envelope of their own (a case id's shape)."""
ED25519_L: Final = 2**252 + 27742317777372353535851937790883648493
"""The order of the Ed25519 group: ``S + L`` is the malleable twin of ``S``."""

MEMBERS: Final = (
    MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
    MemberSpec("de.police", "DE", (Role.POLICE,)),
    MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
    MemberSpec("nl.police", "NL", (Role.POLICE,)),
    MemberSpec("be.hotline", "BE", (Role.HOTLINE,)),
    MemberSpec("ch.hotline", "CH", (Role.HOTLINE,)),
    MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
)
"""``be.hotline`` is suspended in the router's directory (so has no Kafka login) and
``ch.hotline`` is not in it at all; both were active when they sealed."""
PARTICIPANTS: Final = tuple(m.participant_id for m in MEMBERS if m.participant_id != "ch.hotline")
"""The participants of the router's directory (each has an outbox and an inbox)."""


# -- expected outcomes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Dead-lettered with ``crb-reason`` = ``reason``."""

    reason: Reason
    truncated: bool = False
    """The dead letter's value is the truncated form (size, digest, first bytes)."""
    key_truncated: bool = False
    """The dead letter's key is cut to its first 4096 bytes."""

    def describe(self) -> str:
        extra = (", value truncated" if self.truncated else "") + (
            ", key truncated" if self.key_truncated else ""
        )
        return f"dead_letter `{self.reason.value}`{extra}"


@dataclass(frozen=True, slots=True)
class KafkaRefused:
    """Kafka refuses the produce: ``error`` in the plumbing's tree, ``kafka_error``
    the aiokafka exception (the broker's error code) behind it."""

    error: type[TransportError]
    kafka_error: str

    def describe(self) -> str:
        return f"kafka_refused {self.error.__name__} ({self.kafka_error})"


@dataclass(frozen=True, slots=True)
class DroppedUncommitted:
    """Produced in a transaction that is aborted: never forwarded, never dead-lettered."""

    def describe(self) -> str:
        return "dropped_uncommitted"


Outcome = DeadLetter | KafkaRefused | DroppedUncommitted


# -- what an attempt produces -----------------------------------------------------------

TopicKind = Literal["outbox", "inbox", "audit", "dlq"]
Transaction = Literal["router", "redrive"]
"""Whose transactional id the attempt uses: the router's for the target partition,
or the tracker's redrive id (the one non-router writer of outboxes)."""


@dataclass(frozen=True, slots=True)
class Target:
    """The topic an attempt writes: a participant's outbox or inbox, or a shared one."""

    kind: TopicKind
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One record and its Kafka metadata, as the attacker produces it."""

    principal: str
    """Whose Kafka login produces it (a participant id, or ``crb-tracker``)."""
    target: Target
    value: bytes | None
    key: bytes | None = CASE_KEY
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None
    """The CreateTime the producer claims (``None``: the producer's clock)."""
    compression: Literal["gzip"] | None = None
    transaction: Transaction | None = None
    """Produce inside a transaction with this id, then abort it."""

    def shape(self, now: datetime) -> tuple[object, ...]:
        """Everything but the random bytes: who, where, sizes, header names and sizes,
        CreateTime relative to ``now``, compression, transaction."""
        return (
            self.principal,
            self.target,
            None if self.value is None else len(self.value),
            None if self.key is None else len(self.key),
            tuple((n, None if v is None else len(v)) for n, v in self.headers),
            None if self.timestamp_ms is None else self.timestamp_ms - _ms(now),
            self.compression,
            self.transaction,
        )


def raw_key(raw: bytes) -> str:
    """A header key that aiokafka's pure-Python builder writes as the bytes ``raw``
    (Kafka keeps header keys as bytes; aiokafka only sends UTF-8 text)."""

    class _RawKey(str):
        __slots__ = ()

        def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
            return raw

    return _RawKey("x")


def batch_builder() -> Any:
    """aiokafka's pure-Python v2 batch builder (the one :func:`raw_key` works with)."""
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    return _DefaultRecordBatchBuilderPy(
        2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0,
        batch_size=1 << 20,
    )  # fmt: skip


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# -- envelope surgery, from the byte layout of ENVELOPE.md section 4 --------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def _lp16(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


@dataclass(frozen=True, slots=True)
class Parts:
    """An envelope cut along its layout; put back together (and re-signed) at will."""

    header: bytes
    wrapped: bytes
    """The u16 count and every wrapped key, as on the wire."""
    ciphertext: bytes
    signature: bytes

    @classmethod
    def of(cls, envelope: bytes) -> Parts:
        (n,) = _U32.unpack_from(envelope, 5)
        pos = 9 + n
        start = pos
        (count,) = _U16.unpack_from(envelope, pos)
        pos += 2
        for _ in range(count):
            for field in range(5):
                if field == 2:  # the KEM id, a bare u16
                    pos += 2
                    continue
                (length,) = _U16.unpack_from(envelope, pos)
                pos += 2 + length
        wrapped = envelope[start:pos]
        (c,) = _U32.unpack_from(envelope, pos)
        ciphertext = envelope[pos + 4 : pos + 4 + c]
        return cls(envelope[9 : 9 + n], wrapped, ciphertext, envelope[-64:])

    def body(self, *, magic: bytes = MAGIC, version: int = 1) -> bytes:
        return (
            magic
            + bytes([version])
            + _U32.pack(len(self.header))
            + self.header
            + self.wrapped
            + _U32.pack(len(self.ciphertext))
            + self.ciphertext
        )

    def unsigned(self, *, magic: bytes = MAGIC, version: int = 1) -> bytes:
        """The parts with the signature they came with (no longer over these bytes)."""
        return self.body(magic=magic, version=version) + self.signature

    def signed(self, key: SigningKey) -> bytes:
        """The parts signed again with ``key`` (the sender's, or an attacker's)."""
        body = self.body()
        return body + key.sign(SIG_CONTEXT + body)

    def doc(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.header)
        return parsed

    def with_doc(self, doc: dict[str, object]) -> Parts:
        """These parts with the header ``doc`` in canonical JSON."""
        return replace(self, header=canonical_json_of(doc))


def _wrapped(entries: list[tuple[bytes, bytes, int, bytes, bytes]]) -> bytes:
    """A wrapped-key block of (recipient, key id, KEM id, enc, ct) entries."""
    out = _U16.pack(len(entries))
    for rid, kid, kem, enc, ct in entries:
        out += _lp16(rid) + _lp16(kid) + _U16.pack(kem) + _lp16(enc) + _lp16(ct)
    return out


def _first_kem_offset(envelope: bytes) -> int:
    """Where the first wrapped key's KEM id sits."""
    (n,) = _U32.unpack_from(envelope, 5)
    pos = 9 + int(n) + 2
    for _ in range(2):
        (length,) = _U16.unpack_from(envelope, pos)
        pos += 2 + int(length)
    return pos


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _malleable(signature: bytes) -> bytes:
    """The Ed25519 signature ``R || S+L``: verifies under a lax (ZIP-215) verifier."""
    s = int.from_bytes(signature[32:], "little") + ED25519_L
    return signature[:32] + s.to_bytes(32, "little")


# -- the kit: a federation and its envelopes -----------------------------------------------


class Kit:
    """What the corpus is built from: a federation with keys generated now, the
    directory the router uses, a directory that was valid when things were sealed, an
    attacker's keys, and the valid referrals the test forwards around the corpus."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.fed = Federation(
            MEMBERS,
            not_before=now - timedelta(days=30),
            not_after=now + timedelta(days=335),
            rules=RULES,
        )
        self.attacker = SigningKey.generate()
        """A signing key no directory lists."""
        self.attacker_opening = OpeningKey.generate()
        """An encryption key the attacker holds, passed off as nl.hotline's."""
        self.revoked = SigningKey.generate()
        """de.hotline's old signing key, revoked an hour ago (stolen, say)."""
        self.expired = SigningKey.generate()
        """de.hotline's signing key that ended yesterday."""
        published = self.fed.directory()
        self.sealing = _with_keys(
            published,
            "de.hotline",
            record_for(
                self.revoked.verify_key,
                not_before=self.fed.not_before,
                not_after=self.fed.not_after,
            ),
            record_for(
                self.expired.verify_key,
                not_before=self.fed.not_before,
                not_after=self.fed.not_after,
            ),
        )
        """Everyone active and every key valid: the world as it was when sealing."""
        self.directory = _router_directory(self.sealing, self, now)
        """The router's directory: ch.hotline absent, be.hotline suspended, de.hotline's
        old key revoked and its other extra key expired."""
        self.primer = self.referral()
        """Forwarded before the corpus (its replays and the replies need it)."""
        self.final = self.referral()
        """Sent after the whole corpus: must still be forwarded, once."""

    # -- sealing ------------------------------------------------------------------------
    def referral(
        self,
        *,
        sender: str = "de.hotline",
        jurisdiction: str = "NL",
        at: datetime | None = None,
        key: SigningKey | None = None,
        recipients: tuple[str, ...] = (),
        directory: Directory | None = None,
        message_id: UUID | None = None,
        escalation_of: UUID | None = None,
    ) -> bytes:
        """A referral sealed with the sealing directory (same size every time)."""
        at = at or self.now
        referral = synthetic_referral(
            rng=random.Random(0),
            jurisdiction=jurisdiction,
            category=Category.CSAM,
            priority=Priority.ROUTINE,
        )
        draft = Draft.for_referral(
            referral,
            sender=sender,
            jurisdiction=jurisdiction,
            case_id=uuid7(at),
            recipients=recipients,
            message_id=message_id,
            escalation_of=escalation_of,
        )
        return seal(
            draft,
            referral,
            signing_key=key or self.fed.signing(sender),
            directory=directory or self.sealing,
            now=at,
        )

    def received(self, original: bytes, *, by: str) -> ReceivedMessage:
        digest = hashlib.sha256(original).hexdigest()
        return ReceivedMessage.of(parse(original).header, recipient=by, digest=digest)

    def receipt(self, original: bytes, *, by: str) -> bytes:
        """``by``'s receipt for ``original``, made by the adapter's own code."""
        draft, receipt = receipt_for(self.received(original, by=by), received_at=self.now)
        return seal(
            draft, receipt, signing_key=self.fed.signing(by), directory=self.sealing, now=self.now
        )

    def case_ack(self, original: bytes, *, by: str, to: str) -> bytes:
        """``by``'s case acknowledgement of ``original``, addressed to ``to``."""
        received = self.received(original, by=by)
        draft, ack = case_ack_for(received, Accepted(receiver_reference="NL-1"), now=self.now)
        draft = replace(draft, recipients=(to,))
        return seal(
            draft, ack, signing_key=self.fed.signing(by), directory=self.sealing, now=self.now
        )

    def primer_id(self) -> UUID:
        return parse(self.primer).header.message_id

    def case_key(self, envelope: bytes) -> bytes:
        """The case id its header names, as adapters key records; :data:`CASE_KEY`
        when the bytes are too broken to say."""
        try:
            case_id = Parts.of(envelope).doc()["case_id"]
        except (struct.error, ValueError, KeyError, TypeError, RecursionError):
            return CASE_KEY
        return str(case_id).encode()

    # -- attempts -----------------------------------------------------------------------
    def outbox(
        self,
        value: bytes | None,
        *,
        by: str = "de.hotline",
        owner: str | None = None,
        key: bytes | None = CASE_KEY,
        headers: tuple[tuple[str, bytes | None], ...] = (),
        timestamp_ms: int | None = None,
        compression: Literal["gzip"] | None = None,
    ) -> Attempt:
        """``by`` writes ``value`` into ``owner``'s outbox (its own by default)."""
        return Attempt(
            by, Target("outbox", owner or by), value, key, headers, timestamp_ms, compression
        )

    def envelope(self, envelope: bytes, *, by: str = "de.hotline") -> Attempt:
        """An envelope in ``by``'s own outbox, keyed by its case id as adapters do."""
        return self.outbox(envelope, by=by, key=self.case_key(envelope))

    def ms(self, delta: timedelta = timedelta()) -> int:
        return _ms(self.now + delta)


def _with_keys(directory: Directory, participant_id: str, *records: PublicKeyRecord) -> Directory:
    data = directory.model_dump()
    for p in data["participants"]:
        if p["participant_id"] == participant_id:
            p["keys"] = [*p["keys"], *(r.model_dump() for r in records)]
    return Directory.model_validate(data)


def _router_directory(sealing: Directory, kit: Kit, now: datetime) -> Directory:
    data = sealing.model_dump()
    data["participants"] = [p for p in data["participants"] if p["participant_id"] != "ch.hotline"]
    for p in data["participants"]:
        if p["participant_id"] == "be.hotline":
            p["status"] = ParticipantStatus.SUSPENDED
        if p["participant_id"] == "de.hotline":
            for k in p["keys"]:
                if k["key_id"] == kit.revoked.key_id:
                    k["revoked_at"] = now - timedelta(hours=1)
                if k["key_id"] == kit.expired.key_id:
                    k["not_after"] = now - timedelta(days=1)
    return Directory.model_validate(data)


def _substituted(kit: Kit) -> Directory:
    """The sealing directory with nl.hotline's encryption key swapped for the attacker's."""
    data = kit.sealing.model_dump()
    for p in data["participants"]:
        if p["participant_id"] == "nl.hotline":
            p["keys"] = [k for k in p["keys"] if k["kind"] != KeyKind.ENCRYPTION] + [
                record_for(
                    kit.attacker_opening.sealing_key,
                    not_before=kit.fed.not_before,
                    not_after=kit.fed.not_after,
                ).model_dump()
            ]
    return Directory.model_validate(data)


# -- builders that take more than a line ------------------------------------------------------


def _resigned(kit: Kit, edit: Callable[[dict[str, object]], object]) -> Attempt:
    """A fresh envelope whose header ``edit`` changed, signed again by its real sender."""
    env = kit.referral()
    parts = Parts.of(env)
    doc = parts.doc()
    edit(doc)
    return kit.envelope(parts.with_doc(doc).signed(kit.fed.signing("de.hotline")))


def _raw_header(kit: Kit, header: bytes) -> Attempt:
    """A fresh envelope with ``header`` bytes as they are, signed by its real sender."""
    parts = replace(Parts.of(kit.referral()), header=header)
    return kit.envelope(parts.signed(kit.fed.signing("de.hotline")))


def _duplicate_keys(kit: Kit) -> Attempt:
    canonical = Parts.of(kit.referral()).header
    # Two "sender" members: parsers differ on which one wins.
    twice = canonical.replace(
        b'"sender":"de.hotline"', b'"sender":"nl.hotline","sender":"de.hotline"'
    )
    return _raw_header(kit, twice)


def _too_many_recipients(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    doc = parts.doc()
    ids = [f"nl.r{i:03d}" for i in range(65)]
    doc["recipients"] = ids
    wrapped = _wrapped(
        [(r.encode(), b"x25519-0000000000000000", 0x20, bytes(32), bytes(48)) for r in ids]
    )
    parts = replace(parts.with_doc(doc), wrapped=wrapped)
    return kit.envelope(parts.signed(kit.fed.signing("de.hotline")))


def _confusable_recipient(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    doc = parts.doc()
    doc["recipients"] = ["nl.hotl\u0456ne"]  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    return kit.envelope(parts.with_doc(doc).signed(kit.fed.signing("de.hotline")))


def _lying_header_length(kit: Kit) -> Attempt:
    env = kit.referral()
    return kit.envelope(env[:5] + b"\xff\xff\xff\xff" + env[9:])


def _unknown_kem(kit: Kit) -> Attempt:
    env = bytearray(kit.referral())
    _U16.pack_into(env, _first_kem_offset(bytes(env)), 0x0010)  # DHKEM(P-256): not ours
    return kit.envelope(bytes(env))


def _short_wrapped_ct(kit: Kit) -> Attempt:
    env = kit.referral()
    parts = Parts.of(env)
    w = parse(env).wrapped_keys[0]
    wrapped = _wrapped([(w.recipient.encode(), w.key_id.encode(), 0x20, w.enc, w.ct[:-1])])
    return kit.envelope(replace(parts, wrapped=wrapped).signed(kit.fed.signing("de.hotline")))


def _oversized(kit: Kit) -> Attempt:
    env = kit.referral()
    return kit.envelope(env + bytes(MAX_ENVELOPE + 1 - len(env)))


def _recipients_resigned_by_attacker(kit: Kit) -> Attempt:
    env = kit.referral()
    parts = Parts.of(env)
    doc = parts.doc()
    doc["recipients"] = ["nl.hotline", "nl.police"]
    doc["sender_key_id"] = kit.attacker.key_id
    police = kit.fed.opening("nl.police").sealing_key.key_id.encode()
    w = parse(env).wrapped_keys[0]
    wrapped = _wrapped(
        [
            (b"nl.hotline", w.key_id.encode(), 0x20, w.enc, w.ct),
            (b"nl.police", police, 0x20, bytes(32), bytes(48)),
        ]
    )
    return kit.envelope(replace(parts.with_doc(doc), wrapped=wrapped).signed(kit.attacker))


def _wrong_key_real_id(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    doc = parts.doc()
    doc["priority"] = "high"  # what the attacker wanted to change
    return kit.envelope(parts.with_doc(doc).signed(kit.attacker))


def _encryption_key_as_signing_key(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    doc = parts.doc()
    doc["sender_key_id"] = kit.fed.opening("de.hotline").sealing_key.key_id
    return kit.envelope(parts.with_doc(doc).signed(kit.fed.signing("de.hotline")))


def _header_edit(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    edited = parts.header.replace(b'"jurisdiction":"NL"', b'"jurisdiction":"DE"')
    return kit.envelope(replace(parts, header=edited).unsigned())


def _ciphertext_flip(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    return kit.envelope(replace(parts, ciphertext=_flip(parts.ciphertext, 10)).unsigned())


def _malleated(kit: Kit) -> Attempt:
    parts = Parts.of(kit.referral())
    return kit.envelope(replace(parts, signature=_malleable(parts.signature)).unsigned())


def _payload_swap(kit: Kit) -> Attempt:
    a, b = Parts.of(kit.referral()), Parts.of(kit.referral())
    return kit.envelope(replace(a, ciphertext=b.ciphertext).unsigned())


def _splice(kit: Kit) -> Attempt:
    a, b = Parts.of(kit.referral()), Parts.of(kit.referral())
    # A's header; B's wrapped keys, ciphertext and (valid, for B) signature.
    return kit.envelope(replace(b, header=a.header).unsigned())


def _notice(kit: Kit) -> Attempt:
    notice = canonical_json_of(
        {
            "kind": "already_referred",
            "to": "nl.hotline",
            "case_id": str(uuid7(kit.now)),
            "at": kit.now.isoformat(),
            "first_referred_by": "de.police",
        }
    )
    tracker = kit.fed.signer(ServiceRole.TRACKER).key_id.encode()
    return kit.outbox(
        notice,
        headers=(
            ("crb-record", b"notice"),
            ("crb-signer", tracker),
            ("crb-signature", base64.b64encode(bytes(64))),
        ),
    )


def _status(kit: Kit) -> Attempt:
    event = canonical_json_of(
        {
            "message_id": str(kit.primer_id()),
            "state": "received",
            "sender": "de.hotline",
            "recipient": "nl.hotline",
            "at": kit.now.isoformat(),
        }
    )
    router = kit.fed.signer(ServiceRole.ROUTER).key_id.encode()
    return kit.outbox(
        event,
        headers=(
            ("crb-state", b"received"),
            ("crb-signer", router),
            ("crb-signature", base64.b64encode(kit.attacker.sign(STATUS_CONTEXT + event))),
        ),
    )


def _forged_audit(kit: Kit) -> Attempt:
    doc = canonical_json_of(
        {
            "chain": "outbox.de.hotline/0",
            "seq": 99,
            "verdict": "forwarded",
            "source_offset": 10**9,
            "message_id": str(uuid7(kit.now)),
        }
    )
    return Attempt("de.hotline", Target("audit"), doc)


def _planted_dead_letter(kit: Kit) -> Attempt:
    forged = Parts.of(kit.referral())
    headers: tuple[tuple[str, bytes | None], ...] = (
        ("crb-reason", b"unknown_sender"),  # a redrivable reason
        ("crb-source-topic", b"outbox.nl.hotline"),
    )
    return Attempt("de.hotline", Target("dlq"), forged.signed(kit.attacker), CASE_KEY, headers)


# -- the table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostileClass:
    """One class of attack: its name, what the attacker tries, how to build the
    record from a :class:`Kit`, and what must happen to it."""

    name: str
    attack: str
    build: Callable[[Kit], Attempt]
    expected: Outcome


H = HostileClass
DL = DeadLetter
R = Reason
DENIED_TOPIC: Final = KafkaRefused(AccessDenied, "TopicAuthorizationFailedError")

# fmt: off
CORPUS: Final[tuple[HostileClass, ...]] = (
    # -- framing: bytes that are not an envelope --------------------------------------------
    H("empty_value", "a record with a zero-length value",
      lambda k: k.outbox(b""), DL(R.MALFORMED)),
    H("tombstone", "a null value (a tombstone) with a key",
      lambda k: k.outbox(None), DL(R.MALFORMED)),
    H("one_byte", "a single byte",
      lambda k: k.outbox(b"C"), DL(R.MALFORMED)),
    H("wrong_magic", "a valid envelope whose magic says CRBX",
      lambda k: k.envelope(b"CRBX" + k.referral()[4:]), DL(R.MALFORMED)),
    H("future_format_version", "a valid envelope claiming format version 2",
      lambda k: k.envelope(Parts.of(k.referral()).unsigned(version=2)),
      DL(R.UNSUPPORTED_VERSION)),
    H("truncated_in_header", "a valid envelope cut in the middle of its header JSON",
      lambda k: k.envelope(k.referral()[:300]), DL(R.MALFORMED)),
    H("truncated_signature", "a valid envelope missing its last signature byte",
      lambda k: k.envelope(k.referral()[:-1]), DL(R.MALFORMED)),
    H("trailing_byte", "a valid envelope with one byte appended",
      lambda k: k.envelope(k.referral() + b"\x00"), DL(R.MALFORMED)),
    H("lying_header_length", "the header length field set to 2^32-1",
      _lying_header_length, DL(R.MALFORMED)),
    H("unknown_kem", "a wrapped key naming an HPKE KEM the format does not have (P-256)",
      _unknown_kem, DL(R.UNSUPPORTED_VERSION)),
    H("short_wrapped_key", "a wrapped content key one byte short, re-signed by the sender",
      _short_wrapped_ct, DL(R.MALFORMED)),
    # -- the header: JSON the sender signed but must not be believed ---------------------------
    H("header_schema_v2", "header schema_version 2, re-signed by the sender",
      lambda k: _resigned(k, lambda d: d.update(schema_version=2)),
      DL(R.UNSUPPORTED_VERSION)),
    H("header_not_canonical", "the same header pretty-printed, re-signed by the sender",
      lambda k: _raw_header(k, json.dumps(Parts.of(k.referral()).doc(), indent=1).encode()),
      DL(R.MALFORMED)),
    H("header_unknown_field", "an extra header member (`via`), re-signed by the sender",
      lambda k: _resigned(k, lambda d: d.update(via="nl.police")), DL(R.MALFORMED)),
    H("header_duplicate_member", "`sender` twice in the header JSON (parser differential)",
      _duplicate_keys, DL(R.MALFORMED)),
    H("header_json_bomb", "a header of 100 000 nested JSON arrays",
      lambda k: _raw_header(k, b"[" * 100_000 + b"]" * 100_000), DL(R.MALFORMED)),
    H("too_many_recipients", "65 recipients with a wrapped key each (fan-out amplification)",
      _too_many_recipients, DL(R.MALFORMED)),
    H("confusable_recipient", "nl.hotline spelt with a Cyrillic i as the recipient, re-signed",
      _confusable_recipient, DL(R.MALFORMED)),
    # -- size and compression ----------------------------------------------------------------
    H("oversized_envelope", "1 MiB + 1 byte: over the envelope limit, under the topic's",
      _oversized, DL(R.TOO_LARGE)),
    H("over_topic_limit", "a record over the outbox's max.message.bytes",
      lambda k: k.outbox(bytes(TOPIC_MAX + (64 << 10))),
      KafkaRefused(RecordTooLarge, "MessageSizeTooLargeError")),
    H("gzip_value_bomb", "16 MiB of zeros gzip-compressed to a few KiB (decompression bomb)",
      lambda k: k.outbox(bytes(16 << 20), compression="gzip"),
      DL(R.TOO_LARGE, truncated=True)),
    H("gzip_key_bomb", "a 3 MiB Kafka key of zeros, gzip-compressed, on garbage",
      lambda k: k.outbox(b"not an envelope", key=bytes(3 << 20), compression="gzip"),
      DL(R.MALFORMED, key_truncated=True)),
    # -- who writes where: ACLs and outbox ownership ----------------------------------------
    H("wrong_outbox", "nl.hotline puts de.hotline's valid envelope in its own outbox",
      lambda k: k.envelope(k.referral(), by="nl.hotline"), DL(R.WRONG_OUTBOX)),
    H("foreign_outbox", "de.hotline writes into nl.hotline's outbox",
      lambda k: k.outbox(k.referral(), owner="nl.hotline"), DENIED_TOPIC),
    H("direct_inbox", "de.hotline writes a valid envelope straight into nl.hotline's inbox",
      lambda k: Attempt("de.hotline", Target("inbox", "nl.hotline"), k.referral()),
      DENIED_TOPIC),
    H("forged_audit_record", "de.hotline appends a forwarded-looking audit record",
      _forged_audit, DENIED_TOPIC),
    H("planted_dead_letter", "de.hotline plants a redrivable dead letter for the tracker",
      _planted_dead_letter, DENIED_TOPIC),
    H("suspended_login", "be.hotline (suspended: no Kafka login) writes its own outbox",
      lambda k: k.envelope(k.referral(sender="be.hotline"), by="be.hotline"),
      KafkaRefused(AccessDenied, "SaslAuthenticationFailed")),
    H("router_transactional_id", "de.hotline takes the router's transactional id (to fence it)",
      lambda k: replace(k.envelope(k.referral()), transaction="router"),
      KafkaRefused(AccessDenied, "TransactionalIdAuthorizationFailed")),
    H("aborted_transaction", "a valid referral in a transaction that is aborted",
      lambda k: replace(k.envelope(k.referral()), principal=TRACKER, transaction="redrive"),
      DroppedUncommitted()),
    # -- identity, keys and signatures ----------------------------------------------------
    H("unknown_sender", "an envelope from ch.hotline, which the directory does not list",
      lambda k: k.envelope(k.referral(sender="ch.hotline")), DL(R.UNKNOWN_SENDER)),
    H("suspended_sender", "be.hotline's envelope, sealed while active, replayed by nl.hotline",
      lambda k: k.envelope(k.referral(sender="be.hotline"), by="nl.hotline"),
      DL(R.SENDER_SUSPENDED)),
    H("recipients_resigned", "nl.police added to the recipients, re-signed with an unknown key",
      _recipients_resigned_by_attacker, DL(R.UNKNOWN_KEY)),
    H("wrong_key_real_id", "priority raised, re-signed by an attacker under de.hotline's key id",
      _wrong_key_real_id, DL(R.BAD_SIGNATURE)),
    H("encryption_key_as_signing_key", "sender_key_id names de.hotline's encryption key",
      _encryption_key_as_signing_key, DL(R.UNKNOWN_KEY)),
    H("revoked_key", "signed with de.hotline's key revoked an hour ago",
      lambda k: k.envelope(k.referral(key=k.revoked)), DL(R.KEY_REVOKED)),
    H("expired_key", "signed with de.hotline's key that ended yesterday",
      lambda k: k.envelope(k.referral(key=k.expired)), DL(R.KEY_EXPIRED)),
    H("header_edit", "jurisdiction NL changed to DE in the signed header",
      _header_edit, DL(R.BAD_SIGNATURE)),
    H("ciphertext_bit_flip", "one bit of the payload ciphertext flipped",
      _ciphertext_flip, DL(R.BAD_SIGNATURE)),
    H("malleable_signature", "the signature's S replaced by S + L (accepted by lax verifiers)",
      _malleated, DL(R.BAD_SIGNATURE)),
    H("payload_swap", "the ciphertext of another valid envelope under this header",
      _payload_swap, DL(R.BAD_SIGNATURE)),
    H("splice", "one envelope's header on another's keys, ciphertext and signature",
      _splice, DL(R.BAD_SIGNATURE)),
    H("substituted_wrap_key", "sealed to an attacker key passed off as nl.hotline's",
      lambda k: k.envelope(k.referral(directory=_substituted(k))), DL(R.UNKNOWN_KEY)),
    # -- time and replay -------------------------------------------------------------------
    H("stale_fresh_timestamp", "sealed 3 days ago, with a Kafka CreateTime of now",
      lambda k: replace(k.envelope(k.referral(at=k.now - timedelta(days=3))),
                        timestamp_ms=k.ms()),
      DL(R.STALE)),
    H("future_dated", "sealed 2 hours in the future",
      lambda k: k.envelope(k.referral(at=k.now + timedelta(hours=2))), DL(R.FUTURE_DATED)),
    H("replay", "the forwarded primer, byte for byte, again",
      lambda k: k.envelope(k.primer), DL(R.DUPLICATE_MESSAGE)),
    H("replay_keyless", "the primer again without a Kafka key",
      lambda k: k.outbox(k.primer, key=None), DL(R.DUPLICATE_MESSAGE)),
    H("replay_negative_timestamp", "the primer again with CreateTime -10^12 (before 1970)",
      lambda k: replace(k.envelope(k.primer), timestamp_ms=-(10**12)),
      DL(R.DUPLICATE_MESSAGE)),
    H("replay_future_timestamp", "the primer again with CreateTime a day ahead",
      lambda k: replace(k.envelope(k.primer), timestamp_ms=k.ms(timedelta(days=1))),
      KafkaRefused(Refused, "InvalidTimestampError")),
    H("resealed_too_soon", "de.hotline seals the primer's id again at once",
      lambda k: k.envelope(k.referral(message_id=k.primer_id())), DL(R.DUPLICATE_MESSAGE)),
    H("message_id_hijack", "nl.hotline seals its own referral under the primer's id",
      lambda k: k.envelope(k.referral(sender="nl.hotline", jurisdiction="DE",
                                      message_id=k.primer_id()), by="nl.hotline"),
      DL(R.DUPLICATE_MESSAGE)),
    # -- replies and escalations -------------------------------------------------------------
    H("receipt_for_unsent", "nl.hotline's receipt for a referral never sent",
      lambda k: k.envelope(k.receipt(k.referral(), by="nl.hotline"), by="nl.hotline"),
      DL(R.UNKNOWN_ORIGINAL)),
    H("receipt_by_non_recipient", "de.police's receipt for the primer, sent to nl.hotline",
      lambda k: k.envelope(k.receipt(k.primer, by="de.police"), by="de.police"),
      DL(R.UNAUTHORISED)),
    H("case_ack_redirected", "nl.hotline's case decision on the primer, sent to the coordinator",
      lambda k: k.envelope(k.case_ack(k.primer, by="nl.hotline", to="int.coordinator"),
                           by="nl.hotline"),
      DL(R.UNAUTHORISED)),
    H("escalation_of_foreign", "nl.hotline escalates de.hotline's primer",
      lambda k: k.envelope(k.referral(sender="nl.hotline", escalation_of=k.primer_id()),
                           by="nl.hotline"),
      DL(R.UNAUTHORISED)),
    H("escalation_of_unknown", "de.hotline escalates a referral never forwarded",
      lambda k: k.envelope(k.referral(escalation_of=uuid7(k.now))), DL(R.UNKNOWN_ORIGINAL)),
    # -- routing ----------------------------------------------------------------------------
    H("extra_recipient", "de.hotline adds nl.police to a CSAM case the rules give nl.hotline",
      lambda k: k.envelope(k.referral(recipients=("nl.hotline", "nl.police"))),
      DL(R.RECIPIENT_MISMATCH)),
    H("to_suspended_recipient", "a BE case sealed to be.hotline, suspended since",
      lambda k: k.envelope(k.referral(jurisdiction="BE")), DL(R.RECIPIENT_MISMATCH)),
    # -- Kafka headers: claims outside the signed bytes --------------------------------------
    H("spoofed_notice", "a tracker deconfliction notice (crb-record: notice) in an outbox",
      _notice, DL(R.MALFORMED)),
    H("forged_status_event", "a router-signed-looking status event in an outbox",
      _status, DL(R.MALFORMED)),
    H("spoofed_router_headers", "the primer again with crb-reason/crb-sender/... headers set",
      lambda k: replace(k.envelope(k.primer), headers=(
          ("crb-reason", b"ok"), ("crb-sender", b"nl.hotline"),
          ("crb-message-type", b"case_ack"), ("crb-message-id", str(uuid7(k.now)).encode()),
          ("crb-source-topic", b"outbox.int.coordinator"), ("crb-truncated", b"1"),
      )),
      DL(R.DUPLICATE_MESSAGE)),
    H("traceparent_garbage", "a 64 KiB non-hex traceparent on a tampered envelope",
      lambda k: replace(_ciphertext_flip(k), headers=(("traceparent", b"00-" + b"z" * 65536),)),
      DL(R.BAD_SIGNATURE)),
    H("null_header_values", "traceparent and crb-record headers with null values",
      lambda k: k.outbox(b"\x00" * 100, headers=(("traceparent", None), ("crb-record", None))),
      DL(R.MALFORMED)),
    H("huge_header_value", "a 512 KiB header value on a stale envelope",
      lambda k: replace(k.envelope(k.referral(at=k.now - timedelta(days=2))),
                        headers=(("x-pad", bytes(512 << 10)),)),
      DL(R.STALE)),
    H("many_headers", "20 000 headers on one record",
      lambda k: k.outbox(b"CRBE\x01" + bytes(200), headers=(("h", b"1"),) * 20_000),
      DL(R.MALFORMED)),
    H("non_utf8_header_values", "header values that are not UTF-8, crb-record and traceparent",
      lambda k: k.outbox(b"\xff" * 100, headers=(
          ("crb-record", b"\xff\xfe"), ("traceparent", b"00-\xff\xfe\xfd"),
      )),
      DL(R.MALFORMED)),
)
# fmt: on
