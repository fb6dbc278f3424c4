"""Running ``crb`` in-process for tests, and reading its one-line errors."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from broker.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "schemas" / "examples" / "referral.json"


DE_HOTLINE = ("de.hotline", "--role", "hotline", "--jurisdiction", "DE")
NL_HOTLINE = ("nl.hotline", "--role", "hotline", "--jurisdiction", "NL")
NL_POLICE_HYBRID = (
    "nl.police",
    "--role",
    "police",
    "--jurisdiction",
    "NL",
    "--kem",
    "mlkem768-x25519",
)
"""``crb participant add`` arguments for the participants the CLI tests use."""


def crb(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``crb ARGV`` through the console script's entry point: (exit code, stdout, stderr)."""
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:  # pragma: no cover - main always exits
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The single ``crb: error: ...`` line a failing command printed (asserted single)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("crb: error: ")
    assert "Traceback" not in err
    return lines[0]


def federation_home(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    participants: Iterable[tuple[str, ...]],
) -> Path:
    """A federation made by the CLI itself in ``home`` ($CRB_HOME): ``federation init``,
    then ``participant add`` with each argument tuple."""
    monkeypatch.setenv("CRB_HOME", str(home))
    monkeypatch.delenv("CRB_PASSPHRASE", raising=False)
    monkeypatch.delenv("CRB_DEBUG", raising=False)
    setup: list[tuple[str, ...]] = [("federation", "init", "--federation-id", "test")]
    setup += [("participant", "add", *p) for p in participants]
    for argv in setup:
        code, _, err = crb(capsys, *argv)
        assert code == 0, err
    return home
