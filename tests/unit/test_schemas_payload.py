"""payload_mismatches: the decrypted payload must agree with the clear header."""

from __future__ import annotations

import schemas as s

from ._schema_fixtures import CASE, MSG, header_data, referral_data


def test_matching_referral_has_no_mismatch() -> None:
    """A referral whose type, priority and handling code equal the header's agrees."""
    header = s.EnvelopeHeader.model_validate(header_data())
    assert s.payload_mismatches(header, s.Referral.model_validate(referral_data())) == ()


def test_referral_contradicting_header_is_reported() -> None:
    """A payload that says urgent/grooming/H2 under a routine/csam/H0 header is
    reported field by field."""
    header = s.EnvelopeHeader.model_validate(header_data())
    data = referral_data(
        incident={"type": "grooming", "summary": "x"},
        urgency={"priority": "urgent", "reason": "r"},
        handling={**referral_data()["handling"], "code": "H2"},
    )
    assert s.payload_mismatches(header, s.Referral.model_validate(data)) == (
        "category",
        "priority",
        "handling_code",
    )


def test_wrong_payload_type_is_reported() -> None:
    """A receipt inside a referral envelope is a message_type mismatch."""
    header = s.EnvelopeHeader.model_validate(header_data())
    receipt = s.Receipt(
        original_message_id=MSG,
        case_id=CASE,
        received_at=header.created_at,
        envelope_sha256="0" * 64,
    )
    assert s.payload_mismatches(header, receipt) == ("message_type",)


def test_reply_must_name_the_same_message_and_case() -> None:
    """A receipt's original_message_id must be the header's in_reply_to and its case
    the header's case."""
    header = s.EnvelopeHeader.model_validate(
        header_data(
            message_type="receipt",
            sender="nl.hotline",
            recipients=["de.hotline"],
            in_reply_to=str(CASE),
        )
    )
    good = s.Receipt(
        original_message_id=CASE,
        case_id=CASE,
        received_at=header.created_at,
        envelope_sha256="0" * 64,
    )
    assert s.payload_mismatches(header, good) == ()
    bad = good.model_copy(update={"original_message_id": MSG, "case_id": MSG})
    assert s.payload_mismatches(header, bad) == ("in_reply_to", "case_id")
    assert s.PAYLOAD_MODELS[s.MessageType.CASE_ACK] is s.CaseAck
