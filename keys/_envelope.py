"""The sealed envelope: ``seal``, ``verify`` (router, no private key) and ``open``.

The byte format is specified in ``schemas/ENVELOPE.md`` (with committed vectors
in ``schemas/vectors/``); in short, all integers big-endian::

    "CRBE" 0x01
    u32 len || header            EnvelopeHeader.canonical_bytes() (JSON, UTF-8)
    u16 count                    one wrapped key per header recipient, same order
      { u16 len || recipient id, u16 len || key id, u16 kem id,
        u16 len || enc, u16 len || wrapped content key }
    u32 len || payload ciphertext
    64 bytes                     Ed25519 signature over
                                 "crb/envelope/v1 signature\\x00" || everything before it

Cryptography: a fresh 32-byte content key ``K`` per message; the payload under
ChaCha20-Poly1305 with key ``HMAC-SHA256(K, "crb/envelope/v1 payload key\\x00")``
and a zero nonce (the key is single-use), associated data binding sender,
message id and the whole header; ``K`` wrapped to each recipient with HPKE Base
mode, ``info`` binding sender, recipient and message id; the header carries the
key commitment ``HMAC-SHA256(K, "crb/envelope/v1 commitment\\x00" || lp(message id))``
that every recipient checks, so one envelope cannot open to different payloads
for different recipients.

The recipe is closed: callers never take an envelope apart themselves.
:func:`parse` checks size, framing, version and header once and keeps the digest
(a router or receiver may look at the *unverified* header, e.g. to find a
message id it already has); :func:`verify` and :func:`open` accept its result
(or the bytes) and never parse or hash again.

Checks, in order (each failure is one ``EnvelopeError`` whose ``reason`` is a
``schemas.Reason``): size -> framing/version -> header -> sender known -> sender
active -> the expected sender (``expected_sender``: whoever the transport says
sent it) -> signing key (known, not revoked, valid) -> signature -> freshness ->
wrapped-key recipients; ``open`` then adds recipient -> opening key -> unwrap ->
commitment -> payload AEAD -> payload schema -> payload agrees with the header.
Nothing is decrypted before the signature has verified.

Randomness: ``seal`` draws the message id (when the draft has none) and the
content key from ``rng``; the HPKE ephemeral keys always come from the
operating system (``cryptography``'s HPKE). Only the vector generator
(``keys.vectors``) derives them from a seed, through :func:`_seal`.
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import pydantic

from keys import _primitives as P
from keys._directory import current_sealing_key, verify_key_of
from keys._errors import EnvelopeError, SealError
from keys._keys import Kem, KeyId, OpeningKey, SealingKey, SigningKey
from schemas import (
    PAYLOAD_MODELS,
    Category,
    DecisionKind,
    Deconfliction,
    Directory,
    EnvelopeHeader,
    HandlingCode,
    KeyKind,
    MessageType,
    Participant,
    Payload,
    Priority,
    Reason,
    Referral,
    RoutingError,
    RoutingRequest,
    canonical_json,
    payload_mismatches,
    resolve,
    uuid7,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "MAGIC",
    "Draft",
    "Limits",
    "Opened",
    "Parsed",
    "Rng",
    "VerifiedEnvelope",
    "WrappedKey",
    "open_envelope",
    "parse",
    "seal",
    "verify",
]

Rng = Callable[[int], bytes]
"""Randomness source, like ``os.urandom``: ``rng(n)`` returns ``n`` bytes."""

MAGIC: Final = b"CRBE"
FORMAT_VERSION: Final = 1
SIGNATURE_LEN: Final = 64
CONTENT_KEY_LEN: Final = 32
SIG_CONTEXT: Final = b"crb/envelope/v1 signature\x00"
WRAP_LABEL: Final = b"crb/envelope/v1 wrap\x00"
COMMIT_LABEL: Final = b"crb/envelope/v1 commitment\x00"
PAYLOAD_KEY_LABEL: Final = b"crb/envelope/v1 payload key\x00"
PAYLOAD_AAD_LABEL: Final = b"crb/envelope/v1 payload\x00"
PAYLOAD_NONCE: Final = bytes(12)
_MIN_LEN: Final = 5 + 4 + 2 + 4 + SIGNATURE_LEN
WRAPPED_CT_LEN: Final = CONTENT_KEY_LEN + 16
"""HPKE ciphertext of the content key: 32 bytes and the ChaCha20-Poly1305 tag."""
_ENC_LEN: Final = {Kem.X25519: 32, Kem.MLKEM768_X25519: 1120}
"""HPKE ``enc`` size per KEM (X25519 public key; ML-KEM-768 ciphertext + X25519)."""
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and freshness limits, enforced by ``verify`` and ``open``."""

    max_size: int = 1 << 20
    """Longest envelope accepted (and produced), in bytes; checked before parsing."""
    max_age: timedelta = timedelta(hours=24)
    """Oldest ``created_at`` accepted, relative to ``now``."""
    max_skew: timedelta = timedelta(minutes=5)
    """How far ``created_at`` may lie in the future (clock skew)."""


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, kw_only=True, slots=True)
class Draft:
    """The clear header a sender chooses; ``seal`` adds the rest.

    ``seal`` fills in ``created_at`` (``now``), ``sender_key_id`` (the signing
    key), ``key_commitment``, ``message_id`` when ``None`` (``uuid7(now, rng)``)
    and, for a referral with no ``recipients``, ``resolve(...)``'s recipients.
    """

    message_type: MessageType = MessageType.REFERRAL
    sender: str
    case_id: UUID
    jurisdiction: str
    category: Category
    priority: Priority
    handling_code: HandlingCode
    recipients: tuple[str, ...] = ()
    in_reply_to: UUID | None = None
    decision: DecisionKind | None = None
    """For a ``case_ack``: the kind of decision (clear in the header)."""
    message_id: UUID | None = None
    deconfliction: Deconfliction | None = None
    """For a referral: its keyed tags (:func:`keys.deconfliction_tags`)."""
    escalation_of: UUID | None = None
    """For a referral: the sender's earlier referral it escalates."""

    @classmethod
    def for_referral(
        cls,
        referral: Referral,
        *,
        sender: str,
        jurisdiction: str,
        case_id: UUID,
        recipients: tuple[str, ...] = (),
        message_id: UUID | None = None,
        deconfliction: Deconfliction | None = None,
        escalation_of: UUID | None = None,
    ) -> Draft:
        """The header of a referral: category, priority, handling code from it."""
        return cls(
            sender=sender,
            case_id=case_id,
            jurisdiction=jurisdiction,
            category=referral.incident.type,
            priority=referral.urgency.priority,
            handling_code=referral.handling.code,
            recipients=recipients,
            message_id=message_id,
            deconfliction=deconfliction,
            escalation_of=escalation_of,
        )


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """One recipient's copy of the content key, as it travels."""

    recipient: str
    key_id: KeyId
    kem: Kem
    enc: bytes = field(repr=False)
    ct: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Parsed:
    """An envelope taken apart: well framed, with a valid canonical header — and
    NOTHING verified yet. ``header`` is only what the envelope claims."""

    header: EnvelopeHeader
    wrapped_keys: tuple[WrappedKey, ...]
    digest: str
    """SHA-256 (hex) of the exact envelope bytes, for receipts and dedupe."""
    size: int
    _envelope: bytes = field(repr=False)
    _header_bytes: bytes = field(repr=False)
    _ciphertext: bytes = field(repr=False)
    _signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """What ``verify`` proved: a well-formed, fresh envelope signed by ``sender``."""

    parsed: Parsed
    sender: Participant

    @property
    def header(self) -> EnvelopeHeader:
        return self.parsed.header

    @property
    def wrapped_keys(self) -> tuple[WrappedKey, ...]:
        return self.parsed.wrapped_keys

    @property
    def digest(self) -> str:
        return self.parsed.digest

    @property
    def size(self) -> int:
        return self.parsed.size


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified and decrypted envelope whose payload agrees with its header."""

    header: EnvelopeHeader
    sender: Participant
    recipient: str
    digest: str
    payload: bytes = field(repr=False)
    """The exact decrypted payload bytes (canonical JSON of ``message``)."""
    message: Payload = field(repr=False)
    """The payload parsed as the header's message type."""


# --- byte helpers ----------------------------------------------------------------


def _lp16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _wrap_info(sender: str, recipient: str, message_id: UUID) -> bytes:
    return (
        WRAP_LABEL
        + _lp16(sender.encode())
        + _lp16(recipient.encode())
        + _lp16(str(message_id).encode())
    )


def _commitment(content_key: bytes, message_id: UUID) -> bytes:
    return P.hmac_sha256(content_key, COMMIT_LABEL + _lp16(str(message_id).encode()))


def _payload_aad(sender: str, message_id: UUID, header_bytes: bytes) -> bytes:
    return (
        PAYLOAD_AAD_LABEL
        + _lp16(sender.encode())
        + _lp16(str(message_id).encode())
        + struct.pack(">I", len(header_bytes))
        + header_bytes
    )


_INDEX: list[tuple[Directory, dict[str, Participant]]] = []
"""Participants by id of the last directory seen (one entry, replaced atomically).

``Directory.participant`` goes through pydantic's private-attribute lookup, which
costs more than the rest of a lookup; routers and adapters use one directory for
many messages. The entry holds the directory itself, so ``is`` is a safe identity
test (a live object's id cannot be reused), and frozen models never change.
"""


def _participant(directory: Directory, participant_id: str) -> Participant | None:
    entry = _INDEX[0] if _INDEX else None
    if entry is None or entry[0] is not directory:
        entry = (directory, {p.participant_id: p for p in directory.participants})
        _INDEX[:] = [entry]
    return entry[1].get(participant_id)


# --- seal --------------------------------------------------------------------------


def seal(
    draft: Draft,
    payload: bytes | pydantic.BaseModel,
    *,
    signing_key: SigningKey,
    directory: Directory,
    now: datetime,
    rng: Rng = os.urandom,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Encrypt ``payload`` to every recipient's current key, sign, and frame it.

    ``payload`` is a contract model (encoded with ``canonical_json``) or its bytes.
    ``rng`` gives 10 bytes for the message id (only if ``draft.message_id`` is
    ``None``), then 32 for the content key; each recipient's HPKE ephemeral key
    comes from the operating system. Raises ``SealError`` when the directory
    does not allow the message.
    """
    return _seal(
        draft,
        payload,
        signing_key=signing_key,
        directory=directory,
        now=now,
        rng=rng,
        ephemeral=None,
        limits=limits,
    )


HybridWrap = Callable[[SealingKey, bytes, bytes, bytes], tuple[bytes, bytes]]
"""(recipient key, content key, HPKE info, 64-byte eseed) -> (enc, ct): a
derandomised MLKEM768-X25519 SealBase, for test vectors only."""


def _sealing_keys(
    draft: Draft, signing_key: SigningKey, directory: Directory, now: datetime
) -> list[tuple[str, SealingKey]]:
    """Each recipient (sorted; resolved unless the draft names them) and the key to
    wrap the content key to; ``SealError`` if the directory does not allow it."""
    sender = _participant(directory, draft.sender)
    if sender is None or not sender.active:
        raise SealError(f"{draft.sender!r} is not an active participant of the directory")
    record = sender.key(signing_key.key_id)
    if record is None or record.kind is not KeyKind.SIGNING or not record.is_valid_at(now):
        raise SealError(f"{signing_key.key_id} is not a valid signing key of {draft.sender}")
    recipients = draft.recipients
    if not recipients:
        try:
            recipients = resolve(
                RoutingRequest(
                    message_type=draft.message_type,
                    sender=draft.sender,
                    escalation_of=draft.escalation_of,
                    jurisdiction=draft.jurisdiction,
                    category=draft.category,
                    priority=draft.priority,
                ),
                directory,
            ).recipients
        except (RoutingError, pydantic.ValidationError) as exc:
            raise SealError(f"cannot route: {exc}") from exc
    sealing: list[tuple[str, SealingKey]] = []
    for rid in sorted(set(recipients)):
        participant = _participant(directory, rid)
        key = None if participant is None else current_sealing_key(participant, now)
        if key is None:
            raise SealError(f"recipient {rid!r} has no valid encryption key")
        sealing.append((rid, key))
    return sealing


def _seal(
    draft: Draft,
    payload: bytes | pydantic.BaseModel,
    *,
    signing_key: SigningKey,
    directory: Directory,
    now: datetime,
    rng: Rng,
    ephemeral: Rng | None,
    limits: Limits = DEFAULT_LIMITS,
    hybrid_wrap: HybridWrap | None = None,
    header_overrides: dict[str, object] | None = None,
) -> bytes:
    """:func:`seal`, where ``ephemeral`` (vectors only) seeds each recipient's HPKE
    encapsulation, recipients in sorted order, so that a vector file can be rebuilt
    byte for byte: 32 bytes ``ikmE`` for X25519 (RFC 9180 ``DeriveKeyPair``), 64
    bytes ``eseed`` for the hybrid, wrapped by ``hybrid_wrap`` (a derandomised
    encapsulation; ``cryptography`` has none, the vector generator brings one).
    ``header_overrides`` replace header fields after sealing decided them — only
    to build rejection vectors (a commitment that does not match, say)."""
    sealing = _sealing_keys(draft, signing_key, directory, now)
    recipients = tuple(rid for rid, _ in sealing)
    message_id = draft.message_id or uuid7(now, rng)
    content_key = rng(CONTENT_KEY_LEN)
    if len(content_key) != CONTENT_KEY_LEN:
        raise SealError("rng returned too few bytes")
    # The draft's fields, completed by what seal decides (see Draft).
    fields = {f.name: getattr(draft, f.name) for f in dataclasses.fields(draft)}
    fields.update(
        message_id=message_id,
        recipients=recipients,
        sender_key_id=signing_key.key_id,
        created_at=now,
        key_commitment=_commitment(content_key, message_id).hex(),
    )
    fields.update(header_overrides or {})
    try:
        header = EnvelopeHeader(**fields)
    except pydantic.ValidationError as exc:
        raise SealError(f"invalid header: {exc.errors()[0]['msg']}") from exc
    header_bytes = header.canonical_bytes()
    plaintext = canonical_json(payload) if isinstance(payload, pydantic.BaseModel) else payload

    # Built after the signature context so the signed message needs no extra copy.
    out = bytearray(SIG_CONTEXT)
    out += MAGIC
    out.append(FORMAT_VERSION)
    out += _U32.pack(len(header_bytes))
    out += header_bytes
    out += _U16.pack(len(sealing))
    for rid, key in sealing:
        info = _wrap_info(draft.sender, rid, message_id)
        if ephemeral is not None and key.kem is Kem.MLKEM768_X25519:
            if hybrid_wrap is None:
                raise SealError("a derandomised hybrid encapsulation is needed for vectors")
            enc, ct = hybrid_wrap(key, content_key, info, ephemeral(64))
        else:
            ikm_e = None if ephemeral is None else ephemeral(32)
            enc, ct = key.wrap(content_key, info=info, ikm_e=ikm_e)
        out += _lp16(rid.encode()) + _lp16(key.key_id.encode())
        out += _U16.pack(key.kem.hpke_id) + _lp16(enc) + _lp16(ct)
    payload_key = P.hmac_sha256(content_key, PAYLOAD_KEY_LABEL)
    ciphertext = P.aead_seal(
        payload_key, PAYLOAD_NONCE, plaintext, _payload_aad(draft.sender, message_id, header_bytes)
    )
    out += _U32.pack(len(ciphertext))
    out += ciphertext
    size = len(out) - len(SIG_CONTEXT) + SIGNATURE_LEN
    if size > limits.max_size:
        raise SealError(f"envelope would be {size} bytes, over the limit")
    signature = signing_key.sign(bytes(out))
    out += signature
    return bytes(out[len(SIG_CONTEXT) :])


# --- parse and verify -----------------------------------------------------------


def _split(data: bytes) -> tuple[bytes, list[WrappedKey], bytes, bytes]:
    """Split an envelope into (header, wrapped keys, ciphertext, signature)."""
    if len(data) < _MIN_LEN or data[:4] != MAGIC:
        raise EnvelopeError(Reason.MALFORMED)
    if data[4] != FORMAT_VERSION:
        raise EnvelopeError(Reason.UNSUPPORTED_VERSION)
    end = len(data) - SIGNATURE_LEN
    u16, u32 = _U16.unpack_from, _U32.unpack_from
    try:
        (n,) = u32(data, 5)
        pos = 9 + n
        header_bytes = data[9:pos]
        (count,) = u16(data, pos)
        pos += 2
        wrapped: list[WrappedKey] = []
        for _ in range(count):
            fields: list[bytes] = []
            for _ in range(2):
                (n,) = u16(data, pos)
                fields.append(data[pos + 2 : pos + 2 + n])
                pos += 2 + n
            (kem_id,) = u16(data, pos)
            pos += 2
            for _ in range(2):
                (n,) = u16(data, pos)
                fields.append(data[pos + 2 : pos + 2 + n])
                pos += 2 + n
            if pos > end:
                raise EnvelopeError(Reason.MALFORMED)
            kem = Kem.from_hpke_id(kem_id)
            if kem is None:
                raise EnvelopeError(Reason.UNSUPPORTED_VERSION)
            if len(fields[2]) != _ENC_LEN[kem] or len(fields[3]) != WRAPPED_CT_LEN:
                raise EnvelopeError(Reason.MALFORMED)
            recipient, key_id = fields[0].decode("ascii"), fields[1].decode("ascii")
            wrapped.append(WrappedKey(recipient, KeyId(key_id), kem, fields[2], fields[3]))
        (n,) = u32(data, pos)
        pos += 4
        ciphertext = data[pos : pos + n]
        pos += n
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(Reason.MALFORMED) from exc
    if pos != end:
        raise EnvelopeError(Reason.MALFORMED)
    return header_bytes, wrapped, ciphertext, data[end:]


def _parse_header(header_bytes: bytes) -> EnvelopeHeader:
    try:
        return EnvelopeHeader.from_canonical_bytes(header_bytes)
    except pydantic.ValidationError as exc:
        # A present schema_version other than 1 wins over every other defect: a
        # newer header may well be invalid under this version's rules.
        if any(
            e["loc"][:1] == ("schema_version",) and e["type"] != "missing" for e in exc.errors()
        ):
            raise EnvelopeError(Reason.UNSUPPORTED_VERSION) from exc
        raise EnvelopeError(Reason.MALFORMED) from exc
    except ValueError as exc:  # NonCanonicalHeaderError
        raise EnvelopeError(Reason.MALFORMED) from exc


def parse(envelope: bytes | Parsed, *, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    """Size, framing, version and header checks, and the digest — no signature check.

    Nothing in the result is trusted yet; pass it to :func:`verify` or :func:`open`.
    """
    if isinstance(envelope, Parsed):
        return envelope
    if not isinstance(envelope, bytes):
        envelope = bytes(envelope)
    if len(envelope) > limits.max_size:
        raise EnvelopeError(Reason.TOO_LARGE)
    header_bytes, wrapped, ciphertext, signature = _split(envelope)
    header = _parse_header(header_bytes)
    if tuple(w.recipient for w in wrapped) != header.recipients:
        raise EnvelopeError(Reason.MALFORMED)
    return Parsed(
        header=header,
        wrapped_keys=tuple(wrapped),
        digest=P.sha256(envelope).hex(),
        size=len(envelope),
        _envelope=envelope,
        _header_bytes=header_bytes,
        _ciphertext=ciphertext,
        _signature=signature,
    )


def verify(
    envelope: bytes | Parsed,
    *,
    directory: Directory,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    expected_sender: str | None = None,
    check_sender_status: bool = True,
) -> VerifiedEnvelope:
    """Check everything that needs no private key (the router's view).

    ``expected_sender``: the participant the transport says sent the envelope (the
    owner of the outbox it came from); another signed sender is ``wrong_outbox``.
    ``check_sender_status=False`` skips the sender's ``active`` check (see
    :func:`open_envelope`). Raises ``EnvelopeError``; its ``.reason`` says why.
    """
    parsed = parse(envelope, limits=limits)
    header = parsed.header

    sender = _participant(directory, header.sender)
    if sender is None:
        raise EnvelopeError(Reason.UNKNOWN_SENDER)
    if check_sender_status and not sender.active:
        raise EnvelopeError(Reason.SENDER_SUSPENDED)
    if expected_sender is not None and header.sender != expected_sender:
        raise EnvelopeError(Reason.WRONG_OUTBOX)
    record = sender.key(header.sender_key_id)
    if record is None or record.kind is not KeyKind.SIGNING:
        raise EnvelopeError(Reason.UNKNOWN_KEY)
    if record.revoked_at is not None and record.revoked_at <= now:
        raise EnvelopeError(Reason.KEY_REVOKED)
    if not (record.not_before <= now < record.not_after) or header.created_at < record.not_before:
        raise EnvelopeError(Reason.KEY_EXPIRED)
    try:
        verify_key = verify_key_of(record)
    except P.CryptoFailure as exc:
        raise EnvelopeError(Reason.UNKNOWN_KEY) from exc
    signed = SIG_CONTEXT + parsed._envelope[:-SIGNATURE_LEN]
    if not verify_key.verify(parsed._signature, signed):
        raise EnvelopeError(Reason.BAD_SIGNATURE)

    if header.created_at > now + limits.max_skew:
        raise EnvelopeError(Reason.FUTURE_DATED)
    if header.created_at < now - limits.max_age:
        raise EnvelopeError(Reason.STALE)

    # The sender must have encrypted to keys the directory publishes for each
    # recipient (unknown recipients are routing's business: check_routing).
    for w in parsed.wrapped_keys:
        participant = _participant(directory, w.recipient)
        if participant is None:
            continue
        rec = participant.key(w.key_id)
        if rec is None or rec.kind is not KeyKind.ENCRYPTION:
            raise EnvelopeError(Reason.UNKNOWN_KEY)
        if rec.revoked_at is not None and rec.revoked_at <= now:
            raise EnvelopeError(Reason.KEY_REVOKED)
        if not rec.is_valid_at(header.created_at):
            raise EnvelopeError(Reason.KEY_EXPIRED)
        if rec.algorithm.value != w.kem.value:  # KeyAlgorithm and Kem share their values
            raise EnvelopeError(Reason.MALFORMED)

    return VerifiedEnvelope(parsed=parsed, sender=sender)


def open_envelope(
    envelope: bytes | Parsed,
    *,
    recipient: str,
    opening_keys: Sequence[OpeningKey],
    directory: Directory,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    check_sender_status: bool = True,
) -> Opened:
    """Verify, then decrypt as ``recipient`` with one of ``opening_keys``; the payload
    must be a valid instance of the header's message type (``schema_invalid``) that
    agrees with the header (``payload_mismatch``). Raises ``EnvelopeError``.
    (Exported as ``keys.open``.)

    A receiving adapter opens an inbox record at the time the router forwarded it
    and passes ``check_sender_status=False``: the sender's status was the router's
    admission check at that time, while keys carry their own revocation times and
    are still checked — so a message forwarded before its sender was suspended and
    revoked opens, and one forwarded after the revocation does not.
    """
    v = verify(
        envelope,
        directory=directory,
        now=now,
        limits=limits,
        check_sender_status=check_sender_status,
    )
    parsed = v.parsed
    header = parsed.header
    wrapped = next((w for w in parsed.wrapped_keys if w.recipient == recipient), None)
    if wrapped is None:
        raise EnvelopeError(Reason.NOT_A_RECIPIENT)
    key = next((k for k in opening_keys if k.key_id == wrapped.key_id), None)
    if key is None or key.kem is not wrapped.kem:
        raise EnvelopeError(Reason.UNKNOWN_KEY)
    try:
        content_key = key.unwrap(
            wrapped.enc,
            wrapped.ct,
            info=_wrap_info(header.sender, recipient, header.message_id),
        )
    except P.CryptoFailure as exc:
        raise EnvelopeError(Reason.DECRYPT_FAILED) from exc
    if len(content_key) != CONTENT_KEY_LEN:
        raise EnvelopeError(Reason.DECRYPT_FAILED)
    expected = _commitment(content_key, header.message_id).hex()
    if not hmac.compare_digest(expected, header.key_commitment):
        raise EnvelopeError(Reason.KEY_COMMITMENT_MISMATCH)
    try:
        payload = P.aead_open(
            P.hmac_sha256(content_key, PAYLOAD_KEY_LABEL),
            PAYLOAD_NONCE,
            parsed._ciphertext,
            _payload_aad(header.sender, header.message_id, parsed._header_bytes),
        )
    except P.CryptoFailure as exc:
        raise EnvelopeError(Reason.DECRYPT_FAILED) from exc
    try:
        message: Payload = PAYLOAD_MODELS[header.message_type].model_validate_json(payload)
    except pydantic.ValidationError as exc:
        raise EnvelopeError(Reason.SCHEMA_INVALID) from exc
    if payload_mismatches(header, message):
        raise EnvelopeError(Reason.PAYLOAD_MISMATCH)
    return Opened(
        header=header,
        sender=v.sender,
        recipient=recipient,
        digest=parsed.digest,
        payload=payload,
        message=message,
    )
