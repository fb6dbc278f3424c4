"""Operator console pages with many handovers in the tracker's store.

``python -m bench.bench_console [--handovers N] [--json]``  (default 100,000)

The tracker's own SQLite store (in memory) is filled with N synthetic handovers —
12 participants, every state, a tenth urgent, one in fifty overdue — and each page
is served through the console's ASGI app as a signed-in operator: the route board,
needs attention, a search (one participant's received handovers, first page), a
handover page, the CSV export of a filtered view, and /healthz as the baseline (the
same app and client doing almost nothing). Reported: the best of five, in ms, and
as a ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PARTICIPANTS = [
    f"{c}.{kind}" for c in ("de", "nl", "fr", "be", "ie", "es") for kind in ("hotline", "police24")
]


def _fill(n: int) -> Any:
    from broker.tracker import Handover
    from broker.tracker._store import SqliteHandovers
    from schemas import Category, HandoverState, Priority, uuid7

    rng = random.Random(5)
    store = SqliteHandovers.open(None, "bench.tracker", "policy")
    assert store is not None
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    states = list(HandoverState)
    batch = []
    for i in range(n):
        sender, recipient = rng.sample(PARTICIPANTS, 2)
        routed = t0 + timedelta(seconds=i * 20)
        state = rng.choice(states)
        received = state not in (HandoverState.ROUTED, HandoverState.OVERDUE,
                                 HandoverState.ESCALATED, HandoverState.FAILED)  # fmt: skip
        batch.append(
            Handover(
                message_id=uuid7(routed, rng=os.urandom), recipient=recipient,
                case_id=uuid7(routed, rng=os.urandom), sender=sender,
                priority=Priority.URGENT if i % 10 == 0 else Priority.ROUTINE,
                jurisdiction=recipient[:2].upper(), category=rng.choice(list(Category)),
                state=state, routed_at=routed,
                received_at=routed + timedelta(seconds=rng.randint(1, 600)) if received else None,
                overdue_at=routed + timedelta(hours=1) if i % 50 == 0 and not received else None,
                updated_at=routed + timedelta(hours=1),
            )
        )  # fmt: skip
        if len(batch) == 5_000:
            store.put(batch)
            batch = []
    store.put(batch)
    return store


async def _measure(store: Any) -> dict[str, float]:
    from broker.tracker import OPERATOR, Access, create_app
    from broker.tracker._access import new_token
    from broker.tracker._console import COOKIE
    from broker.tracker._views import Filters

    token, record = new_token(OPERATOR, label="bench", now=datetime.now(UTC))
    access = Access(lambda: {record.id: record})
    app = create_app(lambda: store, access=access, console=lambda: store)
    some = store.search(Filters(), limit=1)[1][0]
    pages = {
        "healthz": "/healthz",
        "board": "/console/",
        "attention": "/console/attention",
        "search": "/console/handovers?participant=nl.hotline&state=received",
        "handover": f"/console/handover/{some.message_id}/{some.recipient}",
        "csv": "/console/handovers.csv?participant=nl.hotline&bucket=done",
    }
    best: dict[str, float] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        for name, path in pages.items():
            times = []
            for _ in range(5):
                started = time.perf_counter()
                answer = await client.get(path, headers={"Cookie": f"{COOKIE}={token}"})
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, (name, answer.status_code)
            best[name] = min(times) * 1000
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--handovers", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    store = _fill(args.handovers)
    filled_s = time.perf_counter() - started
    best = asyncio.run(_measure(store))
    base = best["healthz"]
    result = {
        "handovers": args.handovers,
        "fill_s": round(filled_s, 1),
        "ms": {k: round(v, 1) for k, v in best.items()},
        "vs_healthz": {k: round(v / base, 1) for k, v in best.items() if k != "healthz"},
    }
    if not args.json:
        print(f"{args.handovers} handovers (store filled in {filled_s:.1f} s)")
        print(f"{'page':12} {'ms':>8} {'x healthz':>10}")
        for name, ms in best.items():
            print(f"{name:12} {ms:8.1f} {ms / base:10.1f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
