"""The ``crb`` command line.

Every command ends a bad input with one line on stderr and a non-zero exit code,
never a traceback (set ``CRB_DEBUG=1`` to see one). Exit codes: 0 ok, 1 the
operation failed (a refused envelope, a broker that died), 2 bad usage or input.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from broker.cli import _adapters, _demo, _kafka, _router, _tokens, _tracker, _trust
from broker.cli._common import CliError, fail

__all__ = ["app", "main"]

app = typer.Typer(
    name="crb",
    help="Transnational case-referral broker: signed, end-to-end encrypted handover over Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_kafka.register(app)
_demo.register(app)
_trust.register(app)
_router.register(app)
_tracker.register(app)
_tokens.register(app)
_adapters.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn every error into one line."""
    if not os.environ.get("CRB_DEBUG"):
        # aiokafka reports each refused connection through stdlib logging; for a
        # command the outcome is our one line. Services re-enable it (broker.logs).
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        app(args=argv, standalone_mode=True)
    except CliError as exc:
        fail(str(exc), code=exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CRB_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}", code=70)
    sys.exit(0)
