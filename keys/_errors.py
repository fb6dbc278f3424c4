"""The exceptions of ``keys``, and the stable reason codes behind them.

::

    KeysError                      base; never raised itself
    ├── EnvelopeError              an envelope was refused (the peer's fault, or an
    │                              attacker's); ``.reason: ReasonCode``; str() is the
    │                              same opaque text for every reason
    ├── DirectoryError             a federation directory was refused (bad signature,
    │                              rollback, inconsistent keys); ``.reason: DirectoryReason``
    ├── CryptoFailure              (keys._primitives) a key file or key encoding is
    │                              unreadable or of the wrong kind; no detail
    ├── KeystoreError              the local keystore is missing, unreadable, has a
    │                              wrong passphrase or unsafe permissions (our fault)
    └── SealError                  ``seal`` was asked for something it cannot do
                                   (the caller's fault; a plain message)

Reason codes are part of the public contract: the router writes them to the
dead-letter topic and to metrics, so their string values never change; new ones
may be added.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ENVELOPE_REFUSED",
    "DirectoryError",
    "DirectoryReason",
    "EnvelopeError",
    "KeysError",
    "KeystoreError",
    "ReasonCode",
    "SealError",
]

ENVELOPE_REFUSED: Final = "envelope refused"


class ReasonCode(enum.StrEnum):
    """Why an envelope was refused. Stable strings (dead letters, metrics, logs)."""

    TOO_LARGE = "too_large"
    """Longer than the configured maximum; refused before parsing."""
    MALFORMED = "malformed"
    """Framing, lengths, JSON or header fields do not parse."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """Unknown magic/format version, KEM, or header schema version."""
    UNKNOWN_SENDER = "unknown_sender"
    """The header's sender is not in the directory."""
    SENDER_INACTIVE = "sender_inactive"
    """The sender is in the directory but suspended/removed."""
    UNKNOWN_KEY = "unknown_key"
    """The signing key id is not one of the sender's signing keys, or (when opening)
    the recipient holds no opening key with the wrapped key's id."""
    KEY_REVOKED = "key_revoked"
    """The signing key was revoked at or before the verification time."""
    KEY_EXPIRED = "key_expired"
    """The signing key is outside its validity window (expired or not yet valid)."""
    BAD_SIGNATURE = "bad_signature"
    """The Ed25519 signature does not verify."""
    STALE = "stale"
    """Created longer ago than the freshness window."""
    FUTURE_DATED = "future_dated"
    """Created further in the future than the allowed clock skew."""
    NOT_A_RECIPIENT = "not_a_recipient"
    """No wrapped key for the opening participant."""
    DECRYPT_FAILED = "decrypt_failed"
    """The HPKE unwrap or the payload AEAD failed."""
    KEY_COMMITMENT_MISMATCH = "key_commitment_mismatch"
    """The unwrapped content key does not match the header's commitment."""
    SCHEMA_INVALID = "schema_invalid"
    """The decrypted payload is not a valid instance of the header's message type."""


class KeysError(Exception):
    """Base of every error raised by ``keys``."""


class EnvelopeError(KeysError):
    """An envelope was refused. ``str()`` is always ``"envelope refused"``.

    ``reason`` is the precise, stable code for logs, dead letters and metrics;
    never show it to an untrusted peer as an oracle, never put key material or
    payload in it.
    """

    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(ENVELOPE_REFUSED)
        self.reason = reason

    def __repr__(self) -> str:
        return f"EnvelopeError(reason={self.reason.value!r})"


class DirectoryReason(enum.StrEnum):
    """Why a signed federation directory was refused."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_ROOT_KEY = "unknown_root_key"
    ROLLBACK = "rollback"
    """Version lower than one already accepted."""
    EQUIVOCATION = "equivocation"
    """Same version as one already accepted, different content."""
    INVALID = "invalid"
    """Signed and fresh, but inconsistent (e.g. a key id that does not match its key)."""


class DirectoryError(KeysError):
    """A signed directory was refused; ``.reason`` says why, ``.detail`` in words."""

    def __init__(self, reason: DirectoryReason, detail: str) -> None:
        super().__init__(f"directory refused ({reason.value}): {detail}")
        self.reason = reason
        self.detail = detail


class KeystoreError(KeysError):
    """The local keystore cannot be used; the message says which file and why."""


class SealError(KeysError):
    """``seal`` cannot build the envelope (the caller's input: no valid recipient
    key, a signing key the directory does not list, a payload over the limit)."""
