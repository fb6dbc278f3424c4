"""``crb token issue | list | revoke``: bearer tokens for the tracker's HTTP API.

The token store is ``$CRB_HOME/tokens.json`` (``CRB_TRACKER__TOKENS_FILE``), 0600,
holding only each token's SHA-256; the running tracker re-reads it when it changes,
so a revocation takes effect on the next request. ``issue`` prints the token — its
only copy — alone on stdout (``TOKEN=$(crb token issue --operator)``); everything
else goes to stderr. Issuing and revoking are recorded in ``operator.log``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer

from broker.cli._common import CliError, errors
from broker.cli._context import TRUST, Context, uses
from schemas import utcnow

__all__ = ["register"]

token_app = typer.Typer(help="Bearer tokens for the tracker's HTTP API.", no_args_is_help=True)

_DURATION = re.compile(r"^\s*(\d+)\s*([dh])\s*$")


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise CliError(f"--expires-in: a positive number of days or hours (90d, 12h): {text!r}", 2)
    n = int(match.group(1))
    return timedelta(days=n) if match.group(2) == "d" else timedelta(hours=n)


@token_app.command("issue")
@uses(TRUST)
def token_issue(
    ctx: Context,
    *,
    operator: Annotated[
        bool, typer.Option("--operator", help="An operator token: sees every handover.")
    ] = False,
    participant: Annotated[
        str | None,
        typer.Option("--participant", help="A participant's token: sees only its own handovers."),
    ] = None,
    label: Annotated[
        str, typer.Option("--label", help="Who or what holds it (shown by list).")
    ] = "",
    expires_in: Annotated[
        str, typer.Option("--expires-in", help="Lifetime: days or hours, e.g. 90d, 12h.")
    ] = "90d",
) -> None:
    """Issue a token and print it once on stdout (only its hash is kept)."""
    from broker.tracker import OPERATOR, TokenStore, parse_scope

    if operator == (participant is not None):
        raise CliError("give exactly one of --operator or --participant ID", exit_code=2)
    ttl = _duration(expires_in)
    with errors():
        scope = OPERATOR if operator else parse_scope(f"participant:{participant}")
        if participant is not None:
            found = ctx.directory().participant(participant)
            if found is None:
                raise CliError(f"unknown participant {participant!r} (crb directory show)", 2)
            if not found.active:
                raise CliError(f"participant {participant} is {found.status.value}", 2)
        token, record = TokenStore(ctx.settings.tokens_path).issue(
            scope, label=label, now=utcnow(), ttl=ttl
        )
        ctx.record("token_issue", token_id=record.id, scope=scope, label=label)
    typer.echo(
        f"token {record.id} ({scope}) expires {record.expires_at:%Y-%m-%dT%H:%MZ}; "
        "shown once — keep it secret",
        err=True,
    )
    typer.echo(token)


@token_app.command("list")
@uses()
def token_list(
    ctx: Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every token issued: id, scope, label, expiry, and whether it is active."""
    from broker.tracker import TokenStore

    now = utcnow()
    with errors():
        tokens = sorted(
            TokenStore(ctx.settings.tokens_path).tokens().values(), key=lambda t: t.created_at
        )
    if as_json:
        rows = [t.model_dump(mode="json", exclude={"sha256"}) | {"status": t.status(now)}
                for t in tokens]  # fmt: skip
        typer.echo(json.dumps({"tokens": rows}))
        return
    for t in tokens:
        typer.echo(
            f"{t.id}  {t.status(now):<7}  {t.scope:<28}  expires "
            f"{t.expires_at:%Y-%m-%dT%H:%MZ}  {t.label}".rstrip()
        )
    typer.echo(f"{len(tokens)} tokens", err=True)


@token_app.command("revoke")
@uses()
def token_revoke(ctx: Context, token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token by id: the running tracker refuses it from the next request."""
    from broker.tracker import TokenStore

    with errors():  # an unknown id is a TokenError (ValueError): exit 2
        record = TokenStore(ctx.settings.tokens_path).revoke(token_id, now=utcnow())
        ctx.record("token_revoke", token_id=record.id, scope=record.scope)
    typer.echo(f"token {record.id} ({record.scope}) revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
