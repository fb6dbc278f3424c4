"""The ``crb`` command line.

Every command ends a bad input with one line on stderr and a non-zero exit code,
never a traceback (set ``CRB_DEBUG=1`` to see one). Exit codes: 0 ok, 1 the
operation failed (a refused envelope, a broker that died), 2 bad usage or input.
Results go to stdout; logs (readable lines, ``CRB_LOG_FORMAT=json`` for JSON) and
errors to stderr. Services (``router run``, ``tracker run``, ``inbox``,
``dropfolder``) log JSON lines.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from broker.cli import (
    _adapters,
    _demo,
    _dlq,
    _intake,
    _kafka,
    _router,
    _tokens,
    _tracker,
    _trust,
)
from broker.cli._common import CliError, fail
from broker.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="crb",
    help="Transnational case-referral broker: signed, end-to-end encrypted handover over "
    "Kafka.\n\nExit codes: 0 ok; 1 the operation failed (Kafka unreachable, an envelope "
    "refused, files not sent); 2 bad usage or input. Results on stdout, logs and the "
    "one-line error on stderr. State lives in $CRB_HOME (./.crb).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        from broker.dev.kafka_local import kafka_version

        typer.echo(f"crb {version('case-referral-broker')} (Apache Kafka {kafka_version()})")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Transnational case-referral broker."""


_kafka.register(app)
_demo.register(app)
_trust.register(app)
_router.register(app)
_tracker.register(app)
_tokens.register(app)
_intake.register(app)
_adapters.register(app)
_dlq.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn every error into one line."""
    # aiokafka and kafka-python report each refused connection through stdlib
    # logging; for a command the outcome is our one line. Services re-enable them.
    configure_logging(
        fmt="json" if os.environ.get("CRB_LOG_FORMAT") == "json" else "console",
        library_warnings=False,
    )
    try:
        code = app(args=argv, prog_name="crb", standalone_mode=False)
    except CliError as exc:
        fail(str(exc), code=exc.exit_code)
    except typer.Abort:
        fail("interrupted", code=130)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        # One line, not a box: what is wrong, and where the help is.
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "crb"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        message = message.replace("Value error, ", "")
        if type(exc).__name__ == "NoArgsIsHelpError":
            message = "no command given"
        fail(f"{message} (see: {command} --help)", code=getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CRB_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}", code=70)
    sys.exit(code if isinstance(code, int) else 0)
