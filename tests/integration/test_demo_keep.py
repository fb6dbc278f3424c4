"""``crb demo --keep``: the whole demo system stays up in the foreground with its
operator console, prints how to reach it, and SIGTERM stops everything it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import repo_root

pytestmark = pytest.mark.kafka


def _java_under(home: Path) -> list[str]:
    """Command lines of processes that belong to the demo's Kafka under ``home``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if str(home) in cmdline and "java" in cmdline:
                found.append(cmdline)
    return found


@pytest.mark.timeout(420)
def test_demo_keep_serves_the_console_until_sigterm_then_stops_everything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRB_")}
    env["CRB_HOME"] = str(home)
    crb = repo_root() / ".venv" / "bin" / "crb"
    demo = subprocess.Popen(
        [str(crb), "demo", "--keep", "--referrals", "20", "--seed", "3"],
        cwd=repo_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    shown = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("operator token:"):
                shown.set()
        shown.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert shown.wait(300), "no console line within 300 s"
        text = "".join(lines)
        assert demo.poll() is None, f"the demo exited: {text[-2000:]}"
        port = re.search(r"^console: http://127\.0\.0\.1:(\d+)/$", text, re.M)
        token = re.search(r"^operator token: (crb_\S+)$", text, re.M)
        total = re.search(r"all routes\s*│\s*(\d+)\s*│\s*(\d+)", text)
        assert port, text[-2000:]
        assert token, text[-2000:]
        assert total, text[-2000:]
        base = f"http://127.0.0.1:{port[1]}"
        with httpx.Client(base_url=base, timeout=30) as web:
            assert 303 == web.get("/console/").status_code, "anonymous: to the sign-in page"
            signed = web.post("/console/login", data={"token": token[1]})
            assert 303 == signed.status_code
            board = web.get("/console/")
            assert 200 == board.status_code
            assert f"{total[1]} handovers." in board.text
            assert "ok" == web.get("/healthz").json()["status"]
        demo.send_signal(signal.SIGTERM)
        assert 0 == demo.wait(timeout=120), "".join(lines)[-2000:]
        reader.join(timeout=10)
        assert [] == _java_under(home), "the demo's Kafka outlived it"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=30)
        reader.join(timeout=10)
        if demo.stdout is not None:
            demo.stdout.close()
        subprocess.run(
            [str(crb), "kafka", "down"], env=env, capture_output=True, timeout=120, check=False
        )
