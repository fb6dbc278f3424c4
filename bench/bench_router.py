"""Router throughput and latency against real Kafka, as ratios to baselines in the same run.

``python -m bench.bench_router [--json] [--count N]``  (Kafka: ``CRB_KAFKA_BOOTSTRAP``
or a local one started for the run and stopped afterwards)

For 1 KiB and 16 KiB referrals (one recipient each) it measures, in one process
against one broker:

- **passthrough**: raw aiokafka transactional consume-transform-produce, shaped
  like the router — one transactional producer per input partition, the partitions
  of a poll committed concurrently, one output record per input, offsets committed
  in the transaction — but no crypto, no validation, no audit/status records, and
  sized for throughput (``PT_BATCH`` records per poll, producers lingering
  ``PT_LINGER_MS``, large fetches): a fair ceiling, not a copy of the router's
  settings.
- **router**: :class:`broker.router.Router` on the same kind of topics.
- **ed25519 verify**: the raw verify rate of a message of that size (one core).

Throughput: ``count`` records are appended first, then the processor starts; the
rate is records / time from the first to the last output record visible to a
``read_committed`` reader (steady state: start-up — joining the group, starting
transactional producers — is not counted, for either). Latency: records appended
at a steady 50/s for 5 s while the processor runs; latency = visible to the reader
- appended (acknowledged).

Reported ratios: router / passthrough throughput (target >= 0.70), router
throughput / Ed25519 verify rate, and latency p50/p99 of both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.kafka import KafkaClients, KafkaSettings, TopicSettings, client_kwargs
from broker import topics
from broker.logs import configure_logging
from broker.router import Router
from broker.settings import RouterSettings, Settings
from keys.testing import Federation, MemberSpec, synthetic_referral
from schemas import Role, ServiceRole, TopicNames, utcnow

SIZES = (1024, 16 * 1024)
PARTITIONS = 3
BATCH = 500
PT_BATCH = 2000
PT_LINGER_MS = 5
PT_FETCH_BYTES = 32 * 1024 * 1024
TARGET = 0.70


def _federation() -> Federation:
    now = utcnow()
    return Federation(
        [
            MemberSpec("de.hotline", "DE", (Role.HOTLINE,)),
            MemberSpec("nl.hotline", "NL", (Role.HOTLINE,)),
            MemberSpec("int.coordinator", None, (Role.COORDINATOR,)),
        ],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )


def _envelope(fed: Federation, size: int) -> bytes:
    """A referral from de.hotline to nl.hotline, sealed to about ``size`` bytes."""
    # A minimal sealed referral is ~1,300 bytes; one extra URL adds ~150 bytes.
    text = min(9000, max(0, size - 1300))
    urls = 1 + max(0, (size - 1300 - text) // 150)
    referral = synthetic_referral(summary="Synthetic benchmark report. " + "x" * text, urls=urls)
    return fed.seal_referral("de.hotline", referral, jurisdiction="NL", now=utcnow())


def _settings(kafka: KafkaSettings, prefix: str) -> Settings:
    return Settings(
        kafka=kafka,
        topics=TopicSettings(prefix=prefix, partitions=PARTITIONS),
        router=RouterSettings(
            group_id=f"{prefix}-router",
            transactional_id_prefix=f"{prefix}-router",
            max_batch=BATCH,
        ),
    )


async def _reader(
    kafka: KafkaSettings, topic: str, want: int, seen: dict[bytes, float], timeout_s: float
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs(kafka),
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    seen.setdefault(hashlib.sha256(r.value or b"").digest(), now)
    finally:
        await consumer.stop()


async def _passthrough(kafka: KafkaSettings, src: str, dst: str, stop: asyncio.Event) -> None:
    """The baseline: transactional consume-transform-produce with no checks."""
    group = f"{src}.passthrough"
    consumer = AIOKafkaConsumer(
        src,
        **client_kwargs(kafka),
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=PT_BATCH,
        fetch_max_bytes=PT_FETCH_BYTES,
        max_partition_fetch_bytes=PT_FETCH_BYTES // 4,
    )
    await consumer.start()
    producers: dict[TopicPartition, AIOKafkaProducer] = {}
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)

            async def one(tp: TopicPartition, records: list[Any]) -> None:
                producer = producers.get(tp)
                if producer is None:
                    producer = AIOKafkaProducer(
                        **client_kwargs(kafka),
                        transactional_id=f"{src}.pt.{tp.partition}",
                        linger_ms=PT_LINGER_MS,
                        max_batch_size=1024 * 1024,
                        max_request_size=4 * 1024 * 1024,
                    )
                    await producer.start()
                    producers[tp] = producer
                async with producer.transaction():
                    futures = [await producer.send(dst, r.value, key=r.key) for r in records]
                    await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
                    await asyncio.gather(*futures)

            # Like the router: the partitions of one poll commit concurrently.
            await asyncio.gather(*(one(tp, rs) for tp, rs in batch.items() if rs))
    finally:
        for producer in producers.values():
            await producer.stop()
        await consumer.stop()


async def _append(
    kafka: KafkaSettings, topic: str, values: list[bytes], pace: float = 0.0
) -> dict[bytes, float]:
    producer = AIOKafkaProducer(
        **client_kwargs(kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    sent: dict[bytes, float] = {}
    try:
        if not pace:
            futures = [
                await producer.send(topic, v, partition=i % PARTITIONS)
                for i, v in enumerate(values)
            ]
            await asyncio.gather(*futures)
            return sent
        for i, v in enumerate(values):
            await (await producer.send(topic, v, partition=i % PARTITIONS))
            sent[hashlib.sha256(v).digest()] = time.monotonic()
            await asyncio.sleep(pace)
    finally:
        await producer.stop()
    return sent


@contextlib.asynccontextmanager
async def _running(
    factory: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(factory(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    kafka: KafkaSettings,
    src: str,
    dst: str,
    values: list[bytes],
    latency_values: list[bytes],
    processor: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> dict[str, float]:
    await _append(kafka, src, values)
    seen: dict[bytes, float] = {}
    async with _running(processor):
        await _reader(kafka, dst, len(values), seen, timeout_s=300)
        # Steady state: from the first output visible to the last (the group join and
        # producer start-up of the first seconds would otherwise dominate both rates).
        times = sorted(seen.values())
        elapsed = times[-1] - times[0] if len(times) > 1 else float("nan")
        seen_lat: dict[bytes, float] = {}
        reader = asyncio.create_task(
            _reader(kafka, dst, len(values) + len(latency_values), seen_lat, timeout_s=120)
        )
        sent = await _append(kafka, src, latency_values, pace=1 / 50)
        await reader
    lat = [seen_lat[k] - t for k, t in sent.items() if k in seen_lat]
    return {
        "throughput": (len(seen) - 1) / elapsed,
        "delivered": float(len(seen)),
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": _percentile(lat, 0.99) * 1000,
    }


def _verify_rate(size: int, seconds: float = 1.0) -> float:
    key = Ed25519PrivateKey.generate()
    msg = os.urandom(size)
    sig = key.sign(msg)
    pub = key.public_key()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            pub.verify(sig, msg)
        n += 100
    return n / (time.perf_counter() - start)


async def run(kafka: KafkaSettings, count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    fed = _federation()
    for size in SIZES:
        n = count if size <= 1024 else max(200, count // 4)
        envelopes = [_envelope(fed, size) for _ in range(n + 250)]
        bulk, paced = envelopes[:n], envelopes[n:]

        # Baseline: raw transactional passthrough on topics of the same shape.
        base = f"bench{os.getpid()}x{size}"
        admin = AIOKafkaAdminClient(**client_kwargs(kafka))
        await admin.start()
        await admin.create_topics(
            [NewTopic(f"{base}.in", PARTITIONS, 1), NewTopic(f"{base}.out", PARTITIONS, 1)]
        )
        await admin.close()
        raw = await _measure(
            kafka,
            f"{base}.in",
            f"{base}.out",
            bulk,
            paced,
            functools.partial(_passthrough, kafka, f"{base}.in", f"{base}.out"),
        )

        settings = _settings(kafka, f"bench{os.getpid()}r{size}")
        await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
        names = TopicNames(settings.topics.prefix)
        router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
        routed = await _measure(
            kafka,
            names.outbox("de.hotline"),
            names.inbox("nl.hotline"),
            bulk,
            paced,
            router.run,
        )
        verify = _verify_rate(len(bulk[0]))
        results[f"{size // 1024}KiB"] = {
            "envelope_bytes": len(bulk[0]),
            "count": n,
            "passthrough": raw,
            "router": routed,
            "ed25519_verify_per_s": verify,
            "router_vs_passthrough": routed["throughput"] / raw["throughput"],
            "router_vs_verify": routed["throughput"] / verify,
        }
    return results


def _print(results: dict[str, Any]) -> None:
    print(
        f"{'size':>6} {'passthrough/s':>14} {'router/s':>10} {'ratio':>6} "
        f"{'verify/s':>9} {'r/verify':>8} {'pt p50/p99 ms':>14} {'router p50/p99 ms':>18}"
    )
    for size, r in results.items():
        pt, ro = r["passthrough"], r["router"]
        print(
            f"{size:>6} {pt['throughput']:>14.0f} {ro['throughput']:>10.0f} "
            f"{r['router_vs_passthrough']:>6.2f} {r['ed25519_verify_per_s']:>9.0f} "
            f"{r['router_vs_verify']:>8.3f} {pt['p50_ms']:>6.1f}/{pt['p99_ms']:<7.1f} "
            f"{ro['p50_ms']:>8.1f}/{ro['p99_ms']:<9.1f}"
        )
    worst = min(r["router_vs_passthrough"] for r in results.values())
    verdict = "meets" if worst >= TARGET else "misses"
    print(f"router throughput >= {TARGET:.0%} of passthrough: {verdict} (worst {worst:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args(argv)
    configure_logging("warning")
    launcher = None
    if os.environ.get("CRB_KAFKA_BOOTSTRAP"):
        # An existing cluster; its admin login from CRB_KAFKA__* variables.
        kafka = Settings().kafka.model_copy(update={"bootstrap": os.environ["CRB_KAFKA_BOOTSTRAP"]})
    else:
        from broker.dev.kafka_local import LocalKafka

        launcher = LocalKafka(Path(tempfile.mkdtemp(prefix="crb-bench-")))
        launcher.up(nodes=1)
        kafka = launcher.settings()
    try:
        results = asyncio.run(run(kafka, args.count))
    finally:
        if launcher is not None:
            launcher.destroy()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
