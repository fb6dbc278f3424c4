"""seal / verify / open: round trips, and every refusal with its reason code."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import keys
from keys import Draft, EnvelopeError, Limits, SealError
from schemas import MessageType, ParticipantStatus, Reason, Referral, uuid7
from tests.strategies import referrals
from tests.unit._federation import KEY_END, NOW, Frame, draft, federation, referral

FED = federation()
DIRECTORY = FED.directory()
SENDER = FED.members["de.hotline"]


def _seal(**kw: Any) -> bytes:
    d = kw.pop("draft", None) or draft()
    payload = kw.pop("payload", None) or referral()
    return keys.seal(
        d,
        payload,
        signing_key=kw.pop("signing_key", SENDER.signing),
        directory=kw.pop("directory", DIRECTORY),
        now=kw.pop("now", NOW),
        **kw,
    )


ENVELOPE = _seal()


def _open(env: bytes, recipient: str = "nl.hotline", **kw: Any) -> keys.Opened:
    return keys.open(
        env,
        recipient=recipient,
        opening_keys=kw.pop("opening_keys", [FED.members[recipient].opening]),
        directory=kw.pop("directory", DIRECTORY),
        now=kw.pop("now", NOW),
        **kw,
    )


def _reason(env: bytes, recipient: str = "nl.hotline", **kw: Any) -> Reason:
    with pytest.raises(EnvelopeError) as info:
        _open(env, recipient, **kw)
    assert str(info.value) == "envelope refused"
    return info.value.reason


# --- round trips -------------------------------------------------------------


@pytest.mark.parametrize("recipient", ["nl.hotline", "nl.police"])
def test_each_resolved_recipient_opens_the_same_referral(recipient: str) -> None:
    """Recipients come from resolve(); X25519 and the ML-KEM hybrid both open it."""
    opened = _open(ENVELOPE, recipient)
    assert referral() == opened.message
    assert opened.header.recipients == ("nl.hotline", "nl.police")
    assert opened.sender.participant_id == "de.hotline"
    assert keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW).digest == opened.digest


def test_verify_needs_no_private_key_and_reports_the_wrapped_keys() -> None:
    """The router's view: header, sender and one wrapped key per recipient."""
    v = keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW)
    assert [w.recipient for w in v.wrapped_keys] == list(v.header.recipients)
    assert [w.kem for w in v.wrapped_keys] == [keys.Kem.X25519, keys.Kem.MLKEM768_X25519]
    assert len(ENVELOPE) == v.size


def _counter_rng() -> keys.Rng:
    counter = iter(range(10_000))
    return lambda n: bytes(next(counter) % 256 for _ in range(n))


def test_production_seal_takes_hpke_ephemeral_keys_from_the_os() -> None:
    """seal's rng fixes the message id and content key only: the HPKE ephemeral
    key (``enc``) differs on every call, whatever rng says."""
    d = draft()
    a = keys.parse(_seal(draft=d, rng=_counter_rng()))
    b = keys.parse(_seal(draft=d, rng=_counter_rng()))
    assert a.header == b.header  # same id, same key commitment
    assert [w.enc for w in a.wrapped_keys] != [w.enc for w in b.wrapped_keys]


def test_vector_seal_is_deterministic_given_its_ephemeral_seed() -> None:
    """Only the vector generator's private path derives the ephemeral keys from a
    seed; then the same inputs give the same bytes (X25519 recipients)."""
    from keys import _envelope as E

    d = Draft(**_draft_fields(recipients=("nl.hotline",)))

    def seal_once() -> bytes:
        rng = _counter_rng()
        return E._seal(
            d, referral(), signing_key=SENDER.signing, directory=DIRECTORY, now=NOW,
            rng=rng, ephemeral=rng,
        )  # fmt: skip

    assert seal_once() == seal_once()


def _draft_fields(**over: Any) -> dict[str, Any]:
    base = draft()
    fields = {f: getattr(base, f) for f in Draft.__dataclass_fields__}
    fields.update(over)
    return fields


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=referrals())
def test_random_referrals_round_trip(ref: Referral) -> None:
    """Any valid referral comes out of open exactly as it went into seal."""
    d = Draft.for_referral(ref, sender="de.hotline", jurisdiction="NL", case_id=uuid7(NOW))
    env = _seal(draft=d, payload=ref)
    assert ref == _open(env, "nl.hotline").message


# --- tampering with the signed bytes -----------------------------------------

_OTHER_ID = str(uuid7(NOW + timedelta(seconds=1)))

HEADER_EDITS: list[tuple[str, Any, Reason]] = [
    ("message_id", _OTHER_ID, Reason.BAD_SIGNATURE),
    ("message_type", "receipt", Reason.MALFORMED),  # a receipt needs in_reply_to
    ("sender", "xx.unknown", Reason.UNKNOWN_SENDER),
    ("sender", "int.coordinator", Reason.UNKNOWN_KEY),
    ("sender_key_id", "ed25519-0000000000000000", Reason.UNKNOWN_KEY),
    ("created_at", "2026-11-23T17:00:01.000000Z", Reason.BAD_SIGNATURE),
    ("case_id", _OTHER_ID, Reason.BAD_SIGNATURE),
    ("jurisdiction", "BE", Reason.BAD_SIGNATURE),
    ("category", "grooming", Reason.BAD_SIGNATURE),
    ("priority", "high", Reason.BAD_SIGNATURE),
    ("handling_code", "H2", Reason.BAD_SIGNATURE),
    ("recipients", ["nl.hotline"], Reason.MALFORMED),  # no longer matches the wrapped keys
    ("in_reply_to", _OTHER_ID, Reason.MALFORMED),  # referrals have none
    ("decision", "accepted", Reason.MALFORMED),  # only case acks carry one
    ("key_commitment", "00" * 32, Reason.BAD_SIGNATURE),
    ("schema_version", 2, Reason.UNSUPPORTED_VERSION),
    ("deconfliction", {"epoch": 1, "tags": ["ab" * 16]}, Reason.BAD_SIGNATURE),
    ("escalation_of", _OTHER_ID, Reason.BAD_SIGNATURE),
]


@pytest.mark.parametrize(("field", "value", "reason"), HEADER_EDITS)
def test_each_header_field_edit_is_refused(field: str, value: Any, reason: Reason) -> None:
    """Changing any header field (keeping it canonical) is caught, with a precise reason."""
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    assert data[field] != value
    data[field] = value
    assert reason == _reason(bytes(frame.with_header(data)))


def test_a_newer_schema_version_wins_over_other_header_defects() -> None:
    """schema_version 2 with another defect is unsupported_version (a newer header may
    follow other rules); a header without schema_version is just malformed."""
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    newer = {**data, "schema_version": 2, "priority": "someday"}
    assert _reason(bytes(frame.with_header(newer))) == Reason.UNSUPPORTED_VERSION
    missing = {k: v for k, v in data.items() if k != "schema_version"}
    assert _reason(bytes(frame.with_header(missing))) == Reason.MALFORMED


def test_every_header_field_is_covered_by_the_edit_table() -> None:
    """The table above touches every field the header has (a new field needs a row)."""
    assert set(Frame.parse(ENVELOPE).header_json()) == {f for f, _, _ in HEADER_EDITS}


def test_recipients_edited_together_with_the_wrapped_keys_fail_the_signature() -> None:
    """Dropping a recipient consistently from header and wrapped keys breaks the signature."""
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    data["recipients"] = ["nl.hotline"]
    frame = frame.with_header(data)
    frame.wrapped = frame.wrapped[:1]
    assert _reason(bytes(frame)) == Reason.BAD_SIGNATURE


def test_non_canonical_header_is_malformed() -> None:
    """Same JSON value, other spacing: refused, so a signed header has one encoding."""
    frame = Frame.parse(ENVELOPE)
    frame.header = json.dumps(frame.header_json(), sort_keys=True).encode()
    assert _reason(bytes(frame)) == Reason.MALFORMED


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize(
    ("part", "reason"),
    [
        (0, Reason.MALFORMED),  # recipient id: no longer the header's recipients
        (1, Reason.BAD_SIGNATURE),  # key id
        (3, Reason.BAD_SIGNATURE),  # enc
        (4, Reason.BAD_SIGNATURE),  # ct
    ],
)
def test_each_wrapped_key_field_edit_is_refused(index: int, part: int, reason: Reason) -> None:
    """Every field of every wrapped key is covered (framing check or signature)."""
    frame = Frame.parse(ENVELOPE)
    value = frame.wrapped[index][part]
    if isinstance(value, str):
        frame.wrapped[index][part] = value[:-1] + ("x" if value[-1] != "x" else "y")
    else:
        frame.wrapped[index][part] = value[:-1] + bytes([value[-1] ^ 1])
    assert reason == _reason(bytes(frame))


@pytest.mark.parametrize(
    ("kem", "reason"),
    [(0x0021, Reason.UNSUPPORTED_VERSION), (0x647A, Reason.MALFORMED)],
)
def test_wrapped_key_kem_id_edit_is_refused(kem: int, reason: Reason) -> None:
    """An unknown KEM id is unsupported; a known but different one no longer fits the
    sizes of ``enc`` (32 bytes for X25519, 1120 for the hybrid): malformed."""
    frame = Frame.parse(ENVELOPE)
    frame.wrapped[0][2] = kem
    assert reason == _reason(bytes(frame))


@pytest.mark.parametrize(("part", "size"), [(3, 31), (3, 33), (4, 47), (4, 49)])
def test_a_wrapped_key_of_the_wrong_size_is_malformed_for_everyone(part: int, size: int) -> None:
    """A wrong-size ``enc`` or ``ct`` is malformed at parse time — also for a
    recipient other than the one opening, so the router refuses it."""
    frame = Frame.parse(ENVELOPE)
    value = frame.wrapped[-1][part]
    assert isinstance(value, bytes)
    frame.wrapped[-1][part] = (value * 2)[:size]
    assert _reason(bytes(frame)) == Reason.MALFORMED


def test_ciphertext_edit_is_refused() -> None:
    """A flipped payload ciphertext bit is caught by the signature, before decryption."""
    frame = Frame.parse(ENVELOPE)
    frame.ciphertext = bytes([frame.ciphertext[0] ^ 1]) + frame.ciphertext[1:]
    assert _reason(bytes(frame)) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("at", [0, 31, 32, 63])
def test_signature_edit_is_refused(at: int) -> None:
    """Any flipped signature bit (R or S half) is refused."""
    frame = Frame.parse(ENVELOPE)
    sig = bytearray(frame.signature)
    sig[at] ^= 0x80
    frame.signature = bytes(sig)
    assert _reason(bytes(frame)) == Reason.BAD_SIGNATURE


def test_every_truncation_and_extension_is_malformed() -> None:
    """No proper prefix of an envelope, nor one extra byte, parses."""
    for n in range(len(ENVELOPE)):
        with pytest.raises(EnvelopeError) as info:
            keys.verify(ENVELOPE[:n], directory=DIRECTORY, now=NOW)
        assert info.value.reason == Reason.MALFORMED, n
    assert _reason(ENVELOPE + b"\x00") == Reason.MALFORMED


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.MALFORMED),
        (b"{}", Reason.MALFORMED),
        (b"XRBE" + ENVELOPE[4:], Reason.MALFORMED),
        (ENVELOPE[:4] + b"\x02" + ENVELOPE[5:], Reason.UNSUPPORTED_VERSION),
    ],
)
def test_garbage_and_unknown_versions(data: bytes, reason: Reason) -> None:
    """Not an envelope at all, or a future format version."""
    assert reason == _reason(data)


# --- an authentic but misbehaving sender (re-signed after editing) ----------------


def test_malformed_json_header_signed_by_the_sender_is_malformed() -> None:
    """A validly signed header that is not JSON is still refused."""
    frame = Frame.parse(ENVELOPE)
    frame.header = b'{"message_id": '
    assert _reason(frame.resigned(SENDER.signing)) == Reason.MALFORMED


def test_wrapped_key_ciphertext_damage_is_a_decrypt_failure() -> None:
    """A signed envelope whose wrapped key does not open: decrypt_failed."""
    frame = Frame.parse(ENVELOPE)
    ct = frame.wrapped[0][4]
    frame.wrapped[0][4] = ct[:-1] + bytes([ct[-1] ^ 1])
    assert _reason(frame.resigned(SENDER.signing)) == Reason.DECRYPT_FAILED


def test_envelope_re_signed_by_another_sender_does_not_open() -> None:
    """HPKE info binds the sender: stripping de.hotline's signature and re-signing
    as int.coordinator (a real member) leaves a wrap that no longer opens."""
    thief = FED.members["int.coordinator"]
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    data.update(sender="int.coordinator", sender_key_id=thief.signing.key_id)
    assert _reason(frame.with_header(data).resigned(thief.signing)) == Reason.DECRYPT_FAILED


def test_wrap_info_binds_the_recipient() -> None:
    """The same wrap, unwrapped as if addressed to another recipient id, fails."""
    from keys import _envelope as E
    from keys._primitives import CryptoFailure

    header = keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW).header
    w = Frame.parse(ENVELOPE).wrapped[0]
    key = FED.members["nl.hotline"].opening
    info = E._wrap_info("de.hotline", "nl.hotline", header.message_id)
    assert len(key.unwrap(w[3], w[4], info=info)) == 32
    with pytest.raises(CryptoFailure):
        key.unwrap(w[3], w[4], info=E._wrap_info("de.hotline", "nl.other", header.message_id))


def test_wrap_replayed_under_another_message_id_does_not_open() -> None:
    """HPKE info binds the message id: a wrap copied into another message fails."""
    a = Frame.parse(_seal(draft=Draft(**_draft_fields(recipients=("nl.hotline",)))))
    b = Frame.parse(_seal(draft=Draft(**_draft_fields(recipients=("nl.hotline",)))))
    assert a.header_json()["message_id"] != b.header_json()["message_id"]
    b.wrapped[0] = a.wrapped[0]
    data = b.header_json()
    data["key_commitment"] = a.header_json()["key_commitment"]
    assert _reason(b.with_header(data).resigned(SENDER.signing)) == Reason.DECRYPT_FAILED


def test_key_commitment_stops_one_envelope_opening_differently_per_recipient() -> None:
    """A sender wrapping another content key to one recipient is caught by that recipient."""
    mid = uuid7(NOW)
    a = Frame.parse(_seal(draft=Draft(**_draft_fields(message_id=mid))))
    b = Frame.parse(_seal(draft=Draft(**_draft_fields(message_id=mid))))
    a.wrapped[1] = b.wrapped[1]  # nl.police gets the content key of another message
    forged = a.resigned(SENDER.signing)
    assert referral() == _open(forged, "nl.hotline").message
    assert _reason(forged, "nl.police") == Reason.KEY_COMMITMENT_MISMATCH


def test_payload_moved_under_another_header_does_not_decrypt() -> None:
    """The payload AAD binds the header: same key, other header -> decrypt_failed."""
    frame = Frame.parse(ENVELOPE)
    data = frame.header_json()
    data["priority"] = "high"
    assert _reason(frame.with_header(data).resigned(SENDER.signing)) == Reason.DECRYPT_FAILED


# --- who may open ---------------------------------------------------------------


def test_wrong_recipient_is_not_a_recipient() -> None:
    """A participant the envelope was not sealed to cannot open it."""
    assert _reason(ENVELOPE, "int.coordinator") == Reason.NOT_A_RECIPIENT


def test_recipient_without_the_matching_key_is_unknown_key() -> None:
    """The right recipient with only someone else's private key."""
    other = keys.OpeningKey.generate()
    assert _reason(ENVELOPE, "nl.hotline", opening_keys=[other]) == Reason.UNKNOWN_KEY


# --- the sender and its keys in the directory --------------------------------------


def test_unknown_sender() -> None:
    """A directory without the sender refuses its envelopes."""
    assert _reason(ENVELOPE, directory=FED.directory(without=["de.hotline"])) == (
        Reason.UNKNOWN_SENDER
    )


def test_suspended_sender() -> None:
    """A suspended sender's envelopes are refused."""
    d = keys.set_status(DIRECTORY, "de.hotline", ParticipantStatus.SUSPENDED, now=NOW)
    assert _reason(ENVELOPE, directory=d) == Reason.SENDER_SUSPENDED


def test_revoked_signing_key() -> None:
    """Revoked at or before verification time: refused, even for older envelopes."""
    d = keys.revoke(DIRECTORY, "de.hotline", key_id=SENDER.signing.key_id, now=NOW)
    assert _reason(ENVELOPE, directory=d) == Reason.KEY_REVOKED
    assert _reason(ENVELOPE, directory=d, now=NOW + timedelta(minutes=1)) == Reason.KEY_REVOKED


def test_revocation_in_the_future_does_not_apply_yet() -> None:
    """A revocation scheduled after now leaves the key usable until then."""
    d = keys.revoke(DIRECTORY, "de.hotline", key_id=SENDER.signing.key_id, now=NOW + timedelta(1))
    assert referral() == _open(ENVELOPE, directory=d).message


def test_revoked_recipient_key_is_refused_by_the_router() -> None:
    """An envelope encrypted to a since-revoked recipient key is not forwarded."""
    d = keys.revoke(DIRECTORY, "nl.police", key_id=None, now=NOW)
    with pytest.raises(EnvelopeError) as info:
        keys.verify(ENVELOPE, directory=d, now=NOW)
    assert info.value.reason == Reason.KEY_REVOKED


def test_expired_signing_key() -> None:
    """Sealed just before the key expires, verified after: key_expired."""
    sealed_at = KEY_END - timedelta(minutes=1)
    env = _seal(now=sealed_at)
    assert referral() == _open(env, now=sealed_at).message
    assert _reason(env, now=KEY_END + timedelta(minutes=1)) == Reason.KEY_EXPIRED


def test_signing_key_not_listed_cannot_seal() -> None:
    """seal refuses a key the directory does not list for the sender (local error)."""
    with pytest.raises(SealError):
        _seal(signing_key=keys.SigningKey.generate())


# --- freshness and size -----------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(hours=24, seconds=1), Reason.STALE),
        (-timedelta(minutes=5, seconds=1), Reason.FUTURE_DATED),
    ],
)
def test_freshness_window(offset: timedelta, reason: Reason) -> None:
    """Older than 24 h or more than 5 min in the future (defaults) is refused."""
    assert reason == _reason(ENVELOPE, now=NOW + offset)


@pytest.mark.parametrize("offset", [timedelta(hours=24), -timedelta(minutes=5)])
def test_freshness_window_edges_are_accepted(offset: timedelta) -> None:
    """Exactly at the window's edges the envelope is still accepted."""
    assert referral() == _open(ENVELOPE, now=NOW + offset).message


def test_configurable_freshness() -> None:
    """A tighter max_age refuses what the default accepts."""
    limits = Limits(max_age=timedelta(minutes=1))
    assert _reason(ENVELOPE, now=NOW + timedelta(minutes=2), limits=limits) == Reason.STALE


def test_oversize_is_refused_before_parsing() -> None:
    """Over max_size: too_large, whatever the bytes are."""
    limits = Limits(max_size=len(ENVELOPE) - 1)
    assert _reason(ENVELOPE, limits=limits) == Reason.TOO_LARGE
    assert _reason(b"\x00" * (2 << 20)) == Reason.TOO_LARGE


def test_seal_refuses_to_build_an_oversize_envelope() -> None:
    """The sender learns locally that the message is too large."""
    with pytest.raises(SealError):
        _seal(limits=Limits(max_size=1000))


# --- the payload ---------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b'{"not": "a referral"}', b"\xff\xfe not json"])
def test_schema_invalid_payload(payload: bytes) -> None:
    """A well-sealed payload that is not a valid referral: schema_invalid."""
    assert _reason(_seal(payload=payload)) == Reason.SCHEMA_INVALID


def test_payload_contradicting_the_header_is_refused() -> None:
    """open checks the payload against the clear header: a referral routed as
    routine/csam whose payload says urgent is refused as payload_mismatch."""
    data = referral().model_dump(mode="json")
    data["urgency"] = {"priority": "urgent", "reason": "Synthetic: ongoing abuse."}
    assert _reason(_seal(payload=Referral.model_validate(data))) == Reason.PAYLOAD_MISMATCH


def test_receipt_round_trip() -> None:
    """A reply (receipt) from nl.hotline back to de.hotline opens as a Receipt."""
    from schemas import HandlingCode, Receipt

    original = keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW)
    receipt = Receipt(
        original_message_id=original.header.message_id,
        case_id=original.header.case_id,
        received_at=NOW,
        envelope_sha256=original.digest,
    )
    d = Draft(
        message_type=MessageType.RECEIPT,
        sender="nl.hotline",
        case_id=original.header.case_id,
        jurisdiction="NL",
        category=original.header.category,
        priority=original.header.priority,
        handling_code=HandlingCode.H0,
        recipients=("de.hotline",),
        in_reply_to=original.header.message_id,
    )
    env = _seal(draft=d, payload=receipt, signing_key=FED.members["nl.hotline"].signing)
    assert receipt == _open(env, "de.hotline").message


def test_error_is_opaque() -> None:
    """All refusals read the same; the precise reason is an attribute."""
    assert str(EnvelopeError(Reason.STALE)) == "envelope refused"
    assert repr(EnvelopeError(Reason.STALE)) == "EnvelopeError(reason='stale')"


def test_parse_reads_the_claim_without_trusting_it() -> None:
    """parse checks framing and header (same reasons as verify) but no signature;
    verify and open accept what it returns and do not parse again."""
    frame = Frame.parse(ENVELOPE)
    frame.signature = bytes(64)
    parsed = keys.parse(bytes(frame))
    assert parsed.header == keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW).header
    with pytest.raises(EnvelopeError) as info:
        keys.verify(parsed, directory=DIRECTORY, now=NOW)
    assert info.value.reason == Reason.BAD_SIGNATURE
    good = keys.parse(ENVELOPE)
    assert (
        keys.open(
            good,
            recipient="nl.hotline",
            opening_keys=[FED.opening("nl.hotline")],
            directory=DIRECTORY,
            now=NOW,
        ).digest
        == good.digest
    )
    with pytest.raises(EnvelopeError) as info:
        keys.parse(ENVELOPE[:-1])
    assert info.value.reason == Reason.MALFORMED
    with pytest.raises(EnvelopeError) as info:
        keys.parse(ENVELOPE, limits=Limits(max_size=10))
    assert info.value.reason == Reason.TOO_LARGE


def test_expected_sender_binds_the_transport_to_the_signature() -> None:
    """verify(expected_sender=...) refuses an envelope whose signed sender is not
    who the transport says sent it — after the sender checks, before the key."""
    v = keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW, expected_sender="de.hotline")
    assert v.header.sender == "de.hotline"
    with pytest.raises(EnvelopeError) as info:
        keys.verify(ENVELOPE, directory=DIRECTORY, now=NOW, expected_sender="nl.hotline")
    assert info.value.reason == Reason.WRONG_OUTBOX
    unknown = FED.directory(without=["de.hotline"])
    with pytest.raises(EnvelopeError) as info:
        keys.verify(ENVELOPE, directory=unknown, now=NOW, expected_sender="nl.hotline")
    assert info.value.reason == Reason.UNKNOWN_SENDER


def test_default_randomness_envelope_opens_with_pyhpke() -> None:
    """The production path (library-chosen ephemeral key) is plain RFC 9180 too."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

    from keys import _envelope as E

    scalar = bytes(range(1, 33))
    opening = keys.OpeningKey.from_x25519_seed(scalar)
    fed = federation(
        keys=lambda spec: (
            FED.signing(spec.participant_id),
            opening if spec.participant_id == "nl.hotline" else FED.opening(spec.participant_id),
        ),
        root=FED.root,
    )
    directory = fed.directory()
    env = _seal(draft=Draft(**_draft_fields(recipients=("nl.hotline",))), directory=directory)
    header = keys.verify(env, directory=directory, now=NOW).header
    w = Frame.parse(env).wrapped[0]
    suite = CipherSuite.new(
        KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
    )
    sk = KEMKey.from_pyca_cryptography_key(X25519PrivateKey.from_private_bytes(scalar))
    info = E._wrap_info("de.hotline", "nl.hotline", header.message_id)
    content_key = suite.create_recipient_context(w[3], sk, info=info).open(w[4])
    assert E._commitment(content_key, header.message_id).hex() == header.key_commitment
