"""``crb dlq list | show | redrive``: dead letters, through the tracker's API.

The tracker follows the dead-letter topic and is the one that redrives (it records
who asked on the actions topic, signed, in the same transaction), so these
commands ask it: ``--api`` (default ``http://127.0.0.1:8088``, or
``CRB_TRACKER_API``) with a bearer token (``--token`` or ``CRB_TOKEN``, from
``crb token issue``). A participant's token lists only its own dead letters and
cannot redrive.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

from broker.cli._common import CliError

__all__ = ["register"]

dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)

Api = Annotated[
    str | None,
    typer.Option(help="The tracker's API (default $CRB_TRACKER_API or http://127.0.0.1:8088)."),
]
Token = Annotated[str | None, typer.Option(help="Bearer token (default $CRB_TOKEN).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _call(method: str, path: str, api: str | None, token: str | None) -> Any:
    base = api or os.environ.get("CRB_TRACKER_API") or "http://127.0.0.1:8088"
    token = token or os.environ.get("CRB_TOKEN")
    if not token:
        raise CliError("no token: pass --token or set CRB_TOKEN (crb token issue)", exit_code=2)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            answer = client.request(method, path, headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise CliError(
            f"the tracker's API at {base} does not answer ({exc}): is `crb tracker run "
            "--http-port` running there?"
        ) from exc
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        raise CliError(f"{detail} (HTTP {answer.status_code})")
    return answer.json()


def _where(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition("/")
    try:
        return int(partition), int(offset)
    except ValueError as exc:
        raise CliError(f"not PARTITION/OFFSET: {text!r} (e.g. 0/17)", exit_code=2) from exc


def _line(d: dict[str, Any]) -> str:
    state = "redriven" if d["redriven_at"] else ("redrivable" if d["redrivable"] else "final")
    return (
        f"{d['partition']}/{d['offset']}  {d['rejected_at'] or '?':32}  {d['reason']:20} "
        f"{d['sender'] or '?':16} {d['message_id'] or '-':36}  {state}"
    )


@dlq_app.command("list")
def dlq_list(
    *,
    reason: Annotated[str | None, typer.Option(help="Only this reason.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    api: Api = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Dead letters, newest first: where, when, why, from whom, and whether a redrive
    could succeed."""
    query = f"?limit={limit}" + (f"&reason={reason}" if reason else "")
    found = _call("GET", f"/dead-letters{query}", api, token)
    if as_json:
        typer.echo(json.dumps(found))
        return
    for d in found["dead_letters"]:
        typer.echo(_line(d))
    typer.echo(f"{found['count']} dead letters")


@dlq_app.command("show")
def dlq_show(
    where: Annotated[str, typer.Argument(help="PARTITION/OFFSET on the dead-letter topic.")],
    *,
    api: Api = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One dead letter's header fields (never its payload) and why it may or may not
    be redriven."""
    partition, offset = _where(where)
    d = _call("GET", f"/dead-letters/{partition}/{offset}", api, token)
    if as_json:
        typer.echo(json.dumps(d))
        return
    for key, value in d.items():
        typer.echo(f"{key:17} {value if value is not None else '-'}")


@dlq_app.command("redrive")
def dlq_redrive(
    where: Annotated[str, typer.Argument(help="PARTITION/OFFSET on the dead-letter topic.")],
    *,
    api: Api = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Put a dead letter's original bytes back into the outbox they came from (the
    router checks them all again). Refused when it can never succeed. Operator token."""
    partition, offset = _where(where)
    d = _call("POST", f"/dead-letters/{partition}/{offset}/redrive", api, token)
    if as_json:
        typer.echo(json.dumps(d))
        return
    typer.echo(f"redriven {where} into {d['source_topic']} at offset {d['redrive_offset']}")


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
