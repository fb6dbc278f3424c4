"""What every command shares, declared once: common options, and the context they build.

A command asks for the option groups it needs with :func:`uses`; the decorator adds
those options to the command's signature (so they work after the command name, as
``crb send FILE --bootstrap HOST:PORT``) and hands the command a :class:`Context`
instead::

    @app.command("verify")
    @uses(TRUST)
    def directory_verify(ctx: Context) -> None:
        ctx.directory()

Groups: :data:`KAFKA` (``--bootstrap``, ``--prefix``) and :data:`TRUST`
(``--keystore``, ``--directory``, ``--trust-store``, ``--root-key``,
``--passphrase-env``). Settings are merged by pydantic-settings: the flags given,
then ``CRB_*`` environment variables, then defaults; without either, the bootstrap
of the local Kafka that ``crb kafka up`` started is used. Every path defaults to a
place under the one home, ``$CRB_HOME`` (``./.crb``).
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Concatenate, ParamSpec, TypeVar

import pydantic
import structlog
import typer

import keys
from adapters.kafka import ADMIN, CredentialStore, KafkaClients, KafkaSettings
from broker.cli._common import CliError, errors
from broker.settings import Settings
from schemas import Directory, ServiceRole, TopicNames, first_error, utcnow

if TYPE_CHECKING:
    from adapters import DirectoryFollower, Identity

__all__ = ["KAFKA", "TRUST", "Context", "uses"]

log = structlog.get_logger("crb.cli")

DEFAULT_PASSPHRASE_ENV = "CRB_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class _Opt:
    name: str
    annotation: Any
    default: Any


KAFKA = (
    _Opt(
        "bootstrap",
        Annotated[
            str | None,
            typer.Option(
                "--bootstrap",
                help="Kafka bootstrap host:port (default: $CRB_KAFKA__BOOTSTRAP, else the "
                "local Kafka).",
            ),
        ],
        None,
    ),
    _Opt(
        "prefix",
        Annotated[str | None, typer.Option("--prefix", help="Topic name prefix (crb).")],
        None,
    ),
)
TRUST = (
    _Opt(
        "keystore",
        Annotated[
            Path | None,
            typer.Option("--keystore", help="Keystore folder (default: $CRB_HOME/keys)."),
        ],
        None,
    ),
    _Opt(
        "directory",
        Annotated[
            Path | None,
            typer.Option(
                "--directory", help="Signed directory file (default: $CRB_HOME/directory.json)."
            ),
        ],
        None,
    ),
    _Opt(
        "trust_store",
        Annotated[
            Path | None,
            typer.Option(
                "--trust-store", help="Rollback-protection file (default: $CRB_HOME/trust.json)."
            ),
        ],
        None,
    ),
    _Opt(
        "root_key",
        Annotated[
            Path | None,
            typer.Option(
                "--root-key", help="Pinned root public key PEM (default: from the keystore)."
            ),
        ],
        None,
    ),
    _Opt(
        "passphrase_env",
        Annotated[
            str,
            typer.Option(
                "--passphrase-env", help="Environment variable holding the key passphrase."
            ),
        ],
        DEFAULT_PASSPHRASE_ENV,
    ),
)


def _local_bootstrap(home: Path) -> str | None:
    from broker.dev.kafka_local import LocalKafka, LocalKafkaError

    try:
        return LocalKafka(home / "kafka").bootstrap
    except LocalKafkaError:
        return None


class Context:
    """Settings, paths and trust material of one command invocation (lazy)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._settings: Settings | None = None
        self._directory: Directory | None = None
        self._clients: KafkaClients | None = None
        self._store: keys.Keystore | None = None

    def option(self, name: str) -> Any:
        return self._options.get(name)

    # -- settings and Kafka ---------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self.build_settings()
        return self._settings

    def build_settings(self, **overrides: dict[str, Any]) -> Settings:
        """Settings from the flags given, ``CRB_*`` variables and defaults (merged by
        pydantic-settings), with ``overrides`` per section (a command's own flags)."""
        given: dict[str, dict[str, Any]] = {k: dict(v) for k, v in overrides.items()}
        if (bootstrap := self._options.get("bootstrap")) is not None:
            given.setdefault("kafka", {})["bootstrap"] = bootstrap
        if (prefix := self._options.get("prefix")) is not None:
            given.setdefault("topics", {})["prefix"] = prefix
        try:
            settings = Settings(**given)  # type: ignore[arg-type]
        except pydantic.ValidationError as exc:
            raise CliError(f"invalid settings: {first_error(exc)}", exit_code=2) from exc
        if "bootstrap" not in given.get("kafka", {}) and "CRB_KAFKA__BOOTSTRAP" not in os.environ:
            local = _local_bootstrap(settings.home)
            if local:
                kafka = settings.kafka.model_copy(update={"bootstrap": local})
                settings = settings.model_copy(update={"kafka": kafka})
        return settings

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topics.prefix)

    @property
    def clients(self) -> KafkaClients:
        """Kafka clients logged in as the provisioning admin (operator commands)."""
        if self._clients is None:
            self._clients = KafkaClients(self.login(ADMIN))
        return self._clients

    @property
    def credentials(self) -> CredentialStore:
        """The principals' Kafka credentials this operator provisions (0600 files)."""
        return CredentialStore(self.home / "credentials")

    @property
    def kafka_configured(self) -> bool:
        """Whether a Kafka is named: ``--bootstrap``, ``CRB_KAFKA__BOOTSTRAP``, or a local
        Kafka started by ``crb kafka up``."""
        return (
            self._options.get("bootstrap") is not None
            or "CRB_KAFKA__BOOTSTRAP" in os.environ
            or _local_bootstrap(self.home) is not None
        )

    def record(self, action: str, **fields: object) -> None:
        """Append an operator action to ``$CRB_HOME/operator.log`` (JSON lines, 0600)."""
        import getpass
        import json

        entry = {"at": utcnow().isoformat(), "action": action, "by": getpass.getuser(), **fields}
        path = self.home / "operator.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with errors():
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry, default=str) + "\n")
                log.flush()
                os.fsync(log.fileno())

    def credential_stores(self) -> list[CredentialStore]:
        """Where principals' credentials are looked up: ``$CRB_HOME/credentials``, then
        the local Kafka's own (its admin), then the compose cluster's (``crb kafka
        compose``). Use one of the two Kafkas per home: the first admin found wins."""
        return [
            CredentialStore(self.home / "credentials"),
            CredentialStore(self.home / "kafka" / "credentials"),
            CredentialStore(self.home / "docker" / "credentials"),
        ]

    def login(self, principal: str) -> KafkaSettings:
        """The Kafka settings logging in as ``principal``: ``CRB_KAFKA__SASL_*`` given
        explicitly win; else the principal's credential file (see
        :meth:`credential_stores`); else the settings as they are."""
        kafka = self.settings.kafka
        if kafka.sasl_mechanism is not None:
            return kafka
        with errors():
            for store in self.credential_stores():
                credential = store.load(principal)
                if credential is not None:
                    return credential.apply(kafka)
        return kafka

    def clients_as(self, principal: str) -> KafkaClients:
        return KafkaClients(self.login(principal))

    # -- keys and the directory -----------------------------------------------------
    @property
    def keystore_dir(self) -> Path:
        return self._options.get("keystore") or self.home / "keys"

    @property
    def directory_path(self) -> Path:
        return self._options.get("directory") or self.home / "directory.json"

    @property
    def trust_path(self) -> Path:
        return self._options.get("trust_store") or self.home / "trust.json"

    @property
    def store(self) -> keys.Keystore:
        if self._store is None:
            env = self._options.get("passphrase_env") or DEFAULT_PASSPHRASE_ENV
            secret = os.environ.get(env)
            self._store = keys.Keystore(self.keystore_dir, secret.encode() if secret else None)
        return self._store

    def root_verify_key(self) -> keys.VerifyKey:
        path: Path | None = self._options.get("root_key")
        if path is None:
            folder = self.keystore_dir / keys.FEDERATION_OWNER
            found = sorted(folder.glob("ed25519-*.pub.pem"))
            if len(found) != 1:
                raise CliError(f"no single root public key in {folder}; pass --root-key", 2)
            path = found[0]
        try:
            return keys.VerifyKey.from_pem(path.read_bytes())
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror}", exit_code=2) from exc
        except keys.KeysError as exc:
            raise CliError(f"{path}: not an Ed25519 public key", exit_code=2) from exc

    def directory(self) -> Directory:
        """The signed directory, verified against the pinned root key (rollback refused)."""
        if self._directory is None:
            if not self.directory_path.exists():
                raise CliError(
                    f"{self.directory_path}: no directory here (crb federation init "
                    "creates one; $CRB_HOME or --directory say where to look)",
                    exit_code=2,
                )
            self._directory = keys.load_directory(
                self.directory_path,
                root=self.root_verify_key(),
                trust_store=keys.TrustStore(self.trust_path),
            )
        return self._directory

    def check_can_publish(self) -> None:
        """Fail before anything is generated if the root key cannot sign (an
        encrypted keystore without its passphrase)."""
        root = self.root_verify_key()
        self.store.signing_key(keys.FEDERATION_OWNER, root.key_id)

    def publish(self, directory: Directory) -> None:
        """Sign ``directory`` with the root key and make it the current one."""
        root = self.root_verify_key()
        signed = keys.sign_directory(
            directory, self.store.signing_key(keys.FEDERATION_OWNER, root.key_id)
        )
        keys.TrustStore(self.trust_path).accept(directory)
        keys.atomic_write(self.directory_path, signed.to_json(), mode=0o644)
        self._directory = directory

    def signed_directory(self) -> keys.SignedDirectory:
        """The signed directory file as it is (after :meth:`directory` verified it)."""
        self.directory()
        with errors():
            return keys.SignedDirectory.model_validate_json(self.directory_path.read_bytes())

    def follow(self, clients: KafkaClients) -> tuple[keys.LiveDirectory, DirectoryFollower]:
        """The live directory (from the file) and a follower of the directory topic
        that keeps it current; each newer version is also kept in the directory
        file and the trust store, so the next start begins from it."""
        from adapters import DirectoryFollower

        live = keys.LiveDirectory(self.directory(), root=self.root_verify_key())
        trust = keys.TrustStore(self.trust_path)
        path = self.directory_path

        def keep(directory: Directory, signed: bytes) -> None:
            try:
                trust.accept(directory)
                keys.atomic_write(path, signed, mode=0o644)
            except (keys.KeysError, OSError) as exc:  # another process kept a newer one
                log.info("directory_not_kept", version=directory.version, reason=str(exc))

        follower = DirectoryFollower(
            clients,
            self.names.directory,
            live,
            interval_s=self.settings.directory_refresh_s,
            on_update=keep,
        )
        return live, follower

    def signer(self, role: ServiceRole) -> keys.RecordSigner:
        """The ``role`` service's current signing key (keystore owner ``service.<role>``)."""
        with errors():
            return keys.service_signing_key(self.store, self.directory(), role, utcnow())

    # -- a participant's adapter ------------------------------------------------------
    def adapter_state(self, participant: str, state: Path | None = None) -> Path:
        """``--state``, else ``CRB_ADAPTER__STATE_DIR/<id>``, else ``$CRB_HOME/adapters/<id>``."""
        if state is not None:
            return state
        return (self.settings.adapter.state_dir or self.home / "adapters") / participant

    def identity(self, participant: str, directory: keys.LiveDirectory | None = None) -> Identity:
        """The participant's keys, following ``directory`` (else the file's version)."""
        from adapters import Identity

        return Identity.load(self.store, participant, directory or self.directory(), now=utcnow())


def uses(
    *groups: tuple[_Opt, ...],
) -> Callable[[Callable[Concatenate[Context, P], R]], Callable[..., R]]:
    """Add the option ``groups`` to a command and pass it a :class:`Context` first."""
    extra = [opt for group in groups for opt in group]

    def decorate(fn: Callable[Concatenate[Context, P], R]) -> Callable[..., R]:
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        own = list(sig.parameters.values())[1:]  # without ctx
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        taken = {p.name for p in params}
        for opt in extra:
            if opt.name not in taken:
                params.append(
                    inspect.Parameter(
                        opt.name,
                        inspect.Parameter.KEYWORD_ONLY,
                        default=opt.default,
                        annotation=opt.annotation,
                    )
                )
        names = {opt.name for opt in extra}

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(Context(options), *args, **kwargs)

        del wrapper.__wrapped__  # typer must see the new signature, not fn's
        wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=sorted(params, key=lambda p: p.kind), return_annotation=None
        )
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
