"""``crb send``, ``crb dropfolder``, ``crb inbox``, ``crb ack``: a participant's adapter.

Each command acts as one participant (``--as``), with its keys from the keystore
and the verified directory (the same locations and options as ``crb seal``), and
keeps its local state in ``$CRB_HOME/adapters/<participant>`` (``--state``):
the delivered-message store (what ``crb ack`` answers), the quarantine, the
default inbox folder ``inbox/`` and the drop folder ``dropfolder/``.

``crb send`` validates every file first (nothing is sent if one is invalid), then
hands them to the participant's drop folder and runs it once: a file whose
envelope Kafka did not acknowledge stays pending there with its ids fixed, and
the next ``crb send`` or ``crb dropfolder`` finishes it under the same ids.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID

import typer

from broker.cli._common import CliError, errors, run
from broker.cli._context import KAFKA, TRUST, Context, uses
from broker.cli._router import stop_on_signals
from schemas import ActionType, RejectReason

if TYPE_CHECKING:
    from adapters import Identity, Outbox, PendingKeeper, Sender

__all__ = ["register"]

T = TypeVar("T")


AsOpt = Annotated[str, typer.Option("--as", help="Participant id this adapter acts as.")]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="Adapter state folder (default: $CRB_HOME/adapters/<id>)."),
]


class _Adapter:
    """One participant's identity, state folder and outbox, from the common options.

    Logged in to Kafka as the participant itself. The identity follows the
    directory topic: :meth:`following` reads it to its end before the command's
    work (a participant added a moment ago is known) and keeps following while a
    long-running command (inbox, drop folder) runs."""

    def __init__(self, ctx: Context, participant: str, state: Path | None) -> None:
        self.ctx = ctx
        self.state = ctx.adapter_state(participant, state)
        self.clients = ctx.clients_as(participant)
        with errors():
            self.live, self.follower = ctx.follow(self.clients)
            self.identity: Identity = ctx.identity(participant, self.live)

    def following(self, work: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        return self.follower.alongside(work)

    def outbox(self, *, deadline_s: float | None = None) -> Outbox:
        """The participant's outbox, patient for ``deadline_s`` (default: the
        settings' ``send_deadline_s``, for services)."""
        from adapters import Outbox

        s = self.ctx.settings
        outbox = Outbox.of(self.clients, self.ctx.names, self.identity.participant, s.adapter)
        if deadline_s is not None:
            outbox = Outbox(self.clients, outbox.topic, deadline_s=deadline_s)
        return outbox

    def sender(self, outbox: Outbox, pending: PendingKeeper | None = None) -> Sender:
        """``pending``: the state store, which keeps what is sent until answered."""
        from adapters import Sender

        return Sender(self.identity, outbox, pending=pending)


# --- send / dropfolder ------------------------------------------------------------------


TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=1,
        help="Seconds to wait for Kafka's acknowledgement before giving up (what is not "
        "acknowledged stays queued).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _country(jurisdiction: str | None, option: str = "--jurisdiction") -> str | None:
    """A country option, checked: an ISO 3166-1 alpha-2 code (bad input, exit 2)."""
    from schemas import ISO_3166_ALPHA2

    if jurisdiction is None:
        return None
    code = jurisdiction.strip().upper()
    if code not in ISO_3166_ALPHA2:
        raise CliError(f"{option} {jurisdiction}: not an ISO 3166-1 alpha-2 country code", 2)
    return code


def _known(ctx: Context, participant: str) -> None:
    """Refuse an ``--as`` the directory does not list (bad input, exit 2)."""
    with errors():
        found = ctx.directory().participant(participant)
    if found is None:
        raise CliError(f"--as {participant}: no such participant (crb directory show)", 2)


@uses(KAFKA, TRUST)
def send_cmd(
    ctx: Context,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Referral .json or bulk .csv files.")
    ] = None,
    *,
    participant: AsOpt,
    jurisdiction: Annotated[
        str | None, typer.Option(help="Jurisdiction for all (default: from hosting country).")
    ] = None,
    retry_pending: Annotated[
        bool,
        typer.Option(
            "--retry-pending", help="Send what earlier runs left queued (with or without FILES)."
        ),
    ] = False,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
    state: StateOpt = None,
) -> None:
    """Seal and send referrals; prints one message id per referral once Kafka has it.

    Files are validated first (nothing is queued if one is invalid), then queued in
    the participant's drop folder and sent. If Kafka does not acknowledge within
    --timeout they stay queued under their ids: --retry-pending sends them, once."""
    from adapters import FileState, load_submissions
    from keys import atomic_write

    if not files and not retry_pending:
        raise CliError("name referral files to send, or --retry-pending", exit_code=2)
    jurisdiction = _country(jurisdiction)
    with errors():
        contents = []
        rows: dict[str, list[tuple[int | None, str]]] = {}  # queued name -> (row, reference)
        for path in files or []:
            data = path.read_bytes()
            found = load_submissions(path.name, data, jurisdiction=jurisdiction)  # refuse early
            refs = [(row, sub.referral.reporter.reference) for row, sub in found]
            contents.append((path.name, data, refs))
    _known(ctx, participant)
    root = ctx.adapter_state(participant, state) / "dropfolder"
    incoming = root / "incoming"
    with errors():
        for name, data, refs in contents:  # queued before Kafka is asked: nothing to lose
            dest = incoming / name
            n = 1
            while dest.exists():
                dest = incoming / f"{n}-{name}"
                n += 1
            atomic_write(dest, data)
            rows[dest.name] = refs
    retry = f"crb send --retry-pending --as {participant}"
    queued = f"{len(contents)} file(s) queued in {incoming}; send them with: {retry}"
    try:
        adapter = _Adapter(ctx, participant, state)
        work = adapter.following(_send_queued(adapter, root, jurisdiction, timeout))
        results = run(_bounded(work, timeout, ctx.settings.kafka.bootstrap))
    except CliError as exc:
        raise CliError(f"{exc}; {queued}" if contents else str(exc), exc.exit_code) from exc
    sent = []  # (message id, file, row or None, reporter's reference or None)
    for r in results:
        if r.state is FileState.SENT:
            refs = rows.get(r.name, [])
            for i, mid in enumerate(r.message_ids):
                row, ref = refs[i] if i < len(refs) else (None, None)
                sent.append((mid, r.name, row, ref))
    refused = [r for r in results if r.state is FileState.FAILED]
    waiting = [r for r in results if r.state not in (FileState.SENT, FileState.FAILED)]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "sent": [
                        {"message_id": str(m), "file": n, "row": row, "reference": ref}
                        for m, n, row, ref in sent
                    ],
                    "failed": [{"file": r.name, "error": r.error} for r in refused],
                    "queued": [{"file": r.name, "error": r.error} for r in waiting],
                }
            )
        )
    else:
        for mid, name, row, ref in sent:
            where = f"{name} row {row}" if row is not None else name
            typer.echo(
                str(mid) if len(sent) == 1 else f"{mid}  {where}" + (f"  {ref}" if ref else "")
            )
        for r in refused:
            typer.echo(f"failed: {r.name}: {r.error} (moved to {root / 'failed'})", err=True)
        for r in waiting:
            typer.echo(f"queued: {r.name}: {r.error}", err=True)
    if waiting:
        raise CliError(
            f"{len(waiting)} file(s) not acknowledged by Kafka within {timeout:g}s and kept "
            f"queued — is Kafka running? (crb kafka status); then: {retry}"
        )
    if refused:
        raise CliError(f"{len(refused)} file(s) refused, moved to {root / 'failed'} with why")


async def _bounded(work: Coroutine[Any, Any, T], seconds: float, bootstrap: str) -> T:
    """``work``, given up after ``seconds`` with one clear line: a broker that
    accepts connections but never answers must not hold a person for minutes."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as exc:
        raise CliError(
            f"Kafka at {bootstrap} did not answer within {seconds:g}s (--timeout) — is "
            "Kafka running? (crb kafka status)"
        ) from exc


async def _send_queued(
    adapter: _Adapter, root: Path, jurisdiction: str | None, deadline_s: float
) -> list[Any]:
    from adapters import DropFolder, StateStore

    with StateStore(adapter.state) as index:
        async with adapter.outbox(deadline_s=deadline_s) as outbox:
            folder = DropFolder(
                root,
                adapter.sender(outbox, pending=index),
                jurisdiction=jurisdiction,
                index=index,
                keep_sent=adapter.ctx.settings.adapter.keep_sent,
                record_retention=adapter.ctx.settings.adapter.record_retention,
            )
            return await folder.run_once()


@uses(KAFKA, TRUST)
def dropfolder_cmd(
    ctx: Context,
    *,
    participant: AsOpt,
    folder: Annotated[
        Path | None, typer.Option(help="Drop folder root (default: <state>/dropfolder).")
    ] = None,
    once: Annotated[bool, typer.Option(help="Process what is there, then exit.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between scans.")] = 1.0,
    jurisdiction: Annotated[str | None, typer.Option(help="Jurisdiction for every file.")] = None,
    as_json: JsonOpt = False,
    state: StateOpt = None,
) -> None:
    """Watch FOLDER/incoming: send each file, move it to sent/ or failed/ (with why).

    With --once: one line per file on stdout; exit 1 if any failed or stays queued.
    """
    from adapters import DropFolder, FileState
    from broker.logs import configure_logging

    jurisdiction = _country(jurisdiction)
    _known(ctx, participant)
    adapter = _Adapter(ctx, participant, state)
    root = folder or adapter.state / "dropfolder"
    # A one-off run is read by a person, and reports Kafka trouble in its own line.
    configure_logging(fmt="console" if once else None, library_warnings=not once)

    async def main() -> list[Any]:
        from adapters import StateStore

        with StateStore(adapter.state) as index:
            return await drive(index)

    async def drive(index: Any) -> list[Any]:
        async with adapter.outbox() as outbox:
            drop = DropFolder(
                root,
                adapter.sender(outbox, pending=index),
                jurisdiction=jurisdiction,
                index=index,
                keep_sent=ctx.settings.adapter.keep_sent,
                record_retention=ctx.settings.adapter.record_retention,
            )
            if once:
                return await drop.run_once()
            stop = asyncio.Event()
            stop_on_signals(stop)
            await drop.run(stop, interval_s=interval)
            return []

    try:
        results = run(adapter.following(main()))
    except CliError as exc:  # e.g. Kafka unreachable: say that nothing queued is lost
        raise CliError(
            f"{exc}; files not sent stay queued in {root} (incoming/, processing/) and "
            "are sent by the next run",
            exc.exit_code,
        ) from exc
    if as_json:
        typer.echo(json.dumps({"files": [
            {"file": r.name, "state": r.state.value,
             "message_ids": [str(m) for m in r.message_ids], "error": r.error}
            for r in results]}))  # fmt: skip
    for r in results if not as_json else []:
        ids = " ".join(str(m) for m in r.message_ids)
        typer.echo(f"{r.state.value}: {r.name}" + (f": {ids}" if ids else "") + (
            f": {r.error}" if r.error else ""))  # fmt: skip
    bad = [r for r in results if r.state is not FileState.SENT]
    if bad:
        raise CliError(f"{len(bad)} of {len(results)} file(s) not sent (see failed/ or retry)")


# --- inbox --------------------------------------------------------------------------------


@uses(KAFKA, TRUST)
def inbox_cmd(
    ctx: Context,
    *,
    participant: AsOpt,
    folder: Annotated[
        Path | None, typer.Option(help="Write each message here (default: <state>/inbox).")
    ] = None,
    http: Annotated[
        str | None, typer.Option("--http", help="POST each message to this case-system URL.")
    ] = None,
    once: Annotated[bool, typer.Option(help="Read the inbox to its end, then exit.")] = False,
    as_json: JsonOpt = False,
    state: StateOpt = None,
) -> None:
    """Receive: open, deliver to a folder or URL, send signed receipts. With --once,
    a summary on stdout: how many were delivered (and where), duplicates, quarantined."""
    from adapters import FolderSink, HttpSink, Receiver, StateStore
    from broker.logs import configure_logging

    if folder is not None and http is not None:
        raise CliError("--folder and --http exclude each other", exit_code=2)
    if http is not None and not http.startswith(("http://", "https://")):
        raise CliError(f"--http {http!r}: not an http(s) URL", exit_code=2)
    _known(ctx, participant)
    adapter = _Adapter(ctx, participant, state)
    # A one-off run is read by a person, and reports Kafka trouble in its own line.
    configure_logging(fmt="console" if once else None, library_warnings=not once)
    a = ctx.settings.adapter

    async def main() -> Any:
        sink: Any
        if http is not None:
            sink = HttpSink(
                http,
                attempts=a.http_attempts,
                backoff_s=a.http_backoff_s,
                backoff_max_s=a.http_backoff_max_s,
                timeout_s=a.http_timeout_s,
            )
        else:
            sink = FolderSink(folder or adapter.state / "inbox")
        with StateStore(adapter.state) as store:
            async with adapter.outbox() as outbox:
                receiver = Receiver(
                    adapter.clients,
                    ctx.names,
                    a,
                    adapter.sender(outbox, pending=store),
                    sink,
                    store,
                )
                stop = asyncio.Event()
                stop_on_signals(stop)
                try:
                    return await receiver.run(stop, drain=once)
                finally:
                    if isinstance(sink, HttpSink):
                        await sink.aclose()

    stats = run(adapter.following(main()))
    where = http or (folder or adapter.state / "inbox")
    if as_json:
        typer.echo(json.dumps({
            "delivered": stats.delivered, "delivered_to": str(where),
            "messages": [{"message_id": str(m), "message_type": t, "sender": f}
                         for m, t, f in stats.recent],
            "duplicates": stats.duplicates, "quarantined": stats.quarantined,
            "notices": stats.notices,
            "quarantine": str(adapter.state / "quarantine")}))  # fmt: skip
        return
    for mid, mtype, sender in stats.recent if once else []:
        typer.echo(f"{mid}  {mtype} from {sender}")
    typer.echo(
        f"delivered {stats.delivered} (to {where}), duplicates {stats.duplicates}, "
        f"quarantined {stats.quarantined}"
        + (f" (in {adapter.state / 'quarantine'})" if stats.quarantined else "")
        + (f", deconfliction notices {stats.notices}" if stats.notices else "")
    )


# --- ack ------------------------------------------------------------------------------------


class AckKind(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    MOVE = "move"
    ACTION = "action"
    CLOSE = "close"


def _decision(
    kind: AckKind,
    *,
    reference: str | None,
    reason: Any,
    to: str | None,
    action: Any,
    url_index: list[int] | None,
    at: datetime | None,
    detail: str | None,
) -> Any:
    """The ``schemas`` decision for ``kind`` (``None`` for move: built with the referral)."""
    from schemas import Accepted, Actioned, Closed, Rejected

    def need(value: object, option: str) -> None:
        if value is None:
            raise CliError(f"ack {kind.value} needs {option}", exit_code=2)

    if kind is AckKind.ACCEPT:
        need(reference, "--reference")
        return Accepted(receiver_reference=reference)
    if kind is AckKind.REJECT:
        need(reason, "--reason")
        return Rejected(reason=reason, detail=detail)
    if kind is AckKind.MOVE:
        need(to, "--to")
        return None
    if kind is AckKind.ACTION:
        need(action, "--action")
        return Actioned(
            action=action,
            actioned_at=at.replace(tzinfo=at.tzinfo or UTC) if at else None,
            url_indexes=tuple(url_index or ()),
            detail=detail,
        )
    return Closed(detail=detail)


@uses(KAFKA, TRUST)
def ack_cmd(
    ctx: Context,
    kind: Annotated[AckKind, typer.Argument(help="The decision.")],
    message_id: Annotated[UUID, typer.Argument(help="Message id of the received referral.")],
    *,
    participant: AsOpt,
    reference: Annotated[str | None, typer.Option(help="accept: your own case reference.")] = None,
    reason: Annotated[RejectReason | None, typer.Option(help="reject: why.")] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="move: the responsible jurisdiction (ISO code).")
    ] = None,
    referral: Annotated[
        Path | None,
        typer.Option(help="move: the referral to forward (default: the inbox folder's copy)."),
    ] = None,
    action: Annotated[ActionType | None, typer.Option(help="action: what was done.")] = None,
    url_index: Annotated[
        list[int] | None,
        typer.Option("--url-index", help="action: a URL of the referral it covers (repeat)."),
    ] = None,
    at: Annotated[
        datetime | None, typer.Option(help="action: when it happened (UTC if no offset).")
    ] = None,
    detail: Annotated[str | None, typer.Option(help="Free text (no case data).")] = None,
    timeout: TimeoutOpt = 30.0,
    as_json: JsonOpt = False,
    state: StateOpt = None,
) -> None:
    """Send a case decision about a received referral: accept --reference REF,
    reject --reason R, move --to XX, action --action A, close. Prints message ids."""
    from schemas import Referral

    if to is not None:
        to = _country(to, "--to")
    _known(ctx, participant)

    with errors():
        decision = _decision(
            kind,
            reference=reference,
            reason=reason,
            to=to,
            action=action,
            url_index=url_index,
            at=at,
            detail=detail,
        )
    adapter = _Adapter(ctx, participant, state)
    from adapters import StateStore

    with errors(), StateStore(adapter.state) as store:
        if store.get(message_id) is None:
            raise CliError(
                f"{participant} never received message {message_id} "
                f"(its received messages: {adapter.state / 'inbox'})",
                exit_code=2,
            )
        original = store.received(message_id)
        moved = None
        if kind is AckKind.MOVE:
            assert to is not None
            path = referral or adapter.state / "inbox" / f"{message_id}.json"
            doc = json.loads(path.read_bytes())
            payload = doc.get("referral", doc) if isinstance(doc, dict) else doc
            moved = Referral.model_validate(payload)

    async def main() -> list[UUID]:
        # Sealed once the directory is read to its end: with the keys it names now.
        async with adapter.outbox(deadline_s=timeout) as outbox:
            sender = adapter.sender(outbox)
            with errors():
                if moved is not None:
                    assert to is not None
                    forwarded, ack = sender.seal_move(
                        original, moved, to_jurisdiction=to, detail=detail
                    )
                    return [await sender.send(forwarded), await sender.send(ack)]
                return [await sender.send(sender.seal_case_ack(original, decision))]

    sent = run(_bounded(adapter.following(main()), timeout, ctx.settings.kafka.bootstrap))
    if kind is AckKind.ACCEPT and reference is not None:
        from adapters import RefKind

        with errors(), StateStore(adapter.state) as store:
            store.record_reference(reference, RefKind.OWN, original.message_id, original.case_id)
    if as_json:
        typer.echo(json.dumps({"message_ids": [str(m) for m in sent]}))
        return
    for mid in sent:
        typer.echo(str(mid))


def _csv_help() -> str:
    from adapters import CSV_COLUMNS, REQUIRED_COLUMNS

    optional = [c for c in CSV_COLUMNS if c not in REQUIRED_COLUMNS]
    return (
        "Files: a referral as JSON (schemas/examples/referral.json), or a wrapper "
        '{"referral": ..., "jurisdiction": "NL", "case_id": ...}, or CSV with a header row, '
        f"one referral per row. CSV columns required: {', '.join(REQUIRED_COLUMNS)}; "
        f"optional: {', '.join(optional)}. What each maps to: README, 'Bulk CSV'."
    )


def register(app: typer.Typer) -> None:
    app.command("send", epilog=_csv_help())(send_cmd)
    app.command("dropfolder", epilog=_csv_help())(dropfolder_cmd)
    app.command("inbox")(inbox_cmd)
    app.command("ack")(ack_cmd)
