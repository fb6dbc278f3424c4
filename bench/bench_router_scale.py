"""Routers scale by partitions: one ``crb router run`` process against two, same run.

``python -m bench.bench_router_scale [--count N] [--json]``  (a local secured Kafka
started for the run and stopped after)

``count`` referrals (1 KiB, de.hotline -> nl.hotline) are appended to an outbox with
``PARTITIONS`` partitions; then one router process — or two in one consumer group,
each taking some of the partitions — routes them. The rate is records / time from
the first to the last output visible to a ``read_committed`` reader (start-up and
group join excluded). Reported: both rates and their ratio (ideal 2.0 on two cores;
the broker and the reader share the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTITIONS = 4


def _rate(kafka: Any, processes: int, count: int, folder: Path) -> float:
    from adapters.kafka import KafkaClients
    from bench._common import services_env
    from bench.bench_router import _envelope, _federation, _reader, _settings
    from broker import topics
    from schemas import TopicNames

    fed = _federation()
    fed.write(folder)
    prefix = f"sc{os.getpid()}p{processes}"
    settings = _settings(kafka, prefix)
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"partitions": PARTITIONS})}
    )
    names = TopicNames(prefix)
    asyncio.run(topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics))
    values = [_envelope(fed, 1024) for _ in range(count)]

    async def append() -> None:
        # Spread over every partition of the outbox (the bench_router helper uses 3).
        from aiokafka import AIOKafkaProducer

        from adapters.kafka import client_kwargs

        producer = AIOKafkaProducer(**client_kwargs(kafka), acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(names.outbox("de.hotline"), v, partition=i % PARTITIONS)
                for i, v in enumerate(values)
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    env = services_env(kafka, folder, prefix, settings, admin=True)
    crb = str(Path(sys.executable).with_name("crb"))
    procs = []
    for i in range(processes):
        log = (folder / f"router-{processes}-{i}.log").open("wb")
        argv = [crb, "router", "run", "--log-level", "warning"]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log))
    try:
        # Every router in the group and stable before the first record: a rebalance in
        # the middle of the run would be measured instead of the routing.
        asyncio.run(_group_stable(kafka, settings.router.group_id, processes, procs))
        asyncio.run(append())
        seen: dict[bytes, float] = {}
        asyncio.run(_reader(kafka, names.inbox("nl.hotline"), count, seen, timeout_s=600))
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a router exited (see {folder})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    times = sorted(seen.values())
    if len(times) < count:
        raise RuntimeError(f"only {len(times)} of {count} routed (see {folder})")
    return (len(times) - 1) / (times[-1] - times[0])


async def _group_stable(
    kafka: Any, group: str, members: int, procs: list[subprocess.Popen[bytes]]
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from adapters.kafka import client_kwargs

    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    await admin.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a router exited at start")
            try:
                [described] = await admin.describe_consumer_groups([group])
            except Exception:
                described = None
            if described is not None:
                _, _, state, _, _, found = described.groups[0][:6]
                if state == "Stable" and len(found) == members:
                    return
            await asyncio.sleep(0.2)  # polling the group's state
        raise TimeoutError(f"group {group} did not become stable with {members} members")
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from broker.dev.kafka_local import LocalKafka
    from broker.logs import configure_logging

    configure_logging("warning")
    launcher = LocalKafka(Path(tempfile.mkdtemp(prefix="crb-bench-scale-kafka-")))
    launcher.up(nodes=1)
    try:
        kafka = launcher.settings()
        one = _rate(kafka, 1, args.count, Path(tempfile.mkdtemp(prefix="crb-scale1-")))
        two = _rate(kafka, 2, args.count, Path(tempfile.mkdtemp(prefix="crb-scale2-")))
    finally:
        launcher.destroy()
    result = {
        "count": args.count,
        "partitions": PARTITIONS,
        "one_router_per_s": round(one, 1),
        "two_routers_per_s": round(two, 1),
        "two_vs_one": round(two / one, 2),
        "cores": os.cpu_count(),
    }
    if not args.json:
        print(
            f"one router process {one:.0f}/s, two {two:.0f}/s: x{two / one:.2f} "
            f"on {os.cpu_count()} cores ({PARTITIONS} partitions, {args.count} referrals)"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
