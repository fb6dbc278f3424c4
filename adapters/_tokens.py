"""Bearer tokens, stored hashed: who may call an HTTP API of ours.

Used by the tracker's API (``operator`` and ``participant:<id>`` scopes) and by a
participant's intake API (``participant:<id>`` keys of that participant). Design
decisions (see ``broker.tracker._access`` for how the tracker applies them):

- A token is ``crb_<id>_<secret>``: ``id`` (12 hex digits) is public and names the
  token in listings, logs and revocations; ``secret`` is 32 random bytes
  (URL-safe base64). The store keeps only the SHA-256 of the whole token — a fast
  hash is enough for 256 bits of entropy, and a stolen store lets no one in.
  Comparison is constant-time. The token is shown once, when issued.
- Every token expires and can be revoked at once: the store is a file (0600) that
  a running server re-reads when it changes.
- 401 for no, a malformed, unknown, expired or revoked token (with
  ``WWW-Authenticate: Bearer``); 403 for a valid token that may not do this.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

import keys
from schemas import PARTICIPANT_ID_PATTERN, Directory, first_error, utcnow

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "OPERATOR",
    "Access",
    "Caller",
    "Refusal",
    "RefusalKind",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "authenticate",
    "directory_check",
    "new_token",
    "parse_scope",
]

OPERATOR = "operator"
PARTICIPANT_PREFIX = "participant:"
DEFAULT_TOKEN_TTL = timedelta(days=90)
_TOKEN = re.compile(r"^crb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_PARTICIPANT = re.compile(PARTICIPANT_ID_PATTERN)


class TokenError(ValueError):
    """A bad scope, an unknown token id, or an unreadable token store."""


def parse_scope(text: str) -> str:
    """``operator`` or ``participant:<id>`` (the id's syntax checked), normalised."""
    value = text.strip()
    if value == OPERATOR:
        return value
    if value.startswith(PARTICIPANT_PREFIX):
        pid = value.removeprefix(PARTICIPANT_PREFIX)
        if _PARTICIPANT.match(pid):
            return PARTICIPANT_PREFIX + pid
        raise TokenError(f"not a participant id: {pid!r}")
    raise TokenError(f"scope must be 'operator' or 'participant:<id>', not {text!r}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRecord(BaseModel):
    """One issued token, without its secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    scope: str
    label: str = Field(default="", max_length=200)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: AwareDatetime
    expires_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @property
    def participant(self) -> str | None:
        """The participant of a ``participant:<id>`` token; None for an operator."""
        if self.scope.startswith(PARTICIPANT_PREFIX):
            return self.scope.removeprefix(PARTICIPANT_PREFIX)
        return None

    def status(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


class _StoreFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    tokens: list[TokenRecord] = []


def new_token(
    scope: str, *, label: str, now: datetime, ttl: timedelta = DEFAULT_TOKEN_TTL
) -> tuple[str, TokenRecord]:
    """A fresh token (shown once) and the record the store keeps of it."""
    if ttl <= timedelta(0):
        raise TokenError("a token's lifetime must be positive")
    token_id = secrets.token_hex(6)
    token = f"crb_{token_id}_{secrets.token_urlsafe(32)}"
    record = TokenRecord(
        id=token_id,
        scope=parse_scope(scope),
        label=label,
        sha256=_digest(token),
        created_at=now,
        expires_at=now + ttl,
    )
    return token, record


class TokenStore:
    """The token file: issue, revoke, list; re-read whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._tokens: dict[str, TokenRecord] = {}

    def tokens(self) -> Mapping[str, TokenRecord]:
        """The tokens by id, as the file holds them now (re-read if it changed).

        Raises :class:`TokenError` for a file that is not a token store."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._tokens = None, {}
            return self._tokens
        except OSError as exc:
            raise TokenError(f"{self.path}: {exc.strerror}") from exc
        seen = (st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            try:
                data = _StoreFile.model_validate_json(self.path.read_bytes())
            except OSError as exc:
                raise TokenError(f"{self.path}: {exc.strerror}") from exc
            except ValidationError as exc:
                raise TokenError(f"{self.path}: not a token store: {first_error(exc)}") from exc
            self._tokens = {t.id: t for t in data.tokens}
            self._seen = seen
        return self._tokens

    def _save(self, tokens: Mapping[str, TokenRecord]) -> None:
        data = _StoreFile(tokens=sorted(tokens.values(), key=lambda t: (t.created_at, t.id)))
        body = json.dumps(data.model_dump(mode="json"), indent=2).encode() + b"\n"
        keys.atomic_write(self.path, body, mode=0o600)

    def issue(
        self, scope: str, *, label: str = "", now: datetime, ttl: timedelta = DEFAULT_TOKEN_TTL
    ) -> tuple[str, TokenRecord]:
        """Issue a token; the returned string is the only copy of it."""
        token, record = new_token(scope, label=label, now=now, ttl=ttl)
        tokens = dict(self.tokens())
        tokens[record.id] = record
        self._save(tokens)
        return token, record

    def revoke(self, token_id: str, *, now: datetime) -> TokenRecord:
        """Revoke a token by id (revoking twice keeps the first time)."""
        tokens = dict(self.tokens())
        found = tokens.get(token_id)
        if found is None:
            raise TokenError(f"no token with id {token_id!r} (crb token list)")
        if found.revoked_at is None:
            found = found.model_copy(update={"revoked_at": now})
            tokens[token_id] = found
            self._save(tokens)
        return found


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its token id and, for a participant token, who."""

    token_id: str
    participant: str | None

    @property
    def operator(self) -> bool:
        return self.participant is None


class RefusalKind(enum.IntEnum):
    UNAUTHENTICATED = 401
    FORBIDDEN = 403


@dataclass(frozen=True)
class Refusal:
    status: RefusalKind
    detail: str


_HOW = "send 'Authorization: Bearer <token>' (issue one with: crb token issue)"


def authenticate(
    authorization: str | None,
    tokens: Mapping[str, TokenRecord],
    now: datetime,
    participant_active: Callable[[str], str | None] = lambda _: None,
) -> Caller | Refusal:
    """Who sends ``authorization`` (the HTTP header's value), or why not (pure).

    ``participant_active(id)`` is None when the participant may use the API, else a
    reason (e.g. ``suspended``)."""
    if not authorization:
        return Refusal(RefusalKind.UNAUTHENTICATED, f"authentication required: {_HOW}")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return Refusal(RefusalKind.UNAUTHENTICATED, f"not a bearer token: {_HOW}")
    token = value.strip()
    match = _TOKEN.match(token)
    found = tokens.get(match.group(1)) if match else None
    digest = _digest(token)  # computed for unknown ids too: same work either way
    if found is None or not hmac.compare_digest(digest, found.sha256):
        return Refusal(RefusalKind.UNAUTHENTICATED, "unknown token")
    status = found.status(now)
    if status != "active":
        return Refusal(RefusalKind.UNAUTHENTICATED, f"token {found.id} is {status}")
    participant = found.participant
    if participant is not None and (why := participant_active(participant)) is not None:
        return Refusal(RefusalKind.FORBIDDEN, f"participant {participant} is {why}")
    return Caller(found.id, participant)


def directory_check(directory: Callable[[], Directory]) -> Callable[[str], str | None]:
    """``participant_active`` from the current directory: None for an active
    participant, else ``not in the directory`` or its status (``suspended``)."""

    def active(pid: str) -> str | None:
        p = directory().participant(pid)
        if p is None:
            return "not in the directory"
        return None if p.active else p.status.value

    return active


class Access:
    """What the API needs to authenticate a request: the token store (re-read when
    it changes), the directory's word on participants, and a clock."""

    def __init__(
        self,
        tokens: Callable[[], Mapping[str, TokenRecord]],
        *,
        participant_active: Callable[[str], str | None] = lambda _: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._tokens = tokens
        self._participant_active = participant_active
        self._clock = clock

    @classmethod
    def of(
        cls,
        store: TokenStore,
        directory: Callable[[], Directory],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> Access:
        """Tokens from ``store``; participants checked against ``directory()``."""
        return cls(store.tokens, participant_active=directory_check(directory), clock=clock)

    def check(self, authorization: str | None) -> Caller | Refusal:
        try:
            tokens = self._tokens()
        except TokenError as exc:  # an unreadable store lets no one in
            return Refusal(RefusalKind.UNAUTHENTICATED, f"token store unavailable: {exc}")
        return authenticate(authorization, tokens, self._clock(), self._participant_active)
