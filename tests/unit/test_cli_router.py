"""`crb topics|router|audit`: bad input ends in one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._fed import LiveFederation


def _crb(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"CRB_HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_router_without_a_directory_is_one_line(tmp_path: Path) -> None:
    """A missing directory file is bad input: exit 2, one line naming the file and
    how to make one, no traceback."""
    fed = LiveFederation()
    _, root = fed.write(tmp_path / "fed")
    result = _crb(
        "router", "run", "--bootstrap", "127.0.0.1:1", "--directory", str(tmp_path / "nope.json"),
        "--root-key", str(root), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nope.json: no directory here (crb federation init" in result.stderr


def test_directory_signed_by_another_root_is_refused(tmp_path: Path) -> None:
    """A directory that does not verify against the pinned root key is refused."""
    fed, other = LiveFederation(), LiveFederation()
    directory, _ = fed.write(tmp_path / "fed")
    _, other_root = other.write(tmp_path / "other")
    result = _crb(
        "topics", "plan", "--directory", str(directory), "--root-key", str(other_root),
        home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "directory refused" in result.stderr


def test_topics_plan_lists_what_the_directory_implies(tmp_path: Path) -> None:
    """Every participant gets an outbox and an inbox; plus dlq, audit, status, tracker
    and the directory topic."""
    fed = LiveFederation()
    directory, root = fed.write(tmp_path / "fed")
    result = _crb(
        "topics", "plan", "--prefix", "x", "--directory", str(directory), "--root-key", str(root),
        "--trust-store", str(tmp_path / "trust.json"), home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines()}
    expected = {
        f"x.{kind}.{p}" for p in ("de.hotline", "nl.hotline") for kind in ("outbox", "inbox")
    }
    assert expected <= names
    assert {"x.dlq", "x.audit", "x.actions", "x.status", "x.tracker", "x.directory"} <= names
    assert len(names) == 2 * 6 + 6


def test_audit_verify_without_kafka_is_one_line(tmp_path: Path) -> None:
    """Nothing listening at the bootstrap address: exit 1 with one line, no traceback."""
    result = _crb("audit", "verify", "--bootstrap", "127.0.0.1:1", home=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
