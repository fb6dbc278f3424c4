"""The whole round trip, each service in its own process, against two limits measured
in the same run.

``python -m bench.bench_e2e [--referrals N] [--rate R] [--json]``  (Kafka:
``CRB_KAFKA_BOOTSTRAP`` or a local secured one started for the run and stopped after)

The demo's federation and mix (hotlines of DE, NL, FR and BE referring to each
other, urgent cases also to the 24/7 police, trafficking cases to the regional
body, IE cases to the coordinator), each process logged in as its own principal:

- **senders**: one process per hotline (``python -m bench.bench_e2e --sender ID``)
  sealing and producing its share through the adapter SDK (``Sender`` + ``Outbox``,
  up to ``WINDOW`` sends in flight); ``--rate R`` paces all senders together at R
  referrals/s (default: as fast as they can, a burst);
- **router**: ``crb router run``; **tracker**: ``crb tracker run`` (its HTTP API
  tells when every handover is received, and the times to receipt);
- **receivers**: ``crb inbox --as ID`` for every participant (folder sink), sending
  the signed receipts back through the router.

Reported, all from the same run:

- ``referrals_per_s`` / ``handovers_per_s``: from the first produce to the last
  receipt the tracker recorded; ``p50_ms`` / ``p99_ms``: time to receipt (router
  forward to receipt forward) over every handover.
- ``crypto_limit_per_s``: the per-referral sequence of primitive operations the
  round trip needs at this run's mean recipients r — sender: Ed25519 sign + r HPKE
  seals + payload AEAD; router: verify; each recipient: verify + HPKE open + AEAD;
  each receipt: sign + HPKE seal + AEAD, router verify, sender verify + open + AEAD —
  timed alone, one core, times the cores the processes share (``os.cpu_count()``).
- ``kafka_limit_per_s``: raw aiokafka transactional consume-transform-produce of
  envelope-sized records, sized for throughput (``PT_*`` below), divided by the
  records the router must pass per referral (1 + r: the referral and its receipts).

``--json`` prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench._common import free_port, services_env

BOOT_TIMEOUT_S = 120.0
WINDOW = 256
"""Sends in flight per sender process (aiokafka batches them)."""
PT_BATCH = 2000
PT_LINGER_MS = 5
PT_FETCH_BYTES = 32 * 1024 * 1024
HOTLINES = ("de.hotline", "nl.hotline", "fr.hotline", "be.hotline")


# -- a sender process ----------------------------------------------------------------


async def _sender(
    folder: Path, prefix: str, sender: str, count: int, rate: float, seed: int
) -> None:
    """Seal and send ``count`` referrals as ``sender``; print the handovers expected."""
    from adapters import Identity, Outbox, Sender, Submission
    from adapters.kafka import CredentialStore, KafkaClients
    from broker.dev.demo import JURISDICTIONS, ORPHAN, synthetic_demo_referral
    from broker.settings import Settings
    from keys import Keystore, TrustStore, VerifyKey, load_directory, parse
    from schemas import TopicNames, utcnow

    rng = random.Random(seed)
    root = next((folder / "keys" / "federation").glob("ed25519-*.pub.pem"))
    directory = load_directory(
        folder / "directory.json",
        root=VerifyKey.from_pem(root.read_bytes()),
        trust_store=TrustStore(folder / f".trust-{sender}.json"),  # one per process
    )
    store = Keystore(folder / "keys")
    identity = Identity.load(store, sender, directory, now=utcnow())
    credential = CredentialStore(folder / "credentials").load(sender)
    assert credential is not None
    settings = Settings()
    clients = KafkaClients(credential.apply(settings.kafka))
    outbox = Outbox.of(clients, TopicNames(prefix), sender, settings.adapter)
    snd = Sender(identity, outbox)
    handovers = 0
    pace = len(HOTLINES) / rate if rate else 0.0
    started = time.monotonic()
    pending: set[asyncio.Task[Any]] = set()
    try:
        for i in range(count):
            if rng.random() < 0.05:
                jurisdiction = ORPHAN
            else:
                jurisdiction = rng.choice([j for j in JURISDICTIONS if j.lower() != sender[:2]])
            referral = synthetic_demo_referral(rng, sender, jurisdiction, rng.random() < 0.1)
            sealed = snd.seal_referral(Submission(referral, jurisdiction))
            handovers += len(parse(sealed.envelope).header.recipients)
            pending.add(asyncio.create_task(snd.send(sealed)))
            if len(pending) >= WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
            if pace:
                delay = started + (i + 1) * pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        for t in pending:
            await t
    finally:
        await outbox.stop()
    cpu = time.process_time()
    print(
        json.dumps({"sender": sender, "referrals": count, "handovers": handovers, "cpu_s": cpu}),
        flush=True,
    )


# -- limits measured in the same run -------------------------------------------------


def _best_rate(fn: Any, seconds: float = 0.6) -> float:
    """Operations per second of ``fn``: the best of short batches (noisy machine)."""
    start = time.perf_counter()
    fn()
    k = max(1, int(0.005 / max(time.perf_counter() - start, 1e-7)))
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter() - start) / k)
    return 1 / best


def crypto_limit(envelope_bytes: int, payload_bytes: int, recipients: float) -> dict[str, float]:
    """Referrals/s the machine's cores could carry if crypto were all there is."""
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    ed = Ed25519PrivateKey.generate()
    pub = ed.public_key()
    x = X25519PrivateKey.generate()
    key32 = bytes(32)
    wrapped = suite.encrypt(key32, x.public_key(), info=b"bench")
    message = bytes(envelope_bytes)
    signature = ed.sign(message)
    aead = ChaCha20Poly1305(key32)
    nonce = bytes(12)
    payload = bytes(payload_bytes)
    sealed_payload = aead.encrypt(nonce, payload, None)
    receipt = bytes(600)
    receipt_sig = ed.sign(receipt)
    sealed_receipt = aead.encrypt(nonce, receipt, None)
    t = {
        "sign": 1 / _best_rate(partial(ed.sign, message)),
        "verify": 1 / _best_rate(partial(pub.verify, signature, message)),
        "hpke_seal": 1 / _best_rate(partial(suite.encrypt, key32, x.public_key(), info=b"bench")),
        "hpke_open": 1 / _best_rate(partial(suite.decrypt, wrapped, x, info=b"bench")),
        "aead_seal": 1 / _best_rate(partial(aead.encrypt, nonce, payload, None)),
        "aead_open": 1 / _best_rate(partial(aead.decrypt, nonce, sealed_payload, None)),
        "r_sign": 1 / _best_rate(partial(ed.sign, receipt)),
        "r_verify": 1 / _best_rate(partial(pub.verify, receipt_sig, receipt)),
        "r_aead_seal": 1 / _best_rate(partial(aead.encrypt, nonce, receipt, None)),
        "r_aead_open": 1 / _best_rate(partial(aead.decrypt, nonce, sealed_receipt, None)),
    }
    r = recipients
    per_referral = (
        t["sign"] + r * t["hpke_seal"] + t["aead_seal"]  # sender seals once
        + t["verify"]  # router
        + r * (t["verify"] + t["hpke_open"] + t["aead_open"])  # each recipient opens
        + r * (t["r_sign"] + t["hpke_seal"] + t["r_aead_seal"])  # each receipt sealed
        + r * t["r_verify"]  # router verifies each receipt
        + r * (t["r_verify"] + t["hpke_open"] + t["r_aead_open"])  # sender opens receipts
    )  # fmt: skip
    cores = os.cpu_count() or 1
    return {
        "cpu_ms_per_referral": per_referral * 1000,
        "cores": cores,
        "crypto_limit_per_s": cores / per_referral,
    }


async def kafka_limit(kafka: Any, envelope_bytes: int, count: int) -> float:
    """Records/s of a raw transactional consume-transform-produce sized for
    throughput (big fetches, big transactions, lingering producer batches)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from adapters.kafka import client_kwargs

    kw = client_kwargs(kafka)
    base = f"benchpt{os.getpid()}"
    admin = AIOKafkaAdminClient(**kw)
    await admin.start()
    await admin.create_topics([NewTopic(f"{base}.in", 3, 1), NewTopic(f"{base}.out", 3, 1)])
    await admin.close()
    value = os.urandom(envelope_bytes)
    producer = AIOKafkaProducer(
        **kw, acks="all", linger_ms=PT_LINGER_MS, max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    try:
        futures = [await producer.send(f"{base}.in", value) for _ in range(count)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    group = f"{base}.group"
    consumer = AIOKafkaConsumer(
        f"{base}.in", **kw, group_id=group, isolation_level="read_committed",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=PT_BATCH,
        fetch_max_bytes=PT_FETCH_BYTES, max_partition_fetch_bytes=PT_FETCH_BYTES // 4,
    )  # fmt: skip
    tx = AIOKafkaProducer(
        **kw, transactional_id=f"{base}.tx", linger_ms=PT_LINGER_MS,
        max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    await tx.start()
    done = 0
    start = time.perf_counter()
    try:
        while done < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=PT_BATCH)
            if not batch:
                continue
            async with tx.transaction():
                futures = [
                    await tx.send(f"{base}.out", r.value, key=r.key)
                    for records in batch.values()
                    for r in records
                ]
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs}
                await tx.send_offsets_to_transaction(offsets, group)
                await asyncio.gather(*futures)
            done += sum(len(rs) for rs in batch.values())
    finally:
        await tx.stop()
        await consumer.stop()
    return count / (time.perf_counter() - start)


# -- the run ------------------------------------------------------------------------------


@contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _crb(*argv: str) -> list[str]:
    return [str(Path(sys.executable).with_name("crb")), *argv]


def run(
    kafka: Any, referrals: int, rate: float, folder: Path, kafka_pid: int | None = None
) -> dict[str, Any]:
    """Provision, start every service process, send, wait for every receipt."""
    from broker.tracker import OPERATOR, TokenStore

    env, fed, prefix, sizes = _provisioned(kafka, referrals, folder)
    token, _ = TokenStore(folder / "tokens.json").issue(
        OPERATOR, ttl=timedelta(hours=2), now=_now()
    )
    port = free_port()
    logs = folder / "logs"
    logs.mkdir()
    repo = Path(__file__).resolve().parents[1]
    with (
        _processes() as procs,
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ) as api,
    ):

        def spawn(name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
            log = (logs / f"{name}.log").open("wb")
            out = kw.pop("stdout", log)
            p = subprocess.Popen(argv, env=env, stdout=out, stderr=log, cwd=repo, **kw)
            procs.append(p)
            return p

        services = [
            spawn("router", _crb("router", "run", "--log-level", "warning")),
            spawn("tracker", _crb("tracker", "run", "--http-port", str(port))),
            *(spawn(f"inbox-{pid}", _crb("inbox", "--as", pid)) for pid in fed.members),
        ]
        _ready(api, services)
        shares = [referrals // len(HOTLINES)] * len(HOTLINES)
        shares[0] += referrals - sum(shares)
        started = time.monotonic()
        senders = [
            spawn(f"send-{s}", _sender_argv(s, n, rate, folder, prefix, i), stdout=subprocess.PIPE)
            for i, (s, n) in enumerate(zip(HOTLINES, shares, strict=True))
        ]
        expected = 0
        cpu: dict[str, float] = {"senders": 0.0}
        for p in senders:
            out, _ = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise RuntimeError(f"a sender failed (see {logs})")
            report = json.loads(out.decode().strip().splitlines()[-1])
            expected += report["handovers"]
            cpu["senders"] += report["cpu_s"]
        sent_s = time.monotonic() - started
        received = 0
        while received < expected:
            _alive(services)
            routes = api.get("/routes").json()["routes"]
            received = sum(r["received"] for r in routes if r["recipient"])
            if received < expected:
                time.sleep(0.25)  # polling the tracker's API for the last receipt
        elapsed = time.monotonic() - started
        cpu["router"] = _cpu_s(services[0].pid)
        cpu["tracker"] = _cpu_s(services[1].pid)
        cpu["receivers"] = sum(_cpu_s(p.pid) for p in services[2:])
        if kafka_pid:
            cpu["kafka"] = _cpu_s(kafka_pid)
        body = api.get("/handovers", params={"limit": 100_000}).json()
    times = sorted(
        h["seconds_to_receipt"] * 1000 for h in body["handovers"] if h["seconds_to_receipt"]
    )
    return {
        "referrals": referrals,
        "handovers": expected,
        "rate": rate or None,
        "sent_s": sent_s,
        "elapsed_s": elapsed,
        "referrals_per_s": referrals / elapsed,
        "handovers_per_s": expected / elapsed,
        "p50_ms": statistics.median(times) if times else None,
        "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] if times else None,
        "recipients_per_referral": expected / referrals,
        "cpu_ms_per_referral_by_role": {k: round(v * 1000 / referrals, 3) for k, v in cpu.items()},
        **sizes,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sender_argv(
    sender: str, count: int, rate: float, folder: Path, prefix: str, seed: int
) -> list[str]:
    return [
        sys.executable, "-m", "bench.bench_e2e", "--sender", sender, "--count", str(count),
        "--rate", str(rate), "--folder", str(folder), "--prefix", prefix, "--seed", str(seed),
    ]  # fmt: skip


def _now() -> Any:
    from schemas import utcnow

    return utcnow()


def _provisioned(
    kafka: Any, referrals: int, folder: Path
) -> tuple[dict[str, str], Any, str, dict[str, int]]:
    """The demo federation written to ``folder``, its topics, users and ACLs; the
    services' environment, the federation, the topic prefix, sample sizes."""
    from adapters.kafka import KafkaClients
    from broker.dev.demo import (
        DemoConfig,
        _federation,
        _provision,
        _settings,
        synthetic_demo_referral,
    )
    from schemas import canonical_json

    now = _now()
    config = DemoConfig(kafka=kafka, folder=folder, referrals=referrals)
    fed = _federation(now)
    fed.write(folder)
    settings = _settings(config)
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"partitions": 2})}
    )
    sample = synthetic_demo_referral(random.Random(0), "de.hotline", "NL", False)
    sizes = {
        "payload_bytes": len(canonical_json(sample)),
        "envelope_bytes": len(fed.seal_referral("de.hotline", sample, jurisdiction="NL", now=now)),
    }
    asyncio.run(_provision(fed, settings, KafkaClients(settings.kafka), folder, now))
    env = services_env(kafka, folder, config.prefix, settings, admin=False)
    return env, fed, config.prefix, sizes


def _alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, p.args))} exited with {p.returncode}")  # type: ignore[arg-type]


def _ready(api: httpx.Client, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        _alive(procs)
        try:
            if api.get("/healthz").json().get("ready"):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)  # polling the tracker's /healthz
    raise TimeoutError("the tracker did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--referrals", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=0.0, help="referrals/s in total (0: burst)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sender", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from broker.logs import configure_logging

    configure_logging("warning")
    if args.sender:
        asyncio.run(
            _sender(args.folder, args.prefix, args.sender, args.count, args.rate, args.seed)
        )
        return 0
    launcher = None
    if os.environ.get("CRB_KAFKA_BOOTSTRAP"):
        from broker.settings import Settings

        kafka = Settings().kafka.model_copy(update={"bootstrap": os.environ["CRB_KAFKA_BOOTSTRAP"]})
    else:
        from broker.dev.kafka_local import LocalKafka

        launcher = LocalKafka(Path(tempfile.mkdtemp(prefix="crb-bench-e2e-kafka-")))
        launcher.up(nodes=1)
        kafka = launcher.settings()
    try:
        folder = Path(tempfile.mkdtemp(prefix="crb-bench-e2e-"))
        pid = launcher.nodes()[0].pid if launcher is not None else None
        result = run(kafka, args.referrals, args.rate, folder, kafka_pid=pid)
        envelope, payload = result["envelope_bytes"], result["payload_bytes"]
        result.update(crypto_limit(envelope, payload, result["recipients_per_referral"]))
        pt = asyncio.run(kafka_limit(kafka, envelope, 20_000))
        result["kafka_passthrough_records_per_s"] = pt
        result["kafka_limit_per_s"] = pt / (1 + result["recipients_per_referral"])
    finally:
        if launcher is not None:
            launcher.destroy()
    result["ratio_to_crypto"] = result["referrals_per_s"] / result["crypto_limit_per_s"]
    result["ratio_to_kafka"] = result["referrals_per_s"] / result["kafka_limit_per_s"]
    if not args.json:
        print(
            f"{result['referrals']} referrals, {result['handovers']} handovers in "
            f"{result['elapsed_s']:.1f} s: {result['referrals_per_s']:.0f} referrals/s "
            f"({result['handovers_per_s']:.0f} handovers/s); time to receipt p50 "
            f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms\n"
            f"crypto limit {result['crypto_limit_per_s']:.0f}/s "
            f"({result['cpu_ms_per_referral']:.2f} ms CPU per referral, {result['cores']} cores)"
            f" -> ratio {result['ratio_to_crypto']:.3f}\n"
            f"Kafka limit {result['kafka_limit_per_s']:.0f}/s "
            f"({result['kafka_passthrough_records_per_s']:.0f} records/s passthrough) -> ratio "
            f"{result['ratio_to_kafka']:.3f}\n"
            "CPU ms per referral: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result["cpu_ms_per_referral_by_role"].items())
        )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
