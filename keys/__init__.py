"""Trust: participant keys, the keystore, the signed federation directory, and
the sealed envelope (``seal`` / ``verify`` / ``open``).

Routing and adapter code use only what is exported here; raw primitives live in
``keys._primitives`` and nowhere else. The envelope byte format is specified in
``schemas/ENVELOPE.md``. Errors (see ``keys._errors``)::

    KeysError
    ├── EnvelopeError   .reason: schemas.Reason   (opaque str(): "envelope refused")
    ├── DirectoryError  .reason: DirectoryReason
    ├── KeystoreError
    └── SealError
"""

from keys._deconfliction import (
    DECONFLICTION_KEY_LEN,
    DeconflictionKey,
    deconfliction_tags,
    tag_inputs,
)
from keys._directory import (
    DIRECTORY_SIGNATURE_CONTEXT,
    SignedDirectory,
    TrustStore,
    add_participant,
    current_sealing_key,
    current_signing_record,
    load_directory,
    record_for,
    revoke,
    rotate,
    sealing_key_of,
    set_status,
    sign_directory,
    verify_directory,
    verify_key_of,
)
from keys._envelope import (
    DEFAULT_LIMITS,
    FORMAT_VERSION,
    MAGIC,
    Draft,
    Limits,
    Opened,
    Parsed,
    Rng,
    VerifiedEnvelope,
    WrappedKey,
    parse,
    seal,
    verify,
)
from keys._envelope import open_envelope as open
from keys._errors import (
    DirectoryError,
    DirectoryReason,
    EnvelopeError,
    KeysError,
    KeystoreError,
    SealError,
)
from keys._files import atomic_write, atomic_write_many, fsync_dir
from keys._keys import Kem, KeyId, OpeningKey, SealingKey, SigningKey, VerifyKey
from keys._keystore import FEDERATION_OWNER, Keystore
from keys._live import LiveDirectory, Offer, OfferOutcome, answerable
from keys._pending import PendingCopyError, open_for_self, seal_for_self
from keys._services import (
    ACTION_CONTEXT,
    AUDIT_CONTEXT,
    ESCALATION_CONTEXT,
    NOTICE_CONTEXT,
    STATUS_CONTEXT,
    TRACKER_STATE_CONTEXT,
    RecordSigner,
    service_owner,
    service_signing_key,
    set_service_key,
    verify_record,
)

__all__ = [
    "ACTION_CONTEXT",
    "AUDIT_CONTEXT",
    "DECONFLICTION_KEY_LEN",
    "DEFAULT_LIMITS",
    "DIRECTORY_SIGNATURE_CONTEXT",
    "ESCALATION_CONTEXT",
    "FEDERATION_OWNER",
    "FORMAT_VERSION",
    "MAGIC",
    "NOTICE_CONTEXT",
    "STATUS_CONTEXT",
    "TRACKER_STATE_CONTEXT",
    "DeconflictionKey",
    "DirectoryError",
    "DirectoryReason",
    "Draft",
    "EnvelopeError",
    "Kem",
    "KeyId",
    "KeysError",
    "Keystore",
    "KeystoreError",
    "Limits",
    "LiveDirectory",
    "Offer",
    "OfferOutcome",
    "Opened",
    "OpeningKey",
    "Parsed",
    "PendingCopyError",
    "RecordSigner",
    "Rng",
    "SealError",
    "SealingKey",
    "SignedDirectory",
    "SigningKey",
    "TrustStore",
    "VerifiedEnvelope",
    "VerifyKey",
    "WrappedKey",
    "add_participant",
    "answerable",
    "atomic_write",
    "atomic_write_many",
    "current_sealing_key",
    "current_signing_record",
    "deconfliction_tags",
    "fsync_dir",
    "load_directory",
    "open",
    "open_for_self",
    "parse",
    "record_for",
    "revoke",
    "rotate",
    "seal",
    "seal_for_self",
    "sealing_key_of",
    "service_owner",
    "service_signing_key",
    "set_service_key",
    "set_status",
    "sign_directory",
    "tag_inputs",
    "verify",
    "verify_directory",
    "verify_key_of",
    "verify_record",
]
