"""Signed internal records: status events and tracker state carry their writer's
signature in two Kafka headers, and readers trust only what verifies.

``crb-signer`` is the key id, ``crb-signature`` the base64 Ed25519 signature over
``context || value`` (``keys.STATUS_CONTEXT`` or ``keys.TRACKER_STATE_CONTEXT``)
by a service key the directory lists (see ``keys._services``). Status events are
written by the router (routing outcomes, receipts and case decisions) and by the
tracker (SLA timers, closing a revoked sender's handovers); tracker state only by
the tracker. A record's signing key must have been valid at the record's own time.
Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from adapters.kafka._records import OutRecord, Record
from keys import RecordSigner, verify_record
from schemas import Directory, ServiceRole

__all__ = ["SIGNATURE_HEADER", "SIGNER_HEADER", "sign", "signed_by"]

SIGNER_HEADER: Final = "crb-signer"
SIGNATURE_HEADER: Final = "crb-signature"


def sign(record: OutRecord, signer: RecordSigner, context: bytes) -> OutRecord:
    """``record`` with its writer's signature headers added."""
    value = record.value or b""
    headers = (
        *record.headers,
        (SIGNER_HEADER, signer.key_id.encode("ascii")),
        (SIGNATURE_HEADER, signer.sign(context, value).encode("ascii")),
    )
    return OutRecord(record.topic, record.key, record.value, headers)


def signed_by(
    record: Record,
    directory: Directory,
    roles: Iterable[ServiceRole],
    context: bytes,
    *,
    at: datetime,
) -> ServiceRole | None:
    """Which of ``roles`` signed ``record`` (a key valid at ``at``), or ``None``."""
    key_id = (record.header(SIGNER_HEADER) or b"").decode("ascii", errors="replace")
    signature = (record.header(SIGNATURE_HEADER) or b"").decode("ascii", errors="replace")
    value = record.value or b""
    for role in roles:
        if verify_record(
            directory, role, context, value, key_id=key_id, signature=signature, at=at
        ):
            return role
    return None
