"""Which payload an envelope carries, and whether it agrees with the clear header.

The router sees only the header; the receiving adapter, after decrypting, checks
that the payload says the same thing (:func:`payload_mismatches`), so a sender
cannot route a case as ``routine`` / ``csam`` while the payload says otherwise.
"""

from __future__ import annotations

from typing import Final

from ._acks import CaseAck, Receipt
from ._common import MessageType
from ._envelope import EnvelopeHeader
from ._referral import Referral

Payload = Referral | Receipt | CaseAck

PAYLOAD_MODELS: Final[dict[MessageType, type[Referral] | type[Receipt] | type[CaseAck]]] = {
    MessageType.REFERRAL: Referral,
    MessageType.RECEIPT: Receipt,
    MessageType.CASE_ACK: CaseAck,
}
"""Payload model per ``EnvelopeHeader.message_type``."""


def payload_mismatches(header: EnvelopeHeader, payload: Payload) -> tuple[str, ...]:
    """Names of the header fields the decrypted payload contradicts (empty: agree).

    - any payload whose model is not ``PAYLOAD_MODELS[header.message_type]``:
      ``("message_type",)``;
    - referral: ``category`` (``incident.type``), ``priority``
      (``urgency.priority``), ``handling_code`` (``handling.code``);
    - receipt / case ack: ``in_reply_to`` (``original_message_id``), ``case_id``;
      case ack: ``decision`` (``decision.kind``).
    """
    if not isinstance(payload, PAYLOAD_MODELS[header.message_type]):
        return ("message_type",)
    found: list[str] = []
    if isinstance(payload, Referral):
        if payload.incident.type is not header.category:
            found.append("category")
        if payload.urgency.priority is not header.priority:
            found.append("priority")
        if payload.handling.code is not header.handling_code:
            found.append("handling_code")
    else:
        if payload.original_message_id != header.in_reply_to:
            found.append("in_reply_to")
        if payload.case_id != header.case_id:
            found.append("case_id")
        if isinstance(payload, CaseAck) and payload.decision.kind != header.decision:
            found.append("decision")
    return tuple(found)


__all__ = ["PAYLOAD_MODELS", "Payload", "payload_mismatches"]
