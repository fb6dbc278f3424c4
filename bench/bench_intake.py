"""Intake throughput: referrals/s accepted over HTTP against ``crb send`` of the same
referrals, in one run, on a secured local Kafka.

``python -m bench.bench_intake [--referrals N] [--json]``

A fresh ``CRB_HOME`` gets a secured Kafka (``crb kafka up``), a federation
(``crb federation init``, ``participant add`` de.hotline and nl.hotline), its
topics, and an intake key; ``crb serve --as de.hotline`` (intake only) listens on
a free loopback port. Then, the same N synthetic referrals (their own references):

- ``send``: ``crb send f1 … fN --as de.hotline --jurisdiction NL`` — one process,
  each referral sealed, queued in the drop folder and sent, the run timed whole;
- ``batch``: one ``POST /referrals:batch`` with the N referrals (N ≤ 500);
- ``single``: N ``POST /referrals``, one after the other.

"Accepted" means Kafka acknowledged the sealed envelope on the outbox (the router
is not started: what is measured is the intake, not the routing). Reported:
referrals/s of each and ``batch_vs_send`` (the ratio is what travels between
machines). ``--json`` prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import free_port
from keys.testing import synthetic_referral

__all__ = ["main", "run"]

REPO = Path(__file__).resolve().parent.parent
CRB = REPO / ".venv" / "bin" / "crb"


def _crb(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(CRB), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"crb {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


def _referrals(n: int, tag: str) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r = synthetic_referral(jurisdiction="NL", reference=f"BENCH-{tag}-{i:05d}")
        out.append(r.model_dump(mode="json"))
    return out


def _write(path: Path, referral: dict[str, Any]) -> Path:
    path.write_text(json.dumps(referral))
    return path


def run(referrals: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="crb-bench-intake-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRB_")}
    env["CRB_HOME"] = str(home)
    port = free_port()
    server: subprocess.Popen[str] | None = None
    try:
        _crb(env, "kafka", "up")
        _crb(env, "federation", "init", "--federation-id", "bench-intake")
        _crb(env, "participant", "add", "de.hotline", "--role", "hotline")
        _crb(env, "participant", "add", "nl.hotline", "--role", "hotline")
        _crb(env, "topics", "apply")
        key = _crb(env, "intake-key", "issue", "--as", "de.hotline").strip()
        server = subprocess.Popen(
            [str(CRB), "serve", "--as", "de.hotline", "--port", str(port), "--no-inbox"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=300) as web:
            deadline = time.monotonic() + 120
            while True:  # a readiness poll: the first request it answers
                try:
                    if web.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            # Warm-up (connections, first seal), not timed.
            web.post("/referrals", json=_referrals(1, "warm")[0], headers=auth).raise_for_status()
            folder = home / "files"
            folder.mkdir()
            files = [str(_write(folder / f"r{i:05d}.json", r))
                     for i, r in enumerate(_referrals(referrals, "send"))]  # fmt: skip
            started = time.perf_counter()
            _crb(env, "send", *files, "--as", "de.hotline", "--jurisdiction", "NL")
            send_s = time.perf_counter() - started

            items = _referrals(referrals, "batch")
            started = time.perf_counter()
            answer = web.post("/referrals:batch", json={"items": items}, headers=auth)
            batch_s = time.perf_counter() - started
            answer.raise_for_status()
            accepted = answer.json()["accepted"]

            singles = _referrals(referrals, "single")
            started = time.perf_counter()
            for r in singles:
                web.post("/referrals", json=r, headers=auth).raise_for_status()
            single_s = time.perf_counter() - started
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        subprocess.run([str(CRB), "kafka", "down"], env=env, capture_output=True, check=False)
    return {
        "referrals": referrals,
        "batch_accepted": accepted,
        "send_per_s": referrals / send_s,
        "batch_per_s": referrals / batch_s,
        "single_per_s": referrals / single_s,
        "batch_vs_send": send_s / batch_s,
        "single_vs_send": send_s / single_s,
        "send_s": send_s,
        "batch_s": batch_s,
        "single_s": single_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_intake", description=__doc__)
    parser.add_argument("--referrals", type=int, default=500, help="at most 500 (one batch)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(min(args.referrals, 500))
    print(
        f"{result['referrals']} referrals accepted by Kafka: "
        f"crb send {result['send_per_s']:.0f}/s, "
        f"POST /referrals:batch {result['batch_per_s']:.0f}/s "
        f"({result['batch_vs_send']:.2f}x crb send), one POST each "
        f"{result['single_per_s']:.0f}/s ({result['single_vs_send']:.2f}x)"
    )
    if args.json:
        print(json.dumps(result))
    return 0 if result["batch_accepted"] == result["referrals"] else 1


if __name__ == "__main__":
    sys.exit(main())
