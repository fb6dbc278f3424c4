"""Shared CLI plumbing: one-line failures and the project's home folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

__all__ = ["CliError", "crb_home", "fail"]


class CliError(Exception):
    """A failure the CLI reports as one line; ``exit_code`` 1 = failed, 2 = bad input."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, *, code: int = 1) -> NoReturn:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"crb: error: {first}", file=sys.stderr)
    sys.exit(code)


def crb_home() -> Path:
    """Where the CLI keeps local state (Kafka jars and data, demo keys): $CRB_HOME or ./.crb."""
    base = os.environ.get("CRB_HOME")
    return Path(base) if base else Path.cwd() / ".crb"
