"""``crb serve`` (the intake API of a participant's adapter) and ``crb intake-key``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.cli._adapters import AsOpt, StateOpt, _Adapter, _known
from broker.cli._common import CliError, errors, run
from broker.cli._context import KAFKA, TRUST, Context, uses
from broker.cli._router import stop_on_signals
from broker.cli._tokens import _duration
from schemas import utcnow

intake_key_app = typer.Typer(
    help="API keys of a participant's intake API (crb serve).", no_args_is_help=True
)

DEFAULT_PORT = 8470


def _keys_path(ctx: Context, participant: str, state: Path | None) -> Path:
    return ctx.adapter_state(participant, state) / "intake-keys.json"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@uses(KAFKA, TRUST)
def serve_cmd(
    ctx: Context,
    *,
    participant: AsOpt,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = DEFAULT_PORT,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (needed off loopback).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    inbox: Annotated[
        bool,
        typer.Option(help="Also run the inbox loop (receipts, escalations, redeliveries)."),
    ] = True,
    state: StateOpt = None,
) -> None:
    """Serve the intake API: case systems POST referrals, the adapter seals and sends
    them (keys from `crb intake-key issue`). Loopback only, unless --tls-cert/--tls-key."""
    from adapters import (
        Access,
        FolderSink,
        Receiver,
        StateStore,
        TokenStore,
        create_intake,
    )
    from adapters._tokens import directory_check
    from broker.logs import configure_logging
    from broker.tracker import serve

    if (tls_cert is None) != (tls_key is None):
        raise CliError("--tls-cert and --tls-key go together", exit_code=2)
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise CliError(f"{path}: no such file (--tls-cert / --tls-key)", exit_code=2)
    if tls_cert is None and not _loopback(host):
        raise CliError(
            f"--host {host}: off loopback the intake needs TLS (--tls-cert, --tls-key)", 2
        )
    _known(ctx, participant)
    adapter = _Adapter(ctx, participant, state)
    configure_logging()
    keys_file = adapter.state / "intake-keys.json"

    async def main() -> None:
        with StateStore(adapter.state) as store:
            async with adapter.outbox() as outbox:
                sender = adapter.sender(outbox, pending=store)
                access = Access(
                    TokenStore(keys_file).tokens,
                    participant_active=directory_check(lambda: adapter.live.current),
                )
                app = create_intake(sender, store, access, inbox_folder=adapter.state / "inbox")
                stop = asyncio.Event()
                stop_on_signals(stop)
                tasks: list[asyncio.Task[Any]] = [
                    asyncio.create_task(
                        serve(app, host, port, stop, ssl_certfile=tls_cert, ssl_keyfile=tls_key)
                    )
                ]
                if inbox:
                    sink = FolderSink(adapter.state / "inbox")
                    receiver = Receiver(
                        adapter.clients, ctx.names, ctx.settings.adapter, sender, sink, store
                    )
                    tasks.append(asyncio.create_task(receiver.run(stop)))
                scheme = "https" if tls_cert else "http"
                typer.echo(f"intake of {participant}: {scheme}://{host}:{port}/", err=True)
                await asyncio.gather(*tasks)

    run(adapter.following(main()))


@intake_key_app.command("issue")
@uses(TRUST)
def key_issue(
    ctx: Context,
    *,
    participant: AsOpt,
    label: Annotated[str, typer.Option("--label", help="Which system holds it.")] = "",
    expires_in: Annotated[
        str, typer.Option("--expires-in", help="Lifetime: days or hours, e.g. 90d, 12h.")
    ] = "90d",
    state: StateOpt = None,
) -> None:
    """Issue an intake API key and print it once on stdout (only its hash is kept)."""
    from adapters import TokenStore, parse_scope

    _known(ctx, participant)
    ttl = _duration(expires_in)
    with errors():
        store = TokenStore(_keys_path(ctx, participant, state))
        key, record = store.issue(
            parse_scope(f"participant:{participant}"), label=label, now=utcnow(), ttl=ttl
        )
    typer.echo(
        f"intake key {record.id} for {participant} expires "
        f"{record.expires_at:%Y-%m-%dT%H:%MZ}; shown once — keep it secret",
        err=True,
    )
    typer.echo(key)


@intake_key_app.command("list")
@uses()
def key_list(
    ctx: Context,
    *,
    participant: AsOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    state: StateOpt = None,
) -> None:
    """Every intake key issued: id, label, expiry, and whether it is active."""
    from adapters import TokenStore

    now = utcnow()
    with errors():
        found = TokenStore(_keys_path(ctx, participant, state)).tokens().values()
    keys = sorted(found, key=lambda t: t.created_at)
    if as_json:
        rows: list[dict[str, Any]] = [
            t.model_dump(mode="json", exclude={"sha256"}) | {"status": t.status(now)} for t in keys
        ]
        typer.echo(json.dumps({"keys": rows}))
        return
    for t in keys:
        expires = f"{t.expires_at:%Y-%m-%dT%H:%MZ}"
        typer.echo(f"{t.id}  {t.status(now):<7}  expires {expires}  {t.label}".rstrip())
    typer.echo(f"{len(keys)} keys", err=True)


@intake_key_app.command("revoke")
@uses()
def key_revoke(
    ctx: Context,
    key_id: Annotated[str, typer.Argument()],
    *,
    participant: AsOpt,
    state: StateOpt = None,
) -> None:
    """Revoke an intake key by id: refused from the next request on."""
    from adapters import TokenStore

    with errors():
        record = TokenStore(_keys_path(ctx, participant, state)).revoke(key_id, now=utcnow())
    typer.echo(f"intake key {record.id} revoked")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.add_typer(intake_key_app, name="intake-key")
