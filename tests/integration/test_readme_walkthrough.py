"""The README's "A federation by hand", run as written: every line of its ``sh``
block, extracted from README.md (not copied here), in one bash with ``set -euo
pipefail``. Two substitutions only, so the run cannot collide with anything else
on the machine: ``$PWD/.crb/walkthrough`` becomes a temporary folder and the two
fixed ports (8088, 9464, 8470) become free ones. The block starts its own secured Kafka
(``crb kafka up``) and stops it (``crb kafka down``)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import repo_root
from tests.integration._kafka_util import free_port

README = repo_root() / "README.md"


def walkthrough() -> str:
    """The ``sh`` block under "### A federation by hand"."""
    text = README.read_text()
    section = text[text.index("### A federation by hand") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "README.md has no sh block under 'A federation by hand'"
    return found.group(1)


def commands(block: str) -> list[str]:
    """``crb`` subcommands the block runs (for the report), in order, once each."""
    seen: list[str] = []
    for line in block.splitlines():
        for m in re.finditer(r"\bcrb ((?:[a-z-]+)(?: [a-z]+)?)", line.split("#")[0]):
            words = m.group(1).split()
            name = " ".join(words[:2]) if words[0] in _GROUPS else words[0]
            if name not in seen:
                seen.append(name)
    return seen


_GROUPS = {"kafka", "federation", "participant", "directory", "topics", "acl", "router",
           "tracker", "audit", "token", "service", "intake-key"}  # fmt: skip


@pytest.mark.skipif(
    not (repo_root() / ".venv" / "bin" / "activate").exists(),
    reason="the walk-through activates .venv, which `make test` / `make demo` create",
)
def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Pasted line by line into a fresh bash, the walk-through exits 0: the referral
    reaches nl.hotline and the 24/7 police, is received and accepted, the sender
    finds the case by the reference it was accepted under, the audit verifies, ACLs
    match the directory, and nl.hotline's token sees its one handover."""
    block = walkthrough()
    assert "$PWD/.crb/walkthrough" in block
    http, metrics, intake = free_port(), free_port(), free_port()
    script = (
        block.replace("$PWD/.crb/walkthrough", str(tmp_path / "home"))
        .replace("8088", str(http))
        .replace("9464", str(metrics))
        .replace("8470", str(intake))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRB_")}
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    home = tmp_path / "home"
    # Its own session: if a line fails (set -e), the router and tracker it started
    # in the background are stopped with the shell's process group, and its Kafka
    # with `crb kafka down` — nothing outlives the test.
    shell = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=repo_root(),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)
        crb = repo_root() / ".venv" / "bin" / "crb"
        subprocess.run(
            [str(crb), "kafka", "down"],
            env={**env, "CRB_HOME": str(home)},
            capture_output=True,
            timeout=120,
            check=False,
        )
    done = subprocess.CompletedProcess(shell.args, shell.returncode, out, err)
    covered = commands(block)
    print(f"\n[walkthrough] {len(covered)} commands: {', '.join(covered)}")
    out = done.stdout
    assert 0 == done.returncode, f"stdout:\n{out[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "0 to grant, 0 to revoke" in out
    assert re.search(r"/nl\.police24 .* routed", out), "no copy to the 24/7 police"
    assert re.search(r"/nl\.hotline .* accepted", out), "the acceptance never showed"
    assert "delivered 1 (to " in out
    assert "delivered 2 (to " in out  # the receipt and the acceptance, at the sender
    assert "handovers of case NL-2026-0042" in out  # found by the receiver's reference
    assert "0 broken" in out
    assert '"count":1' in out.replace(" ", "")
    assert "de.hotline: revoked all keys" in out
    inbox = tmp_path / "home" / "adapters" / "nl.hotline" / "inbox"
    assert 1 == len(list(inbox.glob("*.json")))
    assert "stopped node(s) 1" in out
    posted = re.search(
        r'^\{"message_id":"([0-9a-f-]{36})".*"status_url":"/referrals/\1"\}$', out, re.M
    )
    assert posted, "the intake's 202 answer never showed"
    print(f"[walkthrough] intake: {posted[0]}")
    assert f'"message_id":"{posted[1]}"' in out.split(posted[0], 1)[1]  # found by reference
