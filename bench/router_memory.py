"""The router's memory for what it forwarded: grows to its cache, then stays there.

``python -m bench.router_memory [--messages 400000] [--cache-mib 32] [--step 20000]``

A router keeps every message it forwarded within the reply window (90 days by
default: duplicates are refused and replies authorised against it) in its SQLite
snapshot (:mod:`broker.router._store`); lookups go through SQLite's page cache,
capped by ``router.snapshot_cache_mib``. This adds messages to a fresh snapshot
in the router's own way (batches of 50, each followed by lookups of known and
unknown ids) and samples this process's resident memory (VmRSS) after every
``--step`` messages: it should rise while the cache fills and then stay flat,
whatever the number of messages. No Kafka: the store alone, the part of the
router whose size follows traffic.

Verdict: the growth over the last half of the steps, in MiB (``plateau`` when under
``PLATEAU_MAX_MIB``); exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from broker.router._core import SeenMessage
from broker.router._store import RouterSnapshot
from schemas import MessageType

PLATEAU_MAX_MIB = 3.0


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(messages: int, cache_mib: int, step: int, folder: Path) -> list[tuple[int, float]]:
    """(messages stored, RSS MiB) after every ``step`` messages."""
    snapshot = RouterSnapshot.open(folder / "memory.sqlite", "bench.audit", cache_mib=cache_mib)
    if snapshot is None:
        raise RuntimeError("the snapshot is held by another process")
    rng = random.Random(0)
    now = datetime.now(UTC)
    samples = [(0, _rss_mib())]
    try:
        seen = snapshot.seen
        stored = 0
        while stored < messages:
            batch = [
                (
                    uuid.UUID(int=rng.getrandbits(128)),
                    SeenMessage(
                        "de.hotline",
                        ("nl.hotline", "nl.police24"),
                        MessageType.REFERRAL,
                        now,
                        (hashlib.sha256(rng.randbytes(16)).hexdigest(),),
                    ),
                )
                for _ in range(step)
            ]
            for i in range(0, len(batch), 50):
                seen.put(batch[i : i + 50])
            for message_id, _ in rng.sample(batch, min(len(batch), 5_000)):
                assert message_id in seen
            for _ in range(5_000):
                assert uuid.UUID(int=rng.getrandbits(128)) not in seen
            stored += len(batch)
            del batch
            samples.append((stored, _rss_mib()))
    finally:
        snapshot.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=400_000)
    parser.add_argument("--cache-mib", type=int, default=32)
    parser.add_argument("--step", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crb-router-memory-") as folder:
        samples = measure(args.messages, args.cache_mib, args.step, Path(folder))
    for stored, rss in samples:
        print(f"{stored:>9,} messages  {rss:7.1f} MiB", file=sys.stderr)
    half = samples[len(samples) // 2 :]
    growth = max(r for _, r in half) - half[0][1]
    result = {
        "messages": samples[-1][0],
        "cache_mib": args.cache_mib,
        "rss_start_mib": round(samples[0][1], 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "growth_last_half_mib": round(growth, 1),
        "plateau": growth < PLATEAU_MAX_MIB,
    }
    print(json.dumps(result))
    return 0 if result["plateau"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
