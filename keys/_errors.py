"""The exceptions of ``keys``, and the stable reason codes behind them.

::

    KeysError                      base; never raised itself
    ├── EnvelopeError              an envelope was refused (the peer's fault, or an
    │                              attacker's); ``.reason``: a ``schemas.Reason`` of
    │                              ``schemas.OPEN_REASONS``; str() is the same opaque
    │                              text for every reason
    ├── DirectoryError             a federation directory was refused (bad signature,
    │                              rollback, inconsistent keys); ``.reason: DirectoryReason``
    ├── CryptoFailure              (keys._primitives) a key file or key encoding is
    │                              unreadable or of the wrong kind; no detail
    ├── KeystoreError              the local keystore is missing, unreadable, has a
    │                              wrong passphrase or unsafe permissions (our fault)
    └── SealError                  ``seal`` was asked for something it cannot do
                                   (the caller's fault; a plain message)

Envelope reasons are the federation's one refusal vocabulary (``schemas.Reason``):
the router writes them to the dead-letter topic and to metrics, a recipient to its
quarantine notes.
"""

from __future__ import annotations

import enum
from typing import Final

from schemas import Reason

__all__ = [
    "ENVELOPE_REFUSED",
    "DirectoryError",
    "DirectoryReason",
    "EnvelopeError",
    "KeysError",
    "KeystoreError",
    "SealError",
]

ENVELOPE_REFUSED: Final = "envelope refused"


class KeysError(Exception):
    """Base of every error raised by ``keys``."""


class EnvelopeError(KeysError):
    """An envelope was refused. ``str()`` is always ``"envelope refused"``.

    ``reason`` is the precise, stable code for logs, dead letters and metrics;
    never show it to an untrusted peer as an oracle, never put key material or
    payload in it.
    """

    def __init__(self, reason: Reason) -> None:
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
    OTHER_FEDERATION = "other_federation"
    """Validly signed, but for another federation than the one being followed."""


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
