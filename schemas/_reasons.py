"""The one refusal vocabulary: why a message was refused, and by which stage.

Every refusal in the federation — an envelope the router dead-letters, one a
recipient quarantines, a header routing cannot serve, a status event's reason —
is a member of :class:`Reason`. Each stage may produce only its named subset::

    VERIFY_REASONS       keys.parse / keys.verify (no private key: the router's view)
    OPEN_REASONS         keys.open: VERIFY_REASONS and the recipient's own checks
    ROUTING_REASONS      schemas.resolve / schemas.check_routing
    DEAD_LETTER_REASONS  the router: VERIFY | ROUTING | its memory's checks
    QUARANTINE_REASONS   a receiving adapter: OPEN | the local system refused it
    STATUS_REASONS       a status event: the router's refusals of a verified header,
                         orphan, the SLA timers, and a handover closed because its
                         sender was revoked

The string values are a public contract (dead-letter headers, quarantine notes,
status events, metrics): they never change; members may be added. A test shows
every member produced by the stage that owns it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "DEAD_LETTER_REASONS",
    "OPEN_REASONS",
    "QUARANTINE_REASONS",
    "REDRIVE_REASONS",
    "ROUTING_REASONS",
    "STATUS_REASONS",
    "VERIFY_REASONS",
    "Reason",
]


class Reason(StrEnum):
    """Why a message was refused (see the module docstring for who says what)."""

    # -- the envelope, checked without a private key (in this order) -----------
    TOO_LARGE = "too_large"
    """Longer than the configured maximum; refused before parsing."""
    MALFORMED = "malformed"
    """Framing, lengths, JSON or header fields do not parse, or are not canonical."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """Unknown magic/format version, KEM, or header schema version."""
    UNKNOWN_SENDER = "unknown_sender"
    """The header's sender is not in the directory."""
    SENDER_SUSPENDED = "sender_suspended"
    """The sender is in the directory but not active."""
    WRONG_OUTBOX = "wrong_outbox"
    """The signed sender is not the participant whose outbox the record came from."""
    UNKNOWN_KEY = "unknown_key"
    """The signing key (or a wrapped key's recipient key) is not in the directory,
    or the recipient holds no opening key with the wrapped key's id."""
    KEY_REVOKED = "key_revoked"
    """A key the envelope uses was revoked at or before the verification time."""
    KEY_EXPIRED = "key_expired"
    """A key the envelope uses is outside its validity window."""
    BAD_SIGNATURE = "bad_signature"
    """The Ed25519 signature does not verify."""
    STALE = "stale"
    """Created longer ago than the freshness window."""
    FUTURE_DATED = "future_dated"
    """Created further in the future than the allowed clock skew."""
    # -- the envelope, opened by a recipient ----------------------------------------
    NOT_A_RECIPIENT = "not_a_recipient"
    """No wrapped key for the opening participant."""
    DECRYPT_FAILED = "decrypt_failed"
    """The HPKE unwrap or the payload AEAD failed."""
    KEY_COMMITMENT_MISMATCH = "key_commitment_mismatch"
    """The unwrapped content key does not match the header's commitment."""
    SCHEMA_INVALID = "schema_invalid"
    """The decrypted payload is not a valid instance of the header's message type."""
    PAYLOAD_MISMATCH = "payload_mismatch"
    """The decrypted payload contradicts the signed clear header."""
    # -- the router's memory ----------------------------------------------------------
    DUPLICATE_MESSAGE = "duplicate_message"
    """The message id was forwarded before."""
    UNAUTHORISED = "unauthorised"
    """The sender's role may not send this message type, or a reply does not answer
    a message forwarded to the replier from its recipient."""
    UNKNOWN_ORIGINAL = "unknown_original"
    """A reply to a message the router never forwarded (or forgot: reply window)."""
    # -- routing -------------------------------------------------------------------------
    NO_RECIPIENT = "no_recipient"
    """Routing found nobody, not even the coordinator."""
    REPLY_NEEDS_ONE_RECIPIENT = "reply_needs_one_recipient"
    """A receipt or case acknowledgement must name exactly the original sender."""
    UNKNOWN_RECIPIENT = "unknown_recipient"
    """A reply's recipient is not in the directory."""
    RECIPIENT_SUSPENDED = "recipient_suspended"
    """A reply's recipient is not active."""
    REPLY_TO_SELF = "reply_to_self"
    """A reply addressed to its own sender."""
    RECIPIENT_MISMATCH = "recipient_mismatch"
    """The declared recipients are not those the directory's rules resolve."""
    # -- a receiving adapter ---------------------------------------------------------------
    SINK_REFUSED = "sink_refused"
    """The participant's own system refused the message for good (e.g. HTTP 422)."""
    # -- status events -------------------------------------------------------------------
    ORPHAN = "orphan"
    """Routed to the coordinator: the jurisdiction has no active receiver."""
    RECEIPT_OVERDUE = "receipt_overdue"
    """No signed receipt within the priority's deadline (overdue, then escalated)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """Still no receipt after escalation: the handover failed."""
    SENDER_REVOKED = "sender_revoked"
    """The sender was revoked or suspended after it sent: no receipt can be returned
    to it, so the tracker closes the handover (and the recipient records it)."""


R = Reason

VERIFY_REASONS: Final = frozenset(
    {
        R.TOO_LARGE,
        R.MALFORMED,
        R.UNSUPPORTED_VERSION,
        R.UNKNOWN_SENDER,
        R.SENDER_SUSPENDED,
        R.WRONG_OUTBOX,
        R.UNKNOWN_KEY,
        R.KEY_REVOKED,
        R.KEY_EXPIRED,
        R.BAD_SIGNATURE,
        R.STALE,
        R.FUTURE_DATED,
    }
)
OPEN_REASONS: Final = VERIFY_REASONS | {
    R.NOT_A_RECIPIENT,
    R.DECRYPT_FAILED,
    R.KEY_COMMITMENT_MISMATCH,
    R.SCHEMA_INVALID,
    R.PAYLOAD_MISMATCH,
}
ROUTING_REASONS: Final = frozenset(
    {
        R.UNKNOWN_SENDER,
        R.SENDER_SUSPENDED,
        R.NO_RECIPIENT,
        R.REPLY_NEEDS_ONE_RECIPIENT,
        R.UNKNOWN_RECIPIENT,
        R.RECIPIENT_SUSPENDED,
        R.REPLY_TO_SELF,
        R.RECIPIENT_MISMATCH,
    }
)
DEAD_LETTER_REASONS: Final = (
    VERIFY_REASONS | ROUTING_REASONS | {R.DUPLICATE_MESSAGE, R.UNAUTHORISED, R.UNKNOWN_ORIGINAL}
)
QUARANTINE_REASONS: Final = OPEN_REASONS | {R.SINK_REFUSED}
STATUS_REASONS: Final = (DEAD_LETTER_REASONS - VERIFY_REASONS - {R.DUPLICATE_MESSAGE}) | {
    R.ORPHAN,
    R.RECEIPT_OVERDUE,
    R.RETRIES_EXHAUSTED,
    R.SENDER_REVOKED,
}
"""A dead-letter reason reaches the status stream only for a header whose signature
verified (an unverified header could name any message id) and never for a duplicate
(its status would overwrite the original's)."""

REDRIVE_REASONS: Final = frozenset(
    {
        R.UNKNOWN_SENDER,
        R.SENDER_SUSPENDED,
        R.UNKNOWN_KEY,
        R.KEY_EXPIRED,
        R.FUTURE_DATED,
        R.UNAUTHORISED,
        R.UNKNOWN_ORIGINAL,
        R.NO_RECIPIENT,
        R.UNKNOWN_RECIPIENT,
        R.RECIPIENT_SUSPENDED,
        R.RECIPIENT_MISMATCH,
    }
)
"""Dead letters worth sending through the router again once the cause is fixed: a
newer directory (a participant added or reinstated, a key now valid, a role or
rule changed), the original of a reply forwarded at last, the clock reaching a
future-dated envelope's time. Every other reason can never succeed with the same
bytes (a bad signature, a record in another participant's outbox, a duplicate,
an envelope too old or malformed) and is refused."""
