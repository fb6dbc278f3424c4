"""``crb federation|participant|directory|seal|open``: keys, the signed directory, envelopes.

Default locations (all under ``$CRB_HOME``, ``./.crb``; each has an option):

- ``keys/``            the keystore (private PEM files 0600; see ``keys.Keystore``)
- ``directory.json``   the signed federation directory
- ``trust.json``       highest directory version accepted (rollback protection)

The pinned root public key is ``keys/federation/<root key id>.pub.pem`` unless
``--root-key`` names another file. Private keys are encrypted when the
environment variable named by ``--passphrase-env`` (default
``CRB_PASSPHRASE``) is set; a passphrase is never taken on the command line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import pydantic
import typer

import keys
from broker.cli._common import CliError, crb_home
from schemas import (
    Category,
    Directory,
    Participant,
    Referral,
    Role,
    RoutingRules,
    uuid7,
)

__all__ = ["register"]

DEFAULT_PASSPHRASE_ENV = "CRB_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret

federation_app = typer.Typer(
    help="Create a federation (root key, first directory).", no_args_is_help=True
)
participant_app = typer.Typer(
    help="Add participants, rotate and revoke their keys.", no_args_is_help=True
)
directory_app = typer.Typer(help="Show and verify the signed directory.", no_args_is_help=True)

KeystoreOpt = Annotated[
    Path | None, typer.Option("--keystore", help="Keystore folder (default: $CRB_HOME/keys).")
]
DirectoryOpt = Annotated[
    Path | None,
    typer.Option("--directory", help="Signed directory file (default: $CRB_HOME/directory.json)."),
]
TrustOpt = Annotated[
    Path | None,
    typer.Option("--trust-store", help="Rollback-protection file (default: $CRB_HOME/trust.json)."),
]
RootOpt = Annotated[
    Path | None,
    typer.Option("--root-key", help="Pinned root public key PEM (default: from the keystore)."),
]
PassEnvOpt = Annotated[
    str,
    typer.Option("--passphrase-env", help="Environment variable holding the key passphrase."),
]
ValidityOpt = Annotated[int, typer.Option("--validity-days", min=1, help="Lifetime of new keys.")]


class _Paths:
    def __init__(
        self,
        keystore: Path | None,
        directory: Path | None,
        trust: Path | None,
        root_key: Path | None,
        passphrase_env: str,
    ) -> None:
        home = crb_home()
        self.keystore_dir = keystore or home / "keys"
        self.directory = directory or home / "directory.json"
        self.trust = trust or home / "trust.json"
        self.root_key = root_key
        secret = os.environ.get(passphrase_env)
        self.store = keys.Keystore(self.keystore_dir, secret.encode() if secret else None)

    def root_verify_key(self) -> keys.VerifyKey:
        path = self.root_key
        if path is None:
            found = sorted((self.keystore_dir / keys.FEDERATION_OWNER).glob("ed25519-*.pub.pem"))
            if len(found) != 1:
                raise CliError(
                    f"no single root public key in {self.keystore_dir / keys.FEDERATION_OWNER}; "
                    "pass --root-key",
                    exit_code=2,
                )
            path = found[0]
        try:
            return keys.VerifyKey.from_pem(path.read_bytes())
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror}", exit_code=2) from exc
        except keys.KeysError as exc:
            raise CliError(f"{path}: not an Ed25519 public key", exit_code=2) from exc

    def root_signing_key(self, root: keys.VerifyKey) -> keys.SigningKey:
        return self.store.signing_key(keys.FEDERATION_OWNER, root.key_id)

    def load(self) -> Directory:
        return keys.load_directory(
            self.directory, root=self.root_verify_key(), trust_store=keys.TrustStore(self.trust)
        )

    def publish(self, directory: Directory) -> None:
        root = self.root_verify_key()
        signed = keys.sign_directory(directory, self.root_signing_key(root))
        keys.TrustStore(self.trust).accept(directory)
        _atomic_write(self.directory, signed.to_json())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise CliError(f"{path}: cannot write: {exc.strerror}") from exc


def _first_error(exc: pydantic.ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "input"
    return f"{where}: {err['msg']}"


@contextmanager
def _errors() -> Iterator[None]:
    """Translate library failures into one-line CLI errors (no traceback)."""
    try:
        yield
    except CliError:
        raise
    except keys.EnvelopeError as exc:
        raise CliError(f"envelope refused ({exc.reason.value})") from exc
    except keys.KeysError as exc:
        raise CliError(str(exc)) from exc
    except pydantic.ValidationError as exc:
        raise CliError(f"invalid input: {_first_error(exc)}", exit_code=2) from exc
    except OSError as exc:
        raise CliError(f"{exc.filename or 'I/O'}: {exc.strerror}", exit_code=2) from exc
    except ValueError as exc:
        raise CliError(str(exc) or type(exc).__name__, exit_code=2) from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _new_keys(
    store: keys.Keystore, participant_id: str, kem: keys.Kem
) -> tuple[keys.SigningKey, keys.OpeningKey]:
    sig, enc = keys.SigningKey.generate(), keys.OpeningKey.generate(kem)
    store.save_signing_key(participant_id, sig)
    store.save_opening_key(participant_id, enc)
    return sig, enc


# --- federation --------------------------------------------------------------------


@federation_app.command("init")
def federation_init(
    *,
    federation_id: Annotated[str, typer.Option("--federation-id", help="e.g. eu-hotlines")],
    coordinator: Annotated[
        str, typer.Option(help="Id of the coordinator (orphan cases).")
    ] = "int.coordinator",
    kem: Annotated[keys.Kem, typer.Option(help="KEM of the coordinator's key.")] = keys.Kem.X25519,
    validity_days: ValidityOpt = 365,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Create the root key, the coordinator, and directory version 1."""
    paths = _Paths(keystore, directory, trust_store, None, passphrase_env)
    if paths.directory.exists():
        raise CliError(f"{paths.directory} already exists", exit_code=2)
    with _errors():
        if any((paths.keystore_dir / keys.FEDERATION_OWNER).glob("*.pem")):
            raise CliError(f"a root key already exists in {paths.keystore_dir}", exit_code=2)
        now = _now()
        root = keys.SigningKey.generate()
        paths.store.save_signing_key(keys.FEDERATION_OWNER, root)
        sig, enc = _new_keys(paths.store, coordinator, kem)
        until = now + timedelta(days=validity_days)
        d = Directory(
            federation_id=federation_id,
            version=1,
            issued_at=now,
            root_key_id=root.key_id,
            participants=(
                Participant(
                    participant_id=coordinator,
                    display_name="Federation coordinator",
                    jurisdiction=None,
                    roles=(Role.COORDINATOR,),
                    categories=tuple(Category),
                    keys=(
                        keys.record_for(sig.verify_key, not_before=now, not_after=until),
                        keys.record_for(enc.sealing_key, not_before=now, not_after=until),
                    ),
                ),
            ),
            rules=RoutingRules(coordinator=coordinator, escalation_recipient=coordinator),
        )
        paths.publish(d)
    typer.echo(f"federation {federation_id}: root key {root.key_id}, directory {paths.directory}")


# --- participants -------------------------------------------------------------------


@participant_app.command("add")
def participant_add(
    participant_id: Annotated[str, typer.Argument(help="e.g. nl.hotline")],
    *,
    role: Annotated[list[Role], typer.Option("--role", help="Repeat for several.")],
    jurisdiction: Annotated[
        str | None, typer.Option(help="ISO 3166 country it receives for (none for int.*).")
    ] = None,
    category: Annotated[
        list[Category] | None, typer.Option("--category", help="Accepted (default: all).")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Human-readable name.")] = None,
    kem: Annotated[keys.Kem, typer.Option(help="KEM of its encryption key.")] = keys.Kem.X25519,
    validity_days: ValidityOpt = 365,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Generate a participant's keys and publish it in a new directory version."""
    paths = _Paths(keystore, directory, trust_store, root_key, passphrase_env)
    with _errors():
        d = paths.load()
        if d.participant(participant_id) is not None:
            raise CliError(f"participant {participant_id} already exists", exit_code=2)
        if paths.store.has_owner(participant_id):
            raise CliError(f"keys for {participant_id} already exist in the keystore", exit_code=2)
        now = _now()
        candidate = Participant(
            participant_id=participant_id,
            display_name=display_name or participant_id,
            jurisdiction=jurisdiction,
            roles=tuple(role),
            categories=tuple(category or Category),
        )
        sig, enc = _new_keys(paths.store, participant_id, kem)
        until = now + timedelta(days=validity_days)
        p = Participant.model_validate(
            {
                **candidate.model_dump(),
                "keys": [
                    keys.record_for(sig.verify_key, not_before=now, not_after=until).model_dump(),
                    keys.record_for(enc.sealing_key, not_before=now, not_after=until).model_dump(),
                ],
            }
        )
        new = keys.add_participant(d, p, now=now)
        paths.publish(new)
    typer.echo(
        f"{participant_id}: signing {sig.key_id}, encryption {enc.key_id}; version {new.version}"
    )


@participant_app.command("rotate")
def participant_rotate(
    participant_id: Annotated[str, typer.Argument()],
    *,
    kem: Annotated[
        keys.Kem | None, typer.Option(help="KEM of the new encryption key (default: as before).")
    ] = None,
    grace_days: Annotated[
        int, typer.Option(min=0, help="Old keys stay valid this long (if they would run longer).")
    ] = 30,
    validity_days: ValidityOpt = 365,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """New signing and encryption keys; the old ones verify/decrypt until the grace ends."""
    paths = _Paths(keystore, directory, trust_store, root_key, passphrase_env)
    with _errors():
        d = paths.load()
        p = d.participant(participant_id)
        if p is None:
            raise CliError(f"no participant {participant_id}", exit_code=2)
        now = _now()
        current = keys.current_sealing_key(p, now)
        chosen = kem or (current.kem if current is not None else keys.Kem.X25519)
        sig, enc = _new_keys(paths.store, participant_id, chosen)
        new = keys.rotate(
            d,
            participant_id,
            new_keys=(sig.verify_key, enc.sealing_key),
            now=now,
            validity=timedelta(days=validity_days),
            grace=timedelta(days=grace_days),
        )
        paths.publish(new)
    typer.echo(
        f"{participant_id}: signing {sig.key_id}, encryption {enc.key_id}; version {new.version}"
    )


@participant_app.command("revoke")
def participant_revoke(
    participant_id: Annotated[str, typer.Argument()],
    *,
    key_id: Annotated[
        str | None, typer.Option(help="Only this key (default: all its keys).")
    ] = None,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Revoke now: envelopes signed by (or sealed to) the key are refused from now on."""
    paths = _Paths(keystore, directory, trust_store, root_key, passphrase_env)
    with _errors():
        d = paths.load()
        new = keys.revoke(
            d, participant_id, key_id=None if key_id is None else keys.KeyId(key_id), now=_now()
        )
        paths.publish(new)
    typer.echo(f"{participant_id}: revoked {key_id or 'all keys'}; version {new.version}")


# --- directory ---------------------------------------------------------------------


@directory_app.command("show")
def directory_show(
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="The verified directory as JSON.")
    ] = False,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
) -> None:
    """Verify, then print participants and their keys."""
    paths = _Paths(keystore, directory, trust_store, root_key, DEFAULT_PASSPHRASE_ENV)
    with _errors():
        d = paths.load()
    if as_json:
        typer.echo(d.model_dump_json(indent=2))
        return
    now = _now()
    typer.echo(
        f"federation {d.federation_id} version {d.version} issued {d.issued_at:%Y-%m-%d %H:%M}Z"
    )
    for p in d.participants:
        roles = ",".join(r.value for r in p.roles)
        typer.echo(f"{p.participant_id:24} {p.jurisdiction or '--'}  {p.status.value:9} {roles}")
        for k in p.keys:
            state = (
                "revoked"
                if k.revoked_at is not None and k.revoked_at <= now
                else "valid"
                if k.is_valid_at(now)
                else "expired"
                if k.not_after <= now
                else "not yet valid"
            )
            typer.echo(
                f"    {k.kind.value:10} {k.key_id:34} {state:13} until {k.not_after:%Y-%m-%d}"
            )


@directory_app.command("verify")
def directory_verify(
    *,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
) -> None:
    """Check the root signature, every key, and that the version did not go back."""
    paths = _Paths(keystore, directory, trust_store, root_key, DEFAULT_PASSPHRASE_ENV)
    with _errors():
        d = paths.load()
    typer.echo(f"ok: {d.federation_id} version {d.version}, {len(d.participants)} participants")


# --- seal / open ----------------------------------------------------------------------


def _read_input(path: Path | None) -> bytes:
    if path is None or str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}", exit_code=2) from exc


def _write_output(path: Path | None, data: bytes) -> None:
    if path is None or str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _atomic_write(path, data)


InOpt = Annotated[Path | None, typer.Option("--in", "-i", help="Input file (default: stdin).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")]


def seal_cmd(
    *,
    sender: Annotated[str, typer.Option(help="Sending participant id (its keys must be local).")],
    jurisdiction: Annotated[str, typer.Option(help="Country responsible for the case.")],
    input_path: InOpt = None,
    output_path: OutOpt = None,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Seal a referral (JSON) to the recipients the directory resolves."""
    paths = _Paths(keystore, directory, trust_store, root_key, passphrase_env)
    raw = _read_input(input_path)
    with _errors():
        referral = Referral.model_validate_json(raw)
        d = paths.load()
        p = d.participant(sender)
        if p is None:
            raise CliError(f"{sender} is not in the directory", exit_code=2)
        now = _now()
        record = keys.current_signing_record(p, now)
        if record is None:
            raise CliError(f"{sender} has no valid signing key in the directory")
        signing = paths.store.signing_key(sender, keys.KeyId(record.key_id))
        draft = keys.Draft.for_referral(
            referral, sender=sender, jurisdiction=jurisdiction, case_id=uuid7(now)
        )
        envelope = keys.seal(draft, referral, signing_key=signing, directory=d, now=now)
    _write_output(output_path, envelope)


def open_cmd(
    *,
    recipient: Annotated[
        str, typer.Option(help="Receiving participant id (its keys must be local).")
    ],
    input_path: InOpt = None,
    output_path: OutOpt = None,
    keystore: KeystoreOpt = None,
    directory: DirectoryOpt = None,
    trust_store: TrustOpt = None,
    root_key: RootOpt = None,
    passphrase_env: PassEnvOpt = DEFAULT_PASSPHRASE_ENV,
) -> None:
    """Verify and decrypt an envelope; print the payload JSON."""
    paths = _Paths(keystore, directory, trust_store, root_key, passphrase_env)
    raw = _read_input(input_path)
    with _errors():
        d = paths.load()
        opening = list(paths.store.opening_keys(recipient).values())
        opened = keys.open(raw, recipient=recipient, opening_keys=opening, directory=d, now=_now())
    out = json.dumps(json.loads(opened.payload), indent=2, ensure_ascii=False) + "\n"
    _write_output(output_path, out.encode("utf-8"))


def register(app: typer.Typer) -> None:
    app.add_typer(federation_app, name="federation")
    app.add_typer(participant_app, name="participant")
    app.add_typer(directory_app, name="directory")
    app.command("seal")(seal_cmd)
    app.command("open")(open_cmd)
