"""Service identities: the router and the tracker sign what they write.

Kafka ACLs decide who may write the audit, status and tracker topics; these
signatures decide what a reader believes. The directory publishes each service's
Ed25519 keys (``Directory.services``); every instance of a service holds the
private key in its keystore (owner ``service.<role>``). A record is trusted only
if its signature verifies with a key of the expected role that was valid at the
record's own time — so even a stolen router or tracker *login* cannot forge an
audit link or a status event, and a forged one is reported and ignored.

Signatures are over ``context || data`` with a context per kind of record, so a
signature on one kind is never valid on another:

- :data:`AUDIT_CONTEXT` — the audit record's ``hash`` (which covers its content
  and the previous link);
- :data:`STATUS_CONTEXT` — the exact status-event value bytes;
- :data:`TRACKER_STATE_CONTEXT` — the exact tracker-state value bytes;
- :data:`ACTION_CONTEXT` — the exact operator-action value bytes (the tracker
  records a dead letter redriven on an operator's word);
- :data:`NOTICE_CONTEXT` — the exact deconfliction-notice value bytes (the tracker
  writes them into participants' inboxes);
- :data:`ESCALATION_CONTEXT` — the exact escalation-notice value bytes (the tracker
  asks a sender to re-seal an overdue referral to the escalation recipient).

Pure (no I/O) except :func:`service_signing_key`, which reads the keystore.
Signing is deterministic (Ed25519).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from keys import _primitives as P
from keys._directory import (
    DEFAULT_KEY_VALIDITY,
    DEFAULT_ROTATION_GRACE,
    record_for,
    verify_key_of,
)
from keys._errors import DirectoryError, DirectoryReason, KeystoreError
from keys._keys import KeyId, SigningKey, VerifyKey
from keys._keystore import Keystore
from schemas import Directory, PublicKeyRecord, Service, ServiceRole

__all__ = [
    "ACTION_CONTEXT",
    "AUDIT_CONTEXT",
    "ESCALATION_CONTEXT",
    "NOTICE_CONTEXT",
    "STATUS_CONTEXT",
    "TRACKER_STATE_CONTEXT",
    "RecordSigner",
    "service_owner",
    "service_signing_key",
    "set_service_key",
    "verify_record",
]

AUDIT_CONTEXT: Final = b"crb/audit/v1\x00"
STATUS_CONTEXT: Final = b"crb/status/v1\x00"
TRACKER_STATE_CONTEXT: Final = b"crb/tracker-state/v1\x00"
ACTION_CONTEXT: Final = b"crb/operator-action/v1\x00"
NOTICE_CONTEXT: Final = b"crb/tracker-notice/v1\x00"
ESCALATION_CONTEXT: Final = b"crb/tracker-escalation/v1\x00"


def service_owner(role: ServiceRole) -> str:
    """The keystore owner holding a service's private keys."""
    return f"service.{role.value}"


@dataclass(frozen=True, slots=True)
class RecordSigner:
    """A service's private signing key, for the records it writes."""

    role: ServiceRole
    key: SigningKey = field(repr=False)

    @property
    def key_id(self) -> str:
        return self.key.key_id

    def sign(self, context: bytes, data: bytes) -> str:
        """Base64 Ed25519 signature over ``context || data``."""
        return base64.b64encode(self.key.sign(context + data)).decode("ascii")


def verify_record(
    directory: Directory,
    role: ServiceRole,
    context: bytes,
    data: bytes,
    *,
    key_id: str | None,
    signature: str | None,
    at: datetime,
) -> bool:
    """Whether ``signature`` over ``context || data`` is by a key of the ``role``
    service that was valid at ``at`` (the record's own time). Never raises."""
    if not key_id or not signature:
        return False
    service = directory.service(role)
    record = service.key(key_id) if service is not None else None
    if record is None or not record.is_valid_at(at):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        return verify_key_of(record).verify(raw, context + data)
    except (binascii.Error, ValueError, P.CryptoFailure):
        return False


def set_service_key(
    directory: Directory,
    role: ServiceRole,
    key: VerifyKey,
    *,
    now: datetime,
    validity: timedelta = DEFAULT_KEY_VALIDITY,
    grace: timedelta = DEFAULT_ROTATION_GRACE,
) -> Directory:
    """The next directory version with ``key`` as the ``role`` service's signing key
    from ``now``; its older keys end at ``now + grace`` (records they signed stay
    verifiable, being dated before)."""
    added = record_for(key, not_before=now, not_after=now + validity)
    current = directory.service(role)
    cut = now + grace
    kept: list[PublicKeyRecord] = []
    if current is not None:
        kept = [
            r.model_copy(update={"not_after": cut}) if r.not_after > cut else r
            for r in current.keys
            if r.not_after > now - validity
        ]
    service = Service(role=role, keys=(*kept, added))
    others = [s for s in directory.services if s.role is not role]
    data = directory.model_dump()
    data.update(
        version=directory.version + 1,
        issued_at=now,
        services=[s.model_dump() for s in (*others, service)],
    )
    try:
        return Directory.model_validate(data)
    except ValueError as exc:
        raise DirectoryError(DirectoryReason.INVALID, str(exc)) from exc


def service_signing_key(
    store: Keystore, directory: Directory, role: ServiceRole, now: datetime
) -> RecordSigner:
    """The ``role`` service's newest valid key per the directory, from the keystore;
    ``KeystoreError`` (with what to do) if there is none."""
    service = directory.service(role)
    valid = service.keys_valid_at(now) if service is not None else ()
    if not valid:
        raise KeystoreError(
            f"the directory lists no valid signing key for the {role.value}: "
            f"run `crb service rotate {role.value}`"
        )
    newest = max(valid, key=lambda r: (r.not_before, r.key_id))
    return RecordSigner(role, store.signing_key(service_owner(role), KeyId(newest.key_id)))
