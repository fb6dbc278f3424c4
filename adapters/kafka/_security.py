"""The cluster's security plane: ACLs and SCRAM users.

aiokafka has no API for either; kafka-python (3.x, pure Python, maintained) has
``create_acls`` / ``describe_acls`` / ``delete_acls`` and
``alter_user_scram_credentials`` / ``describe_user_scram_credentials`` and works
against Kafka 4.x, so it is used for this one job — from here only, like every
other Kafka client. Its calls are synchronous; :class:`SecurityAdmin` runs them in
a worker thread and translates its errors into the plumbing's tree.

A :class:`Grant` is one ALLOW ACL in plain values, so the desired set can be
computed by a pure function and compared with what the cluster has.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapters.kafka._credentials import Credential
from adapters.kafka._errors import AccessDenied, Refused, TransportError, Unavailable, translate
from adapters.kafka._settings import KafkaSettings

__all__ = ["Grant", "ResourceKind", "SecurityAdmin"]

_ITERATIONS = 8192
_DISABLED = 8191
"""The PBKDF2 iteration count that marks a disabled user (a random password)."""

T = TypeVar("T")

ResourceKind = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
Operation = Literal["READ", "WRITE", "DESCRIBE", "ALL", "ALTER", "CREATE", "DELETE"]


@dataclass(frozen=True, order=True, slots=True)
class Grant:
    """``principal`` may ``operation`` the resource ``kind`` named ``name`` (exactly,
    or every name starting with it when ``prefixed``), from any host."""

    principal: str
    """A user name (``nl.hotline``, ``crb-router``), without ``User:``."""
    kind: ResourceKind
    name: str
    operation: Operation
    prefixed: bool = False

    def __str__(self) -> str:
        pattern = "prefix " if self.prefixed else ""
        return f"{self.principal}: {self.operation} {self.kind} {pattern}{self.name}"


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except TransportError:
        raise
    except Exception as exc:
        from kafka.errors import KafkaError as KpError

        if isinstance(exc, KpError | OSError | TimeoutError):
            raise translate(exc) from exc
        raise


class SecurityAdmin:
    """ACLs and SCRAM users of the cluster (needs a principal allowed to alter them)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def _client(self) -> Any:
        from kafka.admin import KafkaAdminClient

        s = self.settings
        kwargs: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap.split(","),
            "security_protocol": s.security_protocol,
            "request_timeout_ms": s.request_timeout_ms,
            "bootstrap_timeout_ms": s.connect_timeout_ms,
            "client_id": "crb-provisioning",
        }
        if s.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = s.sasl_mechanism
            kwargs["sasl_plain_username"] = s.sasl_username
            kwargs["sasl_plain_password"] = (
                s.sasl_password.get_secret_value() if s.sasl_password else None
            )
        if s.security_protocol in ("SSL", "SASL_SSL") and s.ssl_cafile is not None:
            kwargs["ssl_cafile"] = str(s.ssl_cafile)
        return KafkaAdminClient(**kwargs)

    def _reachable(self) -> None:
        """Raise ``Unavailable`` at once if no bootstrap server accepts a connection
        (kafka-python would retry for ``connect_timeout_ms`` and leak its socket)."""
        timeout = self.settings.connect_timeout_ms / 1000
        servers = self.settings.bootstrap.split(",")
        for server in servers:
            host, _, port = server.strip().rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
                return
            except (OSError, ValueError):
                continue
        raise Unavailable(f"no Kafka server answered at {self.settings.bootstrap}")

    async def _call(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            self._reachable()
            with _translated():
                try:
                    client = self._client()
                except Exception as exc:  # kafka-python's "NoBrokersAvailable" hides why
                    name = type(exc).__name__
                    if "Authentication" in name or "Sasl" in name:
                        raise AccessDenied(f"Kafka refused the admin login ({name})") from exc
                    raise
                try:
                    return fn(client)
                finally:
                    client.close()

        return await asyncio.to_thread(run)

    # -- ACLs ------------------------------------------------------------------------
    async def grants(self) -> set[Grant]:
        """Every ALLOW ACL on the cluster, as grants (DENY ACLs are not ours)."""
        from kafka.admin import (
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePatternFilter,
            ResourceType,
        )

        def describe(client: Any) -> Any:
            everything = ACLFilter(
                None,
                None,
                ACLOperation.ANY,
                ACLPermissionType.ALLOW,
                ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
            )
            acls, error = client.describe_acls(everything)
            if error.errno != 0:
                raise translate(error(f"describing ACLs failed: {error.__name__}"))
            return acls

        acls = await self._call(describe)
        out: set[Grant] = set()
        for acl in acls:
            if not acl.principal.startswith("User:"):
                continue
            out.add(
                Grant(
                    principal=acl.principal[len("User:") :],
                    kind=acl.resource_pattern.resource_type.name,
                    name=acl.resource_pattern.resource_name,
                    operation=acl.operation.name,
                    prefixed=acl.resource_pattern.pattern_type.name == "PREFIXED",
                )
            )
        return out

    @staticmethod
    def _acl(grant: Grant) -> Any:
        from kafka.admin import (
            ACL,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePattern,
            ResourceType,
        )

        pattern = (
            ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL
        )
        return ACL(
            f"User:{grant.principal}",
            "*",
            ACLOperation[grant.operation],
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType[grant.kind], grant.name, pattern),
        )

    async def create(self, grants: Iterable[Grant]) -> None:
        acls = [self._acl(g) for g in grants]
        if not acls:
            return

        def create(client: Any) -> None:
            result = client.create_acls(acls)
            if result["failed"]:
                error = result["failed"][0]  # kafka-python gives the error class
                raise translate(error(f"creating ACLs failed: {error.__name__}"))

        await self._call(create)

    async def delete(self, grants: Iterable[Grant]) -> None:
        from kafka.admin import ACLFilter, ResourcePatternFilter

        filters = []
        for g in grants:
            acl = self._acl(g)
            pattern = acl.resource_pattern
            filters.append(
                ACLFilter(
                    acl.principal,
                    acl.host,
                    acl.operation,
                    acl.permission_type,
                    ResourcePatternFilter(
                        pattern.resource_type, pattern.resource_name, pattern.pattern_type
                    ),
                )
            )
        if not filters:
            return

        def delete(client: Any) -> None:
            for _filter, _matches, error in client.delete_acls(filters):
                if error is not None and error.errno != 0:
                    raise translate(error(f"deleting ACLs failed: {error.__name__}"))

        await self._call(delete)

    # -- SCRAM users ----------------------------------------------------------------
    #
    # A user is never deleted: on Kafka 4.4 a RemoveUserScramCredentialRecord in the
    # metadata log made a restarted broker refuse every SCRAM login (all users of the
    # mechanism, the admin's and the brokers' included) — found by this project's
    # broker-restart test. A user who must lose access is *disabled* instead: its
    # password is replaced by a random one nobody holds, with a distinct PBKDF2
    # iteration count that marks it as disabled.

    async def scram_users(self) -> set[str]:
        """Users that can log in (disabled ones are left out)."""

        def describe(client: Any) -> set[str]:
            users = client.describe_user_scram_credentials()
            return {
                user
                for user, info in users.items()
                if not any(ci["iterations"] == _DISABLED for ci in info["credential_infos"])
            }

        return await self._call(describe)

    async def upsert_users(self, credentials: Iterable[Credential]) -> None:
        """Create or change each SCRAM-SHA-512 user (PBKDF2, 8,192 iterations)."""
        await self._set(
            (c.username, c.password.get_secret_value(), _ITERATIONS) for c in credentials
        )

    async def disable_users(self, usernames: Iterable[str]) -> None:
        """Make each user unable to log in (see above: never a deletion)."""
        await self._set(
            (u, Credential.generate(u).password.get_secret_value(), _DISABLED) for u in usernames
        )

    async def _set(self, users: Iterable[tuple[str, str, int]]) -> None:
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        changes = [
            UserScramCredentialUpsertion(
                name, ScramMechanism.SCRAM_SHA_512, password, iterations=iterations
            )
            for name, password, iterations in users
        ]
        if changes:
            await self._call(lambda c: self._check(c.alter_user_scram_credentials(changes)))

    @staticmethod
    def _check(result: dict[str, Any]) -> None:
        failed = {user: error for user, error in result.items() if error}
        if failed:
            user, error = next(iter(failed.items()))
            text = str(error)
            if "permission" in text.lower() or "authoriz" in text.lower():
                raise AccessDenied(f"not allowed to change the SCRAM credential of {user!r}")
            raise Refused(f"changing the SCRAM credential of {user!r} failed: {text[:200]}")
