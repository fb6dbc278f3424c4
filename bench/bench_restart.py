"""How a restart grows with history: router and tracker start-up time and memory
after 0, 100,000 (and with ``--max 1000000``, 1,000,000) past decisions.

``python -m bench.bench_restart [--max N] [--json]``  (a local secured Kafka started
for the run and stopped after)

History is generated fast, written straight to the topics as the services would
have written it (signed by their keys): N forwarded-decision audit links on one
chain for the router (all inside the reply window: every one must be remembered),
N handover state records for the tracker (1 in 100 still waiting for its receipt,
so its timer runs). Then the real ``crb router run`` / ``crb tracker run`` starts
in its own process, twice:

- **cold**: no local snapshot (a new machine): the service reads the whole topic,
  verifying every record, and builds its snapshot;
- **restart**: stopped and started again with its snapshot — the normal restart.

Measured each time: router — seconds from start to its first forward (a referral
produced on another chain at start, seen in the recipient's inbox) and peak RSS;
tracker — seconds from start to ready (``/healthz``) and peak RSS; and the size of
the snapshot file. Baselines are the same measurements at 0 history in the run.
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

import httpx

from bench._common import free_port, services_env

CHUNK = 20_000


def _peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a live process (VmHWM, Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _produce(kafka: Any, records: Any, total: int) -> None:
    from aiokafka import AIOKafkaProducer

    from adapters.kafka import client_kwargs

    producer = AIOKafkaProducer(
        **client_kwargs(kafka), acks="all", linger_ms=20, max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        sent = 0
        while sent < total:
            futures = []
            for topic, key, value, headers in records(min(CHUNK, total - sent)):
                futures.append(await producer.send(topic, value, key=key, headers=headers))
            await asyncio.gather(*futures)
            sent += len(futures)
    finally:
        await producer.stop()


def _audit_history(fed: Any, names: Any) -> Any:
    """A generator factory of ``n`` signed forwarded-decision audit links on the chain
    of ``de.hotline``'s outbox partition 0 (the first forward uses another chain)."""
    from broker.audit import AuditEntry, Verdict, chain_next
    from schemas import ServiceRole, utcnow, uuid7

    signer = fed.signer(ServiceRole.ROUTER)
    state: dict[str, Any] = {"prev": None, "offset": 0}
    now = utcnow()

    def chunk(k: int) -> list[tuple[str, bytes, bytes, list[Any]]]:
        out: list[tuple[str, bytes, bytes, list[Any]]] = []
        for _ in range(k):
            mid = uuid7(now)
            entry = AuditEntry(
                verdict=Verdict.FORWARDED, source_topic=names.outbox("de.hotline"),
                source_partition=0, source_offset=state["offset"],
                envelope_sha256="0" * 64, message_id=str(mid), message_type="referral",
                case_id=str(mid), sender="de.hotline", recipients=("nl.hotline",),
                decided_at=now,
            )  # fmt: skip
            record = chain_next(state["prev"], entry).signed(signer)
            state["prev"], state["offset"] = record, state["offset"] + 1
            out.append((names.audit, record.chain.encode(), record.to_bytes(), []))
        return out

    return chunk


def _tracker_history(fed: Any, names: Any) -> Any:
    """A generator factory of signed handover state records (all received)."""
    from adapters.kafka import OutRecord, sign
    from broker.tracker import Handover
    from keys import TRACKER_STATE_CONTEXT
    from schemas import HandoverState, ServiceRole, utcnow, uuid7

    signer = fed.signer(ServiceRole.TRACKER)
    now = utcnow()

    count = 0

    def chunk(k: int) -> list[tuple[str, bytes, bytes, list[Any]]]:
        nonlocal count
        out = []
        for _ in range(k):
            mid = uuid7(now)
            count += 1
            waiting = count % 100 == 0
            h = Handover(
                message_id=mid, recipient="nl.hotline", case_id=mid, sender="de.hotline",
                state=HandoverState.ROUTED if waiting else HandoverState.RECEIVED,
                routed_at=now, received_at=None if waiting else now, updated_at=now,
            )  # fmt: skip
            rec = sign(
                OutRecord(names.tracker, h.key.encode(), h.model_dump_json().encode()),
                signer,
                TRACKER_STATE_CONTEXT,
            )
            out.append((rec.topic, rec.key or b"", rec.value or b"", list(rec.headers)))
        return out

    return chunk


SERVICES = ("router", "tracker")


def measure(
    kafka: Any, history: int, folder: Path, services: tuple[str, ...] = SERVICES
) -> dict[str, Any]:
    """Generate ``history`` past decisions and handovers, then time both restarts."""
    from adapters.kafka import KafkaClients
    from bench.bench_router import _federation, _settings
    from broker import topics
    from schemas import TopicNames

    fed = _federation()
    fed.write(folder)
    prefix = f"rs{os.getpid()}n{history}"
    settings = _settings(kafka, prefix)
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"partitions": 1})}
    )
    names = TopicNames(prefix)
    asyncio.run(topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics))
    started = time.monotonic()
    if history and "router" in services:
        asyncio.run(_produce(kafka, _audit_history(fed, names), history))
    if history and "tracker" in services:
        asyncio.run(_produce(kafka, _tracker_history(fed, names), history))
    generated_s = time.monotonic() - started
    env = services_env(kafka, folder, prefix, settings, admin=True)
    crb = str(Path(sys.executable).with_name("crb"))
    out: dict[str, Any] = {"history": history, "generated_s": round(generated_s, 1)}
    for run, phase in enumerate(("cold", "restart"), start=1):
        if "router" in services:
            out |= _time_router(crb, env, folder, kafka, names, fed, phase, forwards=run)
        if "tracker" in services:
            out |= _time_tracker(crb, env, folder, history, phase)
    for service, file in (("router", "memory.sqlite"), ("tracker", "state.sqlite")):
        if service in services:
            out[f"{service}_snapshot_mib"] = _mib(folder / service / file)
    return out


def _mib(path: Path) -> float:
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return round(size / (1 << 20), 1)


def _time_router(
    crb: str, env: dict[str, str], folder: Path, kafka: Any, names: Any, fed: Any,
    phase: str, *, forwards: int,
) -> dict[str, Any]:  # fmt: skip
    """Start ``crb router run``, produce one referral on another chain at once, and
    time its forward (the ``forwards``-th in that inbox)."""
    referral = _from_nl(fed)
    log = (folder / f"router-{phase}.log").open("wb")
    router = subprocess.Popen(
        [crb, "router", "run", "--log-level", "info"], env=env, stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        asyncio.run(_send_and_await(kafka, names, referral, router, expect=forwards))
        return {
            f"router_{phase}_first_forward_s": round(time.monotonic() - t0, 2),
            f"router_{phase}_peak_rss_mib": round(_peak_rss_mib(router.pid), 1),
        }
    finally:
        router.terminate()
        router.wait(timeout=120)


def _time_tracker(
    crb: str, env: dict[str, str], folder: Path, history: int, phase: str
) -> dict[str, Any]:
    """Seconds from ``crb tracker run`` to ready, and its peak RSS then."""
    out: dict[str, Any] = {}
    port = free_port()
    tracker = subprocess.Popen(
        [crb, "tracker", "run", "--http-port", str(port), "--escalate-to", "int.coordinator"],
        env=env, stdout=subprocess.DEVNULL,
        stderr=(folder / f"tracker-{history}-{phase}.log").open("wb"),
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
            while True:
                if tracker.poll() is not None:
                    raise RuntimeError(f"the tracker exited (see {folder})")
                try:
                    if api.get("/healthz").json().get("ready"):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)  # polling /healthz
        out[f"tracker_{phase}_ready_s"] = round(time.monotonic() - t0, 2)
        out[f"tracker_{phase}_peak_rss_mib"] = round(_peak_rss_mib(tracker.pid), 1)
    finally:
        tracker.terminate()
        tracker.wait(timeout=120)
    return out


def _now() -> Any:
    from schemas import utcnow

    return utcnow()


def _from_nl(fed: Any) -> bytes:
    """A referral from nl.hotline to de.hotline (a chain without history)."""
    from keys.testing import synthetic_referral

    return bytes(
        fed.seal_referral(
            "nl.hotline", synthetic_referral(jurisdiction="DE"), jurisdiction="DE", now=_now()
        )
    )


async def _send_and_await(
    kafka: Any, names: Any, envelope: bytes, proc: subprocess.Popen[bytes], *, expect: int
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from adapters.kafka import client_kwargs

    kw = client_kwargs(kafka)
    producer = AIOKafkaProducer(**kw, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(names.outbox("nl.hotline"), envelope, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        names.inbox("de.hotline"), **kw, group_id=None, isolation_level="read_committed",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        deadline = time.monotonic() + 900
        seen = 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the router exited")
            batch = await consumer.getmany(timeout_ms=100)
            seen += sum(len(v) for v in batch.values())
            if seen >= expect:
                return
        raise TimeoutError("no forward within 900 s")
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max", type=int, default=100_000, help="largest history")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--services", default="router,tracker", help="comma-separated: router, tracker"
    )
    args = parser.parse_args(argv)
    from broker.dev.kafka_local import LocalKafka
    from broker.logs import configure_logging

    configure_logging("warning")
    services = tuple(s for s in args.services.split(",") if s in SERVICES)
    launcher = LocalKafka(Path(tempfile.mkdtemp(prefix="crb-bench-restart-kafka-")))
    launcher.up(nodes=1)
    rows = []
    try:
        for n in sorted({0, min(100_000, args.max), args.max}):
            folder = Path(tempfile.mkdtemp(prefix="crb-rs-"))
            rows.append(measure(launcher.settings(), n, folder, services))
            if not args.json:
                print(json.dumps(rows[-1]), flush=True)
    finally:
        launcher.destroy()
    base = rows[0]
    measured = {"router": "first_forward_s", "tracker": "ready_s"}
    for r in rows:
        for service in services:
            for phase in ("cold", "restart"):
                name = f"{service}_{phase}_{measured[service]}"
                r[f"{service}_{phase}_vs_empty"] = round(r[name] / base[name], 2)
    print(json.dumps({"restarts": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
