"""Who may read the tracker's HTTP API, and what each caller sees.

Design decisions:

- **Bearer tokens, stored hashed.** A token is ``crb_<id>_<secret>``: ``id`` (12 hex
  digits) is public and names the token in listings, logs and ``crb token revoke``;
  ``secret`` is 32 random bytes (URL-safe base64). The store keeps only the SHA-256
  of the whole token — a fast hash is enough for 256 bits of entropy (nothing to
  brute-force), and a stolen store lets no one call the API. Comparison is
  constant-time. The token is shown once, when issued.
- **Two scopes.** ``operator`` sees everything. ``participant:<id>`` sees only the
  handovers it takes part in: as sender, as recipient, or as the escalation
  recipient it was asked to act for — a hotline's case system can follow its own
  referrals and nothing else. Another participant's handover is answered 404, as if
  it did not exist, so a participant cannot probe for case ids.
- **Every token expires** (default 90 days) and can be revoked at once: the store is
  a file (``$CRB_HOME/tokens.json``, 0600) that the running tracker reloads when it
  changes, so ``crb token revoke`` takes effect on the next request, without restart.
- **The directory has the last word.** A participant token stops working (403) as
  soon as the live directory no longer lists its participant as active — a
  suspended or revoked participant loses the API together with Kafka.
- **401 vs 403.** No token, a malformed, unknown, expired or revoked token: 401 with
  ``WWW-Authenticate: Bearer``. A valid token that may not do this (a participant
  asking about another participant, a participant no longer active): 403.
"""

from __future__ import annotations

from adapters._tokens import (
    DEFAULT_TOKEN_TTL,
    OPERATOR,
    Access,
    Caller,
    Refusal,
    TokenError,
    TokenRecord,
    TokenStore,
    authenticate,
    directory_check,
    new_token,
    parse_scope,
)
from broker.tracker._machine import Handover

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "OPERATOR",
    "Access",
    "Caller",
    "Refusal",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "authenticate",
    "directory_check",
    "new_token",
    "parse_scope",
    "visible_to",
]


def visible_to(h: Handover, participant: str) -> bool:
    """Whether ``participant`` takes part in ``h``: sender, recipient, or the
    escalation recipient asked to act for it."""
    return participant in (h.sender, h.recipient, h.escalated_to)
