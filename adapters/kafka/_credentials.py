"""Kafka principals and their SCRAM credentials.

Every participant, every service and the provisioning admin connects as its own
Kafka principal (SASL SCRAM-SHA-512): a participant as its participant id
(``nl.hotline``), the services as :data:`ROUTER` and :data:`TRACKER`, the operator's
provisioning commands as :data:`ADMIN`. Service names contain no dot, so they can
never be mistaken for a participant id (which always has one).

A :class:`Credential` is kept in a :class:`CredentialStore` — one JSON file per
principal, ``<folder>/<username>.json``, mode 0600 — and turned into connection
settings with :meth:`Credential.apply`. Passwords are :class:`~pydantic.SecretStr`:
never printed, never logged.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from adapters.kafka._settings import KafkaSettings
from keys import atomic_write

__all__ = [
    "ADMIN",
    "BROKER",
    "ROUTER",
    "SERVICE_PRINCIPALS",
    "TRACKER",
    "Credential",
    "CredentialError",
    "CredentialStore",
]

ADMIN: Final = "crb-admin"
"""Provisioning: topics, SCRAM users, ACLs, the directory topic (a super user)."""
BROKER: Final = "crb-broker"
"""The brokers among themselves (a super user; its secret never leaves the brokers)."""
ROUTER: Final = "crb-router"
TRACKER: Final = "crb-tracker"
SERVICE_PRINCIPALS: Final = frozenset({ROUTER, TRACKER})

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CredentialError(Exception):
    """A credential file is missing, unreadable or unsafe; the message says which."""


class Credential(BaseModel):
    """One principal's SCRAM-SHA-512 login."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(pattern=_USERNAME.pattern)
    password: SecretStr
    mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"

    @classmethod
    def generate(cls, username: str) -> Credential:
        """A fresh random password (256 bits, URL-safe: no character SCRAM tools split on)."""
        return cls(username=username, password=SecretStr(secrets.token_urlsafe(32)))

    def apply(self, kafka: KafkaSettings) -> KafkaSettings:
        """``kafka`` connecting as this principal (SASL over TLS if ``kafka`` uses TLS)."""
        tls = kafka.security_protocol in ("SSL", "SASL_SSL")
        protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
        return kafka.model_copy(
            update={
                "security_protocol": protocol,
                "sasl_mechanism": self.mechanism,
                "sasl_username": self.username,
                "sasl_password": self.password,
            }
        )


class CredentialStore:
    """A folder of credential files (0600 each, the folder 0700)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, username: str) -> Path:
        if not _USERNAME.match(username):
            raise CredentialError(f"not a usable principal name: {username!r}")
        return self.folder / f"{username}.json"

    def load(self, username: str) -> Credential | None:
        """The stored credential, ``None`` if there is none."""
        path = self.path(username)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        if mode & 0o077:
            raise CredentialError(f"{path}: readable by group or others; run chmod 600")
        try:
            return Credential.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise CredentialError(f"{path}: not a readable credential") from exc

    def save(self, credential: Credential) -> Path:
        path = self.path(credential.username)
        data = {
            "username": credential.username,
            "password": credential.password.get_secret_value(),
            "mechanism": credential.mechanism,
        }
        atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)
        return path

    def ensure(self, username: str) -> Credential:
        """The stored credential, or a new one saved first."""
        found = self.load(username)
        if found is not None:
            return found
        credential = Credential.generate(username)
        self.save(credential)
        return credential

    def delete(self, username: str) -> None:
        self.path(username).unlink(missing_ok=True)
