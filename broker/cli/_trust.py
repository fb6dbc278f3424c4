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

import asyncio
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

import keys
from adapters.kafka import ROUTER, TRACKER, Credential
from broker.cli._common import CliError, errors, run
from broker.cli._context import KAFKA, TRUST, Context, uses
from schemas import (
    PARTICIPANT_ID_PATTERN,
    Category,
    Directory,
    KeyKind,
    Participant,
    ParticipantStatus,
    PublicKeyRecord,
    Referral,
    Role,
    RoutingRules,
    Service,
    ServiceRole,
    utcnow,
    uuid7,
)

__all__ = ["register"]

federation_app = typer.Typer(
    help="Create a federation (root key, first directory).", no_args_is_help=True
)
participant_app = typer.Typer(
    help="Add participants, rotate and revoke their keys.", no_args_is_help=True
)
directory_app = typer.Typer(help="Show and verify the signed directory.", no_args_is_help=True)
service_app = typer.Typer(
    help="The router's and the tracker's signing identities.", no_args_is_help=True
)

ValidityOpt = Annotated[int, typer.Option("--validity-days", min=1, help="Lifetime of new keys.")]


def publish_live(ctx: Context, *, quiet: bool = False) -> bool:
    """Publish the signed directory file to the directory topic (services follow it);
    ``False`` (with a hint on stderr) while the topic does not exist yet. ``quiet``:
    report on stderr (stdout carries a command's JSON)."""
    from adapters import publish_directory
    from adapters.kafka import TopicMissing

    signed = ctx.signed_directory()
    try:
        with errors():
            asyncio.run(publish_directory(ctx.clients, ctx.names.directory, signed))
    except CliError as exc:
        if not isinstance(exc.__cause__, TopicMissing):
            raise
        typer.echo(
            f"{ctx.names.directory} does not exist yet: `crb topics apply` creates it "
            "and publishes the directory",
            err=True,
        )
        return False
    typer.echo(
        f"published directory version {signed.directory.version} to {ctx.names.directory}",
        err=quiet,
    )
    return True


def _propagate(ctx: Context, directory: Directory) -> None:
    """Make the running federation follow a directory change: publish it on the
    directory topic (the services switch within one refresh), then converge the
    Kafka users and ACLs (``crb acl apply``). Without a Kafka configured, say how
    to do it later."""
    from broker import acls

    if not ctx.kafka_configured:
        typer.echo(
            "no Kafka configured: run `crb topics apply` and `crb acl apply` once there is one",
            err=True,
        )
        return
    publish_live(ctx)
    report = run(acls.apply(directory, ctx.settings, ctx.clients, ctx.credentials, now=utcnow()))
    typer.echo(
        f"kafka: {len(report.created)} ACLs granted, {len(report.removed)} removed; "
        f"users +{len(report.users_created)} -{len(report.users_removed)}"
    )


_warned: set[Path] = set()


def _warn_unencrypted(store: keys.Keystore) -> None:
    """Say once per command that private keys are written without a passphrase."""
    if not store.encrypted and store.root not in _warned:
        _warned.add(store.root)
        typer.echo(
            f"warning: private keys in {store.root} are stored unencrypted (file mode 0600); "
            "set CRB_PASSPHRASE (or --passphrase-env NAME) to encrypt them",
            err=True,
        )


def _new_keys(
    store: keys.Keystore, participant_id: str, kem: keys.Kem
) -> tuple[keys.SigningKey, keys.OpeningKey]:
    _warn_unencrypted(store)
    sig, enc = keys.SigningKey.generate(), keys.OpeningKey.generate(kem)
    store.save_signing_key(participant_id, sig)
    store.save_opening_key(participant_id, enc)
    return sig, enc


def _new_service_keys(store: keys.Keystore) -> dict[ServiceRole, keys.SigningKey]:
    """A signing key per service (router, tracker), saved to the keystore."""
    _warn_unencrypted(store)
    made = {role: keys.SigningKey.generate() for role in ServiceRole}
    for role, key in made.items():
        store.save_signing_key(keys.service_owner(role), key)
    return made


def _hand_deconfliction_key(store: keys.Keystore, participant_id: str) -> None:
    """Give a new participant the federation's deconfliction keys (every epoch it
    holds: old ones still match what was tagged before a rotation)."""
    for key in store.deconfliction_keys(keys.FEDERATION_OWNER).values():
        store.save_deconfliction_key(participant_id, key)


# --- federation --------------------------------------------------------------------


@federation_app.command("init")
@uses(KAFKA, TRUST)
def federation_init(
    ctx: Context,
    *,
    federation_id: Annotated[str, typer.Option("--federation-id", help="e.g. eu-hotlines")],
    coordinator: Annotated[
        str, typer.Option(help="Id of the coordinator (orphan cases).")
    ] = "int.coordinator",
    kem: Annotated[keys.Kem, typer.Option(help="KEM of the coordinator's key.")] = keys.Kem.X25519,
    validity_days: ValidityOpt = 365,
) -> None:
    """Create the root key, the coordinator, and directory version 1."""
    if ctx.directory_path.exists():
        raise CliError(f"{ctx.directory_path} already exists", exit_code=2)
    with errors():
        if any((ctx.keystore_dir / keys.FEDERATION_OWNER).glob("*.pem")):
            raise CliError(f"a root key already exists in {ctx.keystore_dir}", exit_code=2)
        now = utcnow()
        root = keys.SigningKey.generate()
        ctx.store.save_signing_key(keys.FEDERATION_OWNER, root)
        sig, enc = _new_keys(ctx.store, coordinator, kem)
        tagging = keys.DeconflictionKey.generate(1)
        for owner in (keys.FEDERATION_OWNER, coordinator):
            ctx.store.save_deconfliction_key(owner, tagging)
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
            services=tuple(
                Service(
                    role=role,
                    keys=(keys.record_for(key.verify_key, not_before=now, not_after=until),),
                )
                for role, key in _new_service_keys(ctx.store).items()
            ),
        )
        ctx.publish(d)
        for principal in (ROUTER, TRACKER, coordinator):
            ctx.credentials.ensure(principal)
    typer.echo(
        f"federation {federation_id}: root key {root.key_id}, directory {ctx.directory_path}"
    )
    _propagate(ctx, d)


# --- participants -------------------------------------------------------------------


@participant_app.command("add")
@uses(KAFKA, TRUST)
def participant_add(
    ctx: Context,
    participant_id: Annotated[str, typer.Argument(help="e.g. nl.hotline")],
    *,
    role: Annotated[list[Role], typer.Option("--role", help="Repeat for several.")],
    jurisdiction: Annotated[
        str | None,
        typer.Option(
            help="ISO 3166 country it receives for (default: its id's prefix, nl.x -> NL; "
            "none for int.*)."
        ),
    ] = None,
    category: Annotated[
        list[Category] | None, typer.Option("--category", help="Accepted (default: all).")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Human-readable name.")] = None,
    kem: Annotated[keys.Kem, typer.Option(help="KEM of its encryption key.")] = keys.Kem.X25519,
    validity_days: ValidityOpt = 365,
) -> None:
    """Generate a participant's keys and Kafka login, publish it in a new directory
    version and grant its ACLs (when a Kafka is configured)."""
    if not re.match(PARTICIPANT_ID_PATTERN, participant_id):
        raise CliError(
            f"not a participant id: {participant_id!r} (a country code or int, a dot, then "
            "lowercase letters, digits, _ or -: e.g. nl.hotline)",
            exit_code=2,
        )
    prefix = participant_id.split(".", 1)[0]
    if jurisdiction is None and prefix != "int" and len(prefix) == 2:
        jurisdiction = prefix.upper()  # a national participant receives for its country
    national = {Role.HOTLINE, Role.POLICE, Role.POLICE_24X7} & set(role)
    if jurisdiction is None and national:
        typer.echo(
            f"warning: {participant_id} has no jurisdiction: as "
            f"{', '.join(sorted(r.value for r in national))} it receives only what routing "
            "rules name it for",
            err=True,
        )
    with errors():
        d = ctx.directory()
        if d.participant(participant_id) is not None:
            raise CliError(f"participant {participant_id} already exists", exit_code=2)
        if ctx.store.has_owner(participant_id):
            raise CliError(f"keys for {participant_id} already exist in the keystore", exit_code=2)
        ctx.check_can_publish()
        now = utcnow()
        candidate = Participant(
            participant_id=participant_id,
            display_name=display_name or participant_id,
            jurisdiction=jurisdiction,
            roles=tuple(role),
            categories=tuple(category or Category),
        )
        sig, enc = _new_keys(ctx.store, participant_id, kem)
        _hand_deconfliction_key(ctx.store, participant_id)
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
        ctx.publish(new)
        ctx.credentials.ensure(participant_id)
    typer.echo(
        f"{participant_id}: signing {sig.key_id}, encryption {enc.key_id}; version {new.version}"
    )
    _propagate(ctx, new)


@participant_app.command("rotate")
@uses(KAFKA, TRUST)
def participant_rotate(
    ctx: Context,
    participant_id: Annotated[str, typer.Argument()],
    *,
    kem: Annotated[
        keys.Kem | None, typer.Option(help="KEM of the new encryption key (default: as before).")
    ] = None,
    grace_days: Annotated[
        int, typer.Option(min=0, help="Old keys stay valid this long (if they would run longer).")
    ] = 30,
    validity_days: ValidityOpt = 365,
) -> None:
    """New signing and encryption keys and a new Kafka password; the old keys
    verify/decrypt until the grace ends. Refused for a revoked or suspended
    participant (see ``crb participant reinstate``)."""
    with errors():
        d = ctx.directory()
        p = d.participant(participant_id)
        if p is None:
            raise CliError(f"no participant {participant_id}", exit_code=2)
        now = utcnow()
        if not p.active or not p.keys_valid_at(KeyKind.SIGNING, now):
            raise CliError(
                f"{participant_id} is revoked or suspended: rotation would reinstate it; "
                f"run `crb participant reinstate {participant_id}` if that is meant",
                exit_code=2,
            )
        current = keys.current_sealing_key(p, now)
        chosen = kem or (current.kem if current is not None else keys.Kem.X25519)
        sig, enc = _new_keys(ctx.store, participant_id, chosen)
        new = keys.rotate(
            d,
            participant_id,
            new_keys=(sig.verify_key, enc.sealing_key),
            now=now,
            validity=timedelta(days=validity_days),
            grace=timedelta(days=grace_days),
        )
        ctx.publish(new)
    typer.echo(
        f"{participant_id}: signing {sig.key_id}, encryption {enc.key_id}; version {new.version}"
    )
    _new_password(ctx, participant_id)
    _propagate(ctx, new)


def _new_password(ctx: Context, participant_id: str) -> None:
    """A new Kafka password for the participant, set on the cluster when there is one."""
    credential = Credential.generate(participant_id)
    with errors():
        ctx.credentials.save(credential)
    if ctx.kafka_configured:
        run(ctx.clients.security().upsert_users([credential]))
    typer.echo(f"{participant_id}: new Kafka password in {ctx.credentials.path(participant_id)}")


@participant_app.command("reinstate")
@uses(KAFKA, TRUST)
def participant_reinstate(
    ctx: Context,
    participant_id: Annotated[str, typer.Argument()],
    *,
    kem: Annotated[keys.Kem, typer.Option(help="KEM of the new encryption key.")] = keys.Kem.X25519,
    validity_days: ValidityOpt = 365,
) -> None:
    """Give a revoked or suspended participant new keys and a new Kafka password and
    make it active again — an explicit, logged decision (``$CRB_HOME/operator.log``)."""
    with errors():
        d = ctx.directory()
        p = d.participant(participant_id)
        if p is None:
            raise CliError(f"no participant {participant_id}", exit_code=2)
        now = utcnow()
        sig, enc = _new_keys(ctx.store, participant_id, kem)
        rotated = keys.rotate(
            d,
            participant_id,
            new_keys=(sig.verify_key, enc.sealing_key),
            now=now,
            validity=timedelta(days=validity_days),
            grace=timedelta(0),
        )
        new = keys.set_status(rotated, participant_id, ParticipantStatus.ACTIVE, now=now)
        ctx.publish(new)
        ctx.record("reinstate", participant=participant_id, version=new.version)
    typer.echo(
        f"{participant_id}: reinstated with {sig.key_id}, {enc.key_id}; version {new.version}"
    )
    _new_password(ctx, participant_id)
    _propagate(ctx, new)


@participant_app.command("revoke")
@uses(KAFKA, TRUST)
def participant_revoke(
    ctx: Context,
    participant_id: Annotated[str, typer.Argument()],
    *,
    key_id: Annotated[
        str | None, typer.Option(help="Only this key (default: all its keys).")
    ] = None,
) -> None:
    """Revoke now: envelopes signed by (or sealed to) the key are refused from now on.
    Without ``--key-id`` the participant is also suspended and loses Kafka access."""
    with errors():
        d = ctx.directory()
        if d.participant(participant_id) is None:
            raise CliError(f"no participant {participant_id} (crb directory show)", exit_code=2)
        now = utcnow()
        new = keys.revoke(
            d, participant_id, key_id=None if key_id is None else keys.KeyId(key_id), now=now
        )
        if key_id is None:
            new = keys.set_status(new, participant_id, ParticipantStatus.SUSPENDED, now=now)
        ctx.publish(new)
        ctx.record("revoke", participant=participant_id, key_id=key_id, version=new.version)
    typer.echo(f"{participant_id}: revoked {key_id or 'all keys'}; version {new.version}")
    _propagate(ctx, new)


# --- services ----------------------------------------------------------------------


@service_app.command("rotate")
@uses(KAFKA, TRUST)
def service_rotate(
    ctx: Context,
    role: Annotated[ServiceRole, typer.Argument(help="The service: router or tracker.")],
    *,
    validity_days: ValidityOpt = 365,
) -> None:
    """Give the router or the tracker a new signing key (its old keys stay valid for
    30 days, so what they signed stays verifiable). Copy the new private key
    (keystore services/<role>/) to every instance, then restart them."""
    with errors():
        d = ctx.directory()
        key = keys.SigningKey.generate()
        ctx.store.save_signing_key(keys.service_owner(role), key)
        new = keys.set_service_key(
            d, role, key.verify_key, now=utcnow(), validity=timedelta(days=validity_days)
        )
        ctx.publish(new)
        ctx.record("service_rotate", role=role.value, key_id=key.key_id, version=new.version)
    typer.echo(f"{role.value}: signing key {key.key_id}; version {new.version}")
    _propagate(ctx, new)


# --- directory ---------------------------------------------------------------------


@directory_app.command("show")
@uses(TRUST)
def directory_show(
    ctx: Context,
    *,
    as_json: Annotated[
        bool, typer.Option("--json", help="The verified directory as JSON.")
    ] = False,
) -> None:
    """Verify, then print participants and their keys."""
    with errors():
        d = ctx.directory()
    if as_json:
        typer.echo(d.model_dump_json(indent=2))
        return
    now = utcnow()
    typer.echo(
        f"federation {d.federation_id} version {d.version} issued {d.issued_at:%Y-%m-%d %H:%M}Z"
    )

    def key_lines(records: tuple[PublicKeyRecord, ...]) -> None:
        for k in records:
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

    for p in d.participants:
        roles = ",".join(r.value for r in p.roles)
        typer.echo(f"{p.participant_id:24} {p.jurisdiction or '--'}  {p.status.value:9} {roles}")
        key_lines(p.keys)
    for svc in d.services:
        typer.echo(f"service {svc.role.value}")
        key_lines(svc.keys)


@directory_app.command("verify")
@uses(TRUST)
def directory_verify(ctx: Context) -> None:
    """Check the root signature, every key, and that the version did not go back."""
    with errors():
        d = ctx.directory()
    typer.echo(f"ok: {d.federation_id} version {d.version}, {len(d.participants)} participants")


@directory_app.command("publish")
@uses(KAFKA, TRUST)
def directory_publish(ctx: Context) -> None:
    """Publish the signed directory to the directory topic (as the admin): running
    routers, trackers and adapters switch to it within one refresh. Participant
    commands do this themselves; use it after restoring or copying a directory."""
    with errors():
        ctx.directory()
    if not publish_live(ctx):
        raise typer.Exit(1)


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
    with errors():
        keys.atomic_write(path, data, mode=0o644)


InOpt = Annotated[Path | None, typer.Option("--in", "-i", help="Input file (default: stdin).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")]


@uses(TRUST)
def seal_cmd(
    ctx: Context,
    *,
    sender: Annotated[
        str,
        typer.Option("--as", "--sender", help="Sending participant id (its keys must be local)."),
    ],
    jurisdiction: Annotated[str, typer.Option(help="Country responsible for the case.")],
    input_path: InOpt = None,
    output_path: OutOpt = None,
) -> None:
    """Seal a referral (JSON) to the recipients the directory resolves."""
    raw = _read_input(input_path)
    with errors():
        referral = Referral.model_validate_json(raw)
        d = ctx.directory()
        p = d.participant(sender)
        if p is None:
            raise CliError(f"--as {sender}: no such participant (crb directory show)", 2)
        now = utcnow()
        record = keys.current_signing_record(p, now)
        if record is None:
            raise CliError(f"{sender} has no valid signing key in the directory")
        signing = ctx.store.signing_key(sender, keys.KeyId(record.key_id))
        draft = keys.Draft.for_referral(
            referral, sender=sender, jurisdiction=jurisdiction, case_id=uuid7(now)
        )
        envelope = keys.seal(draft, referral, signing_key=signing, directory=d, now=now)
    _write_output(output_path, envelope)


@uses(TRUST)
def open_cmd(
    ctx: Context,
    *,
    recipient: Annotated[
        str,
        typer.Option(
            "--as", "--recipient", help="Receiving participant id (its keys must be local)."
        ),
    ],
    input_path: InOpt = None,
    output_path: OutOpt = None,
) -> None:
    """Verify and decrypt an envelope; print the payload JSON."""
    raw = _read_input(input_path)
    with errors():
        d = ctx.directory()
        opening = list(ctx.store.opening_keys(recipient).values())
        opened = keys.open(
            raw, recipient=recipient, opening_keys=opening, directory=d, now=utcnow()
        )
    out = json.dumps(json.loads(opened.payload), indent=2, ensure_ascii=False) + "\n"
    _write_output(output_path, out.encode("utf-8"))


def register(app: typer.Typer) -> None:
    app.add_typer(federation_app, name="federation")
    app.add_typer(participant_app, name="participant")
    app.add_typer(directory_app, name="directory")
    app.add_typer(service_app, name="service")
    app.command("seal")(seal_cmd)
    app.command("open")(open_cmd)
