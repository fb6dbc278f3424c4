"""The clear, signed envelope header: everything the router reads.

The header names who, where, what kind and how urgent — never who the suspect
or victim is, never a URL or a hash. Those travel only in the encrypted payload.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from ._common import (
    REPLY_MESSAGE_TYPES,
    SCHEMA_VERSION,
    CaseId,
    Category,
    CountryCode,
    DecisionKind,
    FrozenModel,
    HandlingCode,
    KeyCommitment,
    KeyId,
    MessageId,
    MessageType,
    ParticipantId,
    Priority,
    UtcDatetime,
    canonical_json,
    unique_sorted,
)
from ._deconfliction import Deconfliction

MAX_RECIPIENTS = 64
"""Fan-out bound: a jurisdiction's receivers, its 24/7 contact and standing copies."""


class NonCanonicalHeaderError(ValueError):
    """Header bytes parse, but are not the canonical encoding of what they parse to."""


class EnvelopeHeader(FrozenModel):
    """Clear header of an envelope; signed by the sender over :meth:`canonical_bytes`.

    ``recipients`` is a set: duplicates are refused and the order is normalised
    to sorted, so it equals ``resolve(...).recipients``. For a referral the
    recipients are what :func:`schemas.resolve` computes; for a reply
    (``receipt`` / ``case_ack``) they are exactly the original sender, and
    ``in_reply_to`` names the original message. Replies copy ``case_id``,
    ``jurisdiction``, ``category``, ``priority`` and ``handling_code`` from the
    message they answer.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    message_id: MessageId
    message_type: MessageType
    sender: ParticipantId
    sender_key_id: KeyId
    created_at: UtcDatetime
    case_id: CaseId
    jurisdiction: CountryCode
    category: Category
    priority: Priority
    handling_code: HandlingCode
    recipients: Annotated[
        tuple[ParticipantId, ...],
        Field(min_length=1, max_length=MAX_RECIPIENTS),
        AfterValidator(unique_sorted),
    ]
    in_reply_to: MessageId | None = None
    decision: DecisionKind | None = None
    """For a ``case_ack``: which decision it carries (required there, absent elsewhere)."""
    key_commitment: KeyCommitment
    deconfliction: Deconfliction | None = None
    """For a referral: keyed tags of its URLs and hashes (``schemas._deconfliction``);
    absent (``null``) when the sender holds no deconfliction key or has nothing to tag."""
    escalation_of: MessageId | None = None
    """For a referral: the sender's own earlier referral this one escalates (the same
    case, re-sealed to the routing rules' escalation recipient because its
    recipients did not answer in time)."""

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        if self.sender in self.recipients:
            raise ValueError("the sender cannot be one of its recipients")
        if self.message_type in REPLY_MESSAGE_TYPES:
            if self.in_reply_to is None:
                raise ValueError(f"a {self.message_type} needs in_reply_to")
            if len(self.recipients) != 1:
                raise ValueError("a reply has exactly one recipient: the original sender")
            if self.in_reply_to == self.message_id:
                raise ValueError("a message cannot reply to itself")
        elif self.in_reply_to is not None:
            raise ValueError("only receipts and case acks carry in_reply_to")
        if self.deconfliction is not None and self.message_type is not MessageType.REFERRAL:
            raise ValueError("only a referral carries deconfliction tags")
        if self.escalation_of is not None:
            if self.message_type is not MessageType.REFERRAL:
                raise ValueError("only a referral escalates another")
            if self.escalation_of == self.message_id:
                raise ValueError("a message cannot escalate itself")
        if (self.decision is not None) != (self.message_type is MessageType.CASE_ACK):
            raise ValueError("decision is required for, and only for, a case_ack")
        return self

    def canonical_bytes(self) -> bytes:
        """The bytes the envelope signature covers (see :func:`schemas.canonical_json`).

        Compact JSON, keys sorted, UTF-8, every field present (``in_reply_to`` as
        ``null`` when absent), e.g.::

            {"case_id":"0192…","category":"csam","created_at":"2026-11-23T17:00:00.000000Z",
             "decision":null,"deconfliction":null,"escalation_of":null,"handling_code":"H0","in_reply_to":null,"jurisdiction":"NL",
             "key_commitment":"ab…","message_id":"0192…","message_type":"referral",
             "priority":"routine","recipients":["nl.hotline","nl.police"],
             "schema_version":1,"sender":"de.hotline","sender_key_id":"de.hotline/sig/1"}
        """
        return canonical_json(self)

    @classmethod
    def from_canonical_bytes(cls, data: bytes) -> Self:
        """Parse header bytes and insist that they are canonical.

        Raises :class:`pydantic.ValidationError` for an invalid header and
        :class:`NonCanonicalHeaderError` when the bytes are valid but are not
        exactly ``canonical_bytes()`` of the result (other key order, spacing,
        time offset, unsorted recipients...), so a signed header has one encoding.
        """
        header = cls.model_validate_json(data)
        if header.canonical_bytes() != data:
            raise NonCanonicalHeaderError("header bytes are not in canonical form")
        return header


__all__ = ["MAX_RECIPIENTS", "EnvelopeHeader", "NonCanonicalHeaderError"]
