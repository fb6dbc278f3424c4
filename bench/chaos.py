"""Chaos: the whole federation on a three-broker secured cluster, every fault at once.

``python -m bench.chaos [--referrals N] [--rate R] [--router-kills K] [--json]``
(``make chaos``: 10,000 referrals; a short version runs in ``make test``)

A local three-node Kafka (KRaft, SASL/SCRAM, ACLs; replication 3, min ISR 2) is
started for the run; the demo's federation is provisioned on it and each service
runs in its own process, logged in as its own principal, as in production:

- two routers (``crb router run``, one consumer group, outboxes of 3 partitions);
- the tracker (``crb tracker run`` with its HTTP API);
- a receiving adapter (``crb inbox --as P``, folder sink) for every participant
  that receives: the four hotlines, the four 24/7 police contacts, the
  coordinator and the regional body;
- the senders: the four hotlines' ``Sender`` + ``Outbox`` in this process, sending
  the demo's mix (:func:`broker.dev.demo.referral_mix`: urgent, orphan, repeats
  that must bring deconfliction notices, hosting countries by lookup) at a steady
  rate, plus, every ``hostile_every`` referrals, an earlier envelope again (a
  replay: must be dead-lettered ``duplicate_message``) and a fresh envelope with
  one flipped byte (must be dead-lettered, never delivered).

While the referrals flow, a fault schedule drawn from the seed runs (each
restarted as a supervisor would): a router SIGKILLed ``router_kills`` times (either
of the two, at random), one broker SIGKILLed and restarted 15 s later, every
receiving adapter SIGKILLed once while its inbox folder is growing (in the middle
of a batch: files written, offsets not yet committed), the tracker SIGKILLed and
restarted, and one router frozen with SIGSTOP past its session timeout and then
resumed (the group gives its partitions to the other; it comes back a zombie and
must be fenced). A service that exits on its own is restarted too and counted as
an *unplanned exit*.

Then the independent check — nothing of the services' own bookkeeping:

- a plain aiokafka consumer, ``read_committed``, reads every inbox topic and the
  dead-letter topic from the start: per expected (referral, recipient) pair the
  number of committed records (1 = delivered; 0 = lost; more = duplicated); inbox
  records that are no expected referral, no receipt of one and no notice are
  *unexpected*; every pair must have exactly one receipt in the sender's inbox;
  every designed repeat named by a notice (synthetic URLs can
  also match by chance: those notices are counted, not failed); no notice twice;
- the receivers' inbox folders: one file per pair whose ``envelope_sha256`` is the
  digest of the committed record (delivered to the local system, intact);
- the tracker's API: every handover of every referral in a final state
  (``received``);
- ``crb audit verify``: every audit chain intact and signed by the router.

One summary table; exit status 1 on any loss, duplicate, unexpected record,
handover not final, undelivered file or broken audit chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._common import free_port, services_env

ROUTERS = ("router-a", "router-b")
RESTART_DELAY_S = (0.2, 2.0)
"""A killed service is started again after a random pause in this range."""
BOOT_TIMEOUT_S = 120.0
BROKER_BACK_S = 600.0
"""How long a restarted broker may take to answer (log recovery on a loaded machine)."""
SEND_WINDOW = 64
"""Sends in flight from this process (aiokafka batches them)."""


@dataclass
class ChaosConfig:
    referrals: int = 10_000
    rate: float = 50.0
    """Referrals per second, all hotlines together."""
    router_kills: int = 10
    receiver_kills: bool = True
    broker_kill: bool = True
    tracker_kill: bool = True
    freeze: bool = True
    session_timeout_ms: int = 10_000
    """The routers' group session timeout; the frozen router stays stopped 5 s longer."""
    broker_down_s: float = 15.0
    """How long the killed broker stays down before it is started again."""
    partitions: int = 3
    hostile_every: int = 500
    seed: int = 0
    drain_timeout_s: float = 900.0
    """After the last send, how long to wait for every receipt."""
    soak_sample_s: float = 0.0
    """Sample each service's RSS, open files and the lag this often (0: never)."""
    router_cache_mib: int | None = None
    """The routers' ``snapshot_cache_mib`` (``None``: the default)."""


@dataclass
class FaultRecord:
    at_s: float
    fault: str
    target: str
    detail: str = ""


@dataclass
class Sample:
    at_s: float
    rss_mib: dict[str, float]
    fds: dict[str, int]
    lag: dict[str, int]
    """Records not yet committed: routers' group over the outboxes, tracker over the
    status topic, receivers over their inboxes."""
    sent: int
    received: int


@dataclass
class ChaosReport:
    referrals: int
    sent: int
    """Referrals Kafka acknowledged (the expected set)."""
    expected_handovers: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    receipts: int
    receipts_missing: int
    receipts_duplicated: int
    files_ok: int
    files_missing_or_wrong: int
    notices: dict[str, int]
    repeats: int
    repeats_unnoticed: int
    """Designed repeats no notice names."""
    dead_letters: dict[str, int]
    replays_injected: int
    tampered_injected: int
    tampered_delivered: int
    final_handovers: int
    not_final: dict[str, int]
    audit_ok: bool
    audit_output: str
    faults: list[FaultRecord]
    unplanned_exits: dict[str, int]
    send_retries: int
    elapsed_s: float
    send_s: float
    samples: list[Sample] = field(default_factory=list)
    replicas: tuple[int, int] = (0, 0)
    """(fewest replicas of any federation topic's partition, brokers in the cluster)."""

    @property
    def ok(self) -> bool:
        return (
            self.replicas[0] >= min(3, self.replicas[1])
            and self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and self.receipts_missing == 0
            and self.receipts_duplicated == 0
            and self.files_missing_or_wrong == 0
            and self.tampered_delivered == 0
            and not self.not_final
            and self.audit_ok
            and self.repeats_unnoticed == 0
            and self.notices.get("referred_again", 0) >= self.repeats
            and not any(f.fault == "fault_failed" for f in self.faults)
        )

    def table(self) -> str:
        rows = [
            ("topic replicas (fewest of any partition) / brokers",
             f"{self.replicas[0]} / {self.replicas[1]}"),
            ("referrals sent (Kafka acknowledged)", f"{self.sent} of {self.referrals}"),
            ("handovers expected", self.expected_handovers),
            ("delivered (committed in the recipient's inbox)", self.delivered),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("unexpected records in inboxes", self.unexpected),
            ("files in inbox folders matching the record", self.files_ok),
            ("files missing or not matching", self.files_missing_or_wrong),
            ("receipts (one per handover)", self.receipts),
            ("receipts missing / duplicated",
             f"{self.receipts_missing} / {self.receipts_duplicated}"),
            (
                "deconfliction notices (already / again)",
                f"{self.notices.get('already_referred', 0)} / "
                f"{self.notices.get('referred_again', 0)} for {self.repeats} repeats",
            ),
            ("repeats without their notice", self.repeats_unnoticed),
            ("dead-lettered", ", ".join(f"{k} {v}" for k, v in sorted(self.dead_letters.items()))),
            ("  replays injected / tampered injected",
             f"{self.replays_injected} / {self.tampered_injected}"),
            ("  tampered envelopes delivered", self.tampered_delivered),
            ("handovers final in the tracker (received)", self.final_handovers),
            ("handovers not final", ", ".join(f"{k} {v}" for k, v in self.not_final.items()) or 0),
            ("crb audit verify", "ok" if self.audit_ok else "FAILED"),
            ("sender retries (Kafka did not acknowledge in time)", self.send_retries),
            ("unplanned exits",
             ", ".join(f"{k} {v}" for k, v in sorted(self.unplanned_exits.items())) or 0),
            ("sending / whole run", f"{self.send_s:.0f} s / {self.elapsed_s:.0f} s"),
        ]  # fmt: skip
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines.append("")
        lines.append("fault schedule (seconds from the first send):")
        lines += [f"  {f.at_s:7.1f}  {f.fault:<15} {f.target:<14} {f.detail}" for f in self.faults]
        lines.append("")
        lines.append("PASS: lost 0, duplicated 0" if self.ok else "FAIL")
        return "\n".join(lines)


# -- the service processes -------------------------------------------------------------


class Service:
    """One ``crb`` process, started again after a planned kill or an unplanned exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.busy = False
        """A fault is acting on it: the supervisor leaves it alone."""
        self.starts = 0

    def start(self) -> None:
        # Unbuffered: a SIGKILLed process's last log lines are what explain a fault.
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Fleet:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.unplanned: Counter[str] = Counter()

    def add(self, service: Service) -> Service:
        self.services[service.name] = service
        service.start()
        return service

    async def supervise(self, stop: asyncio.Event) -> None:
        """Start again whatever exited on its own (as systemd's Restart=always would)."""
        while not stop.is_set():
            for s in self.services.values():
                if not s.busy and s.exited():
                    self.unplanned[s.name] += 1
                    s.start()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def stop_all(self) -> None:
        for s in self.services.values():
            s.stop()


def _crb(*argv: str) -> list[str]:
    return [str(Path(sys.executable).with_name("crb")), *argv]


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _count_files(folder: Path) -> int:
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


# -- the run ----------------------------------------------------------------------------


@dataclass
class _Sent:
    sender: str
    message_id: str
    recipients: tuple[str, ...]
    digest: str


@dataclass
class _Run:
    config: ChaosConfig
    folder: Path
    launcher: Any
    admin: Any
    """The provisioning admin's Kafka settings (the independent reader logs in so)."""
    prefix: str
    fleet: Fleet = field(default_factory=Fleet)
    sent: dict[str, _Sent] = field(default_factory=dict)
    repeats: int = 0
    repeat_ids: set[str] = field(default_factory=set)
    """Referrals sent to repeat another hotline's URL: each must bring a notice."""
    replays: int = 0
    tampered: set[str] = field(default_factory=set)
    """SHA-256 of every tampered envelope sent."""
    send_retries: int = 0
    faults: list[FaultRecord] = field(default_factory=list)
    started: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def note(self, fault: str, target: str, detail: str = "") -> None:
        self.faults.append(FaultRecord(round(self.now_s(), 1), fault, target, detail))


def _members_receiving(fed: Any) -> list[str]:
    from broker.dev.demo import INDUSTRY

    return [pid for pid in fed.members if pid != INDUSTRY]


async def _provision(run: _Run) -> tuple[Any, Any, dict[str, str], Any]:
    """The demo federation in ``run.folder``, its topics, users and ACLs; returns the
    federation, the settings, the services' environment and ``as_principal``."""
    from adapters.kafka import KafkaClients
    from broker.dev.demo import DemoConfig, _federation, _provision, _settings
    from schemas import utcnow

    now = utcnow()
    fed = _federation(now)
    fed.write(run.folder)
    settings = _settings(DemoConfig(kafka=run.admin, folder=run.folder, prefix=run.prefix))
    settings = settings.model_copy(
        update={
            # Replicated like the cluster's internal topics (3, min ISR 2 on three
            # nodes): a broker kill must take no partition offline.
            "topics": settings.topics.model_copy(
                update={
                    "partitions": run.config.partitions,
                    "replication": min(3, len(run.launcher.nodes())),
                    "min_insync_replicas": 2 if len(run.launcher.nodes()) >= 3 else None,
                }
            ),
            "adapter": settings.adapter.model_copy(
                update={"group_id_prefix": f"{run.prefix}-adapter"}
            ),
            # Minutes, not the demo's seconds: a receiver killed a few seconds must not
            # make its handovers overdue and escalated (that is the escalation test).
            "tracker": settings.tracker.model_copy(
                update={
                    "receipt_sla_urgent": timedelta(hours=1),
                    "receipt_sla_high": timedelta(hours=1),
                    "receipt_sla_routine": timedelta(hours=1),
                }
            ),
        }
    )
    as_principal = await _provision(fed, settings, KafkaClients(settings.kafka), run.folder, now)
    env = services_env(run.admin, run.folder, run.prefix, settings, admin=False)
    env |= {
        "CRB_ADAPTER__GROUP_ID_PREFIX": settings.adapter.group_id_prefix,
        "CRB_TRACKER__GROUP_ID": settings.tracker.group_id,
        "CRB_TRACKER__RECEIPT_SLA_URGENT": "PT1H",
        "CRB_TRACKER__RECEIPT_SLA_HIGH": "PT1H",
        "CRB_TRACKER__RECEIPT_SLA_ROUTINE": "PT1H",
        "CRB_ROUTER__SESSION_TIMEOUT_MS": str(run.config.session_timeout_ms),
    }
    if run.config.router_cache_mib is not None:
        env["CRB_ROUTER__SNAPSHOT_CACHE_MIB"] = str(run.config.router_cache_mib)
    return fed, settings, env, as_principal


def _start_services(run: _Run, fed: Any, env: dict[str, str], port: int) -> None:
    logs = run.folder / "logs"
    logs.mkdir(exist_ok=True)
    for name in ROUTERS:
        # Each router its own snapshot (one process per snapshot file).
        own = env | {"CRB_ROUTER__SNAPSHOT": str(run.folder / name / "memory.sqlite")}
        run.fleet.add(Service(name, _crb("router", "run", "--log-level", "info"), own, logs))
    run.fleet.add(Service("tracker", _crb("tracker", "run", "--http-port", str(port)), env, logs))
    for pid in _members_receiving(fed):
        run.fleet.add(Service(f"inbox-{pid}", _crb("inbox", "--as", pid), env, logs))


def _inbox_folder(run: _Run, pid: str) -> Path:
    return run.folder / "adapters" / pid / "inbox"


async def _ready(api: Any, fleet: Fleet) -> None:
    import httpx

    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        for s in fleet.services.values():
            if s.exited():
                raise RuntimeError(f"{s.name} exited at start (see {s.log_path})")
        with contextlib.suppress(httpx.TransportError, ValueError):
            if (await api.get("/healthz")).json().get("ready"):
                return
        await asyncio.sleep(0.25)  # polling the tracker's /healthz
    raise TimeoutError("the tracker did not become ready")


# -- sending ----------------------------------------------------------------------------


async def _send(run: _Run, fed: Any, settings: Any, as_principal: Any) -> None:
    """The demo's mix at ``config.rate``, with a replay and a tampered envelope every
    ``hostile_every`` referrals; every send retried (same bytes) until acknowledged."""
    from adapters import Identity, Outbox, Sender, SendError, Submission
    from adapters.kafka import KafkaClients
    from broker.dev.demo import referral_mix
    from keys import parse
    from schemas import TopicNames

    config = run.config
    rng = random.Random(config.seed)
    directory = fed.directory()
    names = TopicNames(run.prefix)
    hotlines = sorted(pid for pid in fed.members if pid.endswith(".hotline"))
    outboxes = {
        pid: Outbox.of(KafkaClients(as_principal(pid).kafka), names, pid, settings.adapter)
        for pid in hotlines
    }
    senders = {
        pid: Sender(
            Identity(
                pid,
                fed.members[pid].signing,
                (fed.members[pid].opening,),
                directory,
                deconfliction=fed.deconfliction,
            ),
            outboxes[pid],
        )
        for pid in hotlines
    }

    async def deliver(sender: str, sealed: Any, envelope: bytes) -> None:
        while True:
            try:
                await outboxes[sender].send(
                    envelope, case_id=sealed.case_id, message_id=sealed.message_id
                )
                return
            except SendError as exc:
                if not exc.retriable:
                    raise
                run.send_retries += 1

    pending: set[asyncio.Task[None]] = set()

    async def launch(sender: str, sealed: Any, envelope: bytes) -> None:
        nonlocal pending
        pending.add(asyncio.ensure_future(deliver(sender, sealed, envelope)))
        if len(pending) >= SEND_WINDOW:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()

    recent: list[tuple[str, Any]] = []  # the last 200 referrals sent: replay sources
    pace = 1 / config.rate
    try:
        for i, item in enumerate(referral_mix(rng, config.referrals)):
            delay = run.started + i * pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the senders, not synchronisation
            sealed = senders[item.sender].seal_referral(
                Submission(item.referral, item.jurisdiction)
            )
            parsed = parse(sealed.envelope)
            run.sent[str(sealed.message_id)] = _Sent(
                item.sender,
                str(sealed.message_id),
                tuple(sorted(parsed.header.recipients)),
                parsed.digest,
            )
            run.repeats += item.repeat
            if item.repeat:
                run.repeat_ids.add(str(sealed.message_id))
            await launch(item.sender, sealed, sealed.envelope)
            recent = [*recent[-199:], (item.sender, sealed)]
            if (i + 1) % config.hostile_every == 0:
                for who, sealed, envelope in _hostile(run, rng, senders[item.sender], recent):
                    await launch(who, sealed, envelope)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for outbox in outboxes.values():
            with contextlib.suppress(Exception):
                await outbox.stop()


def _hostile(
    run: _Run, rng: random.Random, sender: Any, recent: list[tuple[str, Any]]
) -> list[tuple[str, Any, bytes]]:
    """A replay (the exact bytes of a referral sent ~200 before) and a fresh
    envelope with one flipped byte (tampered in transit): (sender, sealed, bytes)."""
    from adapters import Submission
    from broker.dev.demo import synthetic_demo_referral

    who, old = recent[0]
    run.replays += 1
    me = sender.identity.participant
    jurisdiction = "NL" if not me.startswith("nl.") else "DE"
    fresh = sender.seal_referral(
        Submission(synthetic_demo_referral(rng, me, jurisdiction, False), jurisdiction)
    )
    tampered = bytearray(fresh.envelope)
    tampered[len(tampered) // 2] ^= 0x01
    run.tampered.add(hashlib.sha256(tampered).hexdigest())
    return [(who, old, old.envelope), (me, fresh, bytes(tampered))]


# -- faults -----------------------------------------------------------------------------


def _plan(
    config: ChaosConfig, rng: random.Random, receivers: list[str], nodes: list[int]
) -> list[tuple[float, str, str]]:
    """(seconds from the first send, fault, target), drawn from the seed; all inside
    the sending window, so every fault hits referrals in flight."""
    window = config.referrals / config.rate
    lo, hi = 0.08 * window, 0.85 * window
    plan = [
        (rng.uniform(lo, hi), "router_kill", rng.choice(ROUTERS))
        for _ in range(config.router_kills)
    ]
    if config.broker_kill and nodes:
        plan.append((rng.uniform(0.25, 0.4) * window, "broker_kill", f"node-{rng.choice(nodes)}"))
    if config.tracker_kill:
        plan.append((rng.uniform(0.45, 0.55) * window, "tracker_kill", "tracker"))
    if config.freeze:
        plan.append((rng.uniform(0.55, 0.65) * window, "freeze", rng.choice(ROUTERS)))
    if config.receiver_kills:
        plan += [(rng.uniform(lo, hi), "receiver_kill", f"inbox-{pid}") for pid in receivers]
    return sorted(plan)  # fmt: skip


async def _faults(run: _Run, plan: list[tuple[float, str, str]]) -> None:
    """Run each fault at its time, as its own task; faults on one service take
    turns (a kill waits for a freeze of the same router to end)."""
    rng = random.Random(run.config.seed + 1)
    locks: dict[str, asyncio.Lock] = {}

    async def restart(service: Service) -> None:
        await asyncio.sleep(rng.uniform(*RESTART_DELAY_S))  # the supervisor's pause
        service.start()

    async def one(fault: str, target: str) -> None:
        async with locks.setdefault(target, asyncio.Lock()):
            if fault == "broker_kill":
                node = int(target.removeprefix("node-"))
                await asyncio.to_thread(run.launcher.kill_node, node, signal.SIGKILL)
                down = run.config.broker_down_s
                run.note("broker_kill", target, f"SIGKILL; down {down:.0f} s")
                await asyncio.sleep(down)  # the outage being injected
                started = time.monotonic()
                await asyncio.to_thread(run.launcher.up, nodes=3, timeout_s=BROKER_BACK_S)
                took = time.monotonic() - started
                run.note("broker_restart", target, f"back in the cluster after {took:.0f} s")
                return
            service = run.fleet.services[target]
            service.busy = True
            try:
                if fault in ("router_kill", "tracker_kill"):
                    await service.kill()
                    run.note(fault, target, "SIGKILL")
                    await restart(service)
                elif fault == "receiver_kill":
                    detail = await _kill_mid_batch(run, service)
                    run.note(fault, target, detail)
                    await restart(service)
                elif fault == "freeze":
                    service.signal(signal.SIGSTOP)
                    frozen = run.config.session_timeout_ms / 1000 + 5
                    run.note(
                        "freeze", target, f"SIGSTOP for {frozen:.0f} s (session timeout + 5 s)"
                    )
                    await asyncio.sleep(frozen)  # the freeze being injected
                    service.signal(signal.SIGCONT)
                    run.note("resume", target, "SIGCONT")
            finally:
                service.busy = False

    async def guarded(fault: str, target: str) -> None:
        try:
            await one(fault, target)
        except Exception as exc:  # a fault that could not run is reported, not fatal
            run.note("fault_failed", target, f"{fault}: {type(exc).__name__}: {exc}")

    tasks = []
    for at, fault, target in plan:
        delay = run.started + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule's time
        tasks.append(asyncio.create_task(guarded(fault, target)))
    await asyncio.gather(*tasks)


async def _kill_mid_batch(run: _Run, service: Service) -> str:
    """SIGKILL a receiver the moment its inbox folder grows (a batch written, its
    offsets not yet committed), or after 60 s without growth."""
    folder = _inbox_folder(run, service.name.removeprefix("inbox-"))
    before = _count_files(folder)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # watching the folder
        now = _count_files(folder)
        if now > before:
            await service.kill()
            return f"SIGKILL mid-batch: folder grew {before} -> {now} files"
        before = now
    await service.kill()
    return f"SIGKILL (no batch seen in 60 s; {before} files)"


# -- sampling (the soak) -----------------------------------------------------------------


async def _lags(run: _Run, groups: list[str]) -> dict[str, int]:
    """Per consumer group: end offsets minus committed offsets, over the partitions
    the group has committed."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from adapters.kafka import client_kwargs

    kwargs = client_kwargs(run.admin)
    admin = AIOKafkaAdminClient(**kwargs)
    consumer = AIOKafkaConsumer(**kwargs, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    try:
        out = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            if not committed:
                out[group] = 0
                continue
            ends = await consumer.end_offsets(list(committed))
            out[group] = sum(max(0, ends[tp] - c.offset) for tp, c in committed.items())
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def _sample(run: _Run, api: Any, stop: asyncio.Event, groups: dict[str, str]) -> None:
    while not stop.is_set():
        rss, fds = {}, {}
        for name, s in run.fleet.services.items():
            if s.proc is not None and s.proc.poll() is None:
                rss[name], fds[name] = round(_rss_mib(s.pid), 1), _fds(s.pid)
        with contextlib.suppress(Exception):
            lag = await _lags(run, list(groups.values()))
            lag = {name: lag[g] for name, g in groups.items()}
            received = await _received(api)
            run.samples.append(
                Sample(round(run.now_s(), 1), rss, fds, lag, len(run.sent), received)
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), run.config.soak_sample_s)


async def _progress(run: _Run, api: Any, stop: asyncio.Event, every_s: float = 10.0) -> None:
    """A line on stderr every ``every_s``: what was sent, received, and the last fault."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        received: int | str = "?"
        with contextlib.suppress(Exception):
            received = await _received(api)
        last = run.faults[-1] if run.faults else None
        fault = f"; last fault {last.fault} {last.target} at {last.at_s:.0f} s" if last else ""
        print(
            f"[{run.now_s():5.0f} s] sent {len(run.sent)}, handovers received {received}{fault}",
            file=sys.stderr,
            flush=True,
        )


async def _received(api: Any) -> int:
    routes = (await api.get("/routes")).json()["routes"]
    return sum(r["received"] for r in routes if r["recipient"])


# -- the independent check ---------------------------------------------------------------


async def _read_committed(admin: Any, topics: list[str]) -> dict[str, list[Any]]:
    """Every committed record of ``topics``, with a plain aiokafka consumer."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from adapters.kafka import client_kwargs

    consumer = AIOKafkaConsumer(
        **client_kwargs(admin),
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # a plain metadata request
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(cluster.partitions_for_topic(t) or ())
        ]
        missing = set(topics) - {tp.topic for tp in tps}
        if missing:
            raise RuntimeError(f"no partitions found for {sorted(missing)}")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[str, list[Any]] = {t: [] for t in topics}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                out[tp.topic].extend(records)
        return out
    finally:
        await consumer.stop()


async def _fewest_replicas(run: _Run) -> int:
    """The fewest replicas any partition of the run's topics has (a plain metadata
    request: what the cluster holds, not what the provisioning asked for)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from adapters.kafka import client_kwargs

    admin = AIOKafkaAdminClient(**client_kwargs(run.admin))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(run.prefix + ".")]
        described = await admin.describe_topics(names)
        return min(len(p["replicas"]) for t in described for p in t["partitions"])
    finally:
        await admin.close()


def _header(record: Any, name: str) -> bytes | None:
    return next((v for k, v in record.headers or () if k == name), None)


@dataclass
class _Inboxes:
    """What the committed inbox records hold (:func:`_inboxes`)."""

    referrals: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(recipient, message id) -> committed records of that referral."""
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    receipts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(message id answered, receipt sender) -> committed receipts."""
    notices: Counter[str] = field(default_factory=Counter)
    notice_kinds: dict[str, str] = field(default_factory=dict)
    noticed: set[str] = field(default_factory=set)
    """Referrals a notice was about (either side: which of two referrals is the
    earlier one is the order the routers forwarded them in)."""
    unexpected: int = 0
    tampered_delivered: int = 0


def _inboxes(run: _Run, read: dict[str, list[Any]], members: list[str]) -> _Inboxes:
    from keys import EnvelopeError, parse
    from schemas import TopicNames

    names = TopicNames(run.prefix)
    out = _Inboxes()
    for pid in members:
        for r in read[names.inbox(pid)]:
            kind = _header(r, "crb-record")
            if kind == b"notice":
                body = json.loads(r.value)
                out.notices[body["notice_id"]] += 1
                out.notice_kinds[body["notice_id"]] = body["kind"]
                out.noticed.update((body["message_id"], body["matched"]["message_id"]))
                continue
            if kind is not None:
                out.unexpected += 1  # an escalation: none is expected in this run
                continue
            if hashlib.sha256(r.value or b"").hexdigest() in run.tampered:
                out.tampered_delivered += 1
                continue
            try:
                header = parse(r.value).header
            except EnvelopeError:
                out.unexpected += 1
                continue
            mid = str(header.message_id)
            if header.message_type.value == "referral" and mid in run.sent:
                out.referrals[(pid, mid)] += 1
                out.digests[(pid, mid)] = hashlib.sha256(r.value).hexdigest()
            elif header.message_type.value == "receipt" and str(header.in_reply_to) in run.sent:
                out.receipts[(str(header.in_reply_to), header.sender)] += 1
            else:
                out.unexpected += 1
    return out


def _dead_letters(run: _Run, records: list[Any]) -> Counter[str]:
    """The dead-letter topic by reason and what the record was."""
    from keys import EnvelopeError, parse

    dead: Counter[str] = Counter()
    for r in records:
        reason = (_header(r, "crb-reason") or b"?").decode()
        value = r.value or b""
        if hashlib.sha256(value).hexdigest() in run.tampered:
            dead[f"{reason} (tampered)"] += 1
            continue
        try:
            header = parse(value).header
            what = header.message_type.value
            if what == "referral" and str(header.message_id) in run.sent:
                what = "referral sent before"
        except EnvelopeError:
            what = "not an envelope"
        dead[f"{reason} ({what})"] += 1
    return dead


async def _explain_duplicates(
    run: _Run, names: Any, members: list[str], read: dict[str, list[Any]], seen: _Inboxes
) -> None:
    """Write ``duplicates.json`` in the run folder: every record of a referral,
    receipt or notice committed more than once, with where each copy came from (the
    outbox records and the audit decisions naming its message id)."""
    from keys import EnvelopeError, parse

    twice_referrals = {m for (_, m), n in seen.referrals.items() if n > 1}
    twice_receipts = {m for (m, _), n in seen.receipts.items() if n > 1}
    twice_notices = {i for i, n in seen.notices.items() if n > 1}
    outboxes = [names.outbox(p) for p in members]
    more = await _read_committed(run.admin, [*outboxes, names.audit])

    def where(r: Any) -> dict[str, Any]:
        return {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "sha256": hashlib.sha256(r.value or b"").hexdigest()[:16],
        }

    found: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def note(key: str, what: str, r: Any, **extra: Any) -> None:
        found.setdefault(key, {}).setdefault(what, []).append(where(r) | extra)

    def note_envelope(place: str, r: Any) -> None:
        with contextlib.suppress(EnvelopeError):
            header = parse(r.value or b"").header
            mid, reply = str(header.message_id), str(header.in_reply_to)
            if mid in twice_referrals:
                note(f"referral {mid}", place, r)
            elif reply in twice_receipts:
                note(f"receipts answering {reply}", place, r, message_id=mid)

    for pid in members:
        for r in read[names.inbox(pid)]:
            kind = _header(r, "crb-record")
            if kind == b"notice":
                body = json.loads(r.value)
                if body["notice_id"] in twice_notices:
                    note(f"notice {body['notice_id']}", "inbox", r, about=body["message_id"])
                continue
            note_envelope("inbox", r)
    for topic in outboxes:
        for r in more[topic]:
            note_envelope("outbox", r)
    receipt_of = {
        c["message_id"]: key
        for key, places in found.items()
        if key.startswith("receipts")
        for copies in places.values()
        for c in copies
    }
    for r in more[names.audit]:
        body = json.loads(r.value)
        mid = body.get("message_id")
        key = f"referral {mid}" if f"referral {mid}" in found else receipt_of.get(mid)
        if key is not None:
            note(
                key,
                "audit",
                r,
                message_id=mid,
                chain=body["chain"],
                seq=body["seq"],
                source_offset=body["source_offset"],
                verdict=body["verdict"],
                reason=body.get("reason"),
                signer=body.get("signer"),
            )
    path = run.folder / "duplicates.json"
    path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"duplicates explained in {path}", flush=True)


async def _audit(env_admin: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run,
        _crb("audit", "verify", "--json"),
        env=env_admin,
        capture_output=True,
        timeout=600,
    )


async def _check(
    run: _Run, fed: Any, api: Any, env_admin: dict[str, str], send_s: float
) -> ChaosReport:
    from schemas import TopicNames

    names = TopicNames(run.prefix)
    members = sorted(fed.members)
    read = await _read_committed(run.admin, [*(names.inbox(p) for p in members), names.dlq])
    seen = _inboxes(run, read, members)
    expected = [(r, s.message_id) for s in run.sent.values() for r in s.recipients]
    expected_set = set(expected)
    unexpected = seen.unexpected + sum(
        n for pair, n in seen.referrals.items() if pair not in expected_set
    )
    delivered = sum(1 for p in expected if seen.referrals[p] >= 1)
    duplicated = sum(seen.referrals[p] - 1 for p in expected if seen.referrals[p] > 1)
    duplicated += sum(n - 1 for n in seen.notices.values() if n > 1)
    answers = [seen.receipts[(m, r)] for r, m in expected]
    files_ok = 0
    for r, m in expected:
        path = _inbox_folder(run, r) / f"{m}.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_bytes())["envelope_sha256"] == seen.digests.get((r, m)):
                files_ok += 1
    if duplicated or any(n > 1 for n in answers):
        await _explain_duplicates(run, names, members, read, seen)
    handovers = (await api.get("/handovers", params={"limit": 100_000})).json()["handovers"]
    state = {h["key"]: h["handover"]["state"] for h in handovers}
    states = Counter(state.get(f"{m}/{r}", "unknown") for r, m in expected)
    final = states.pop("received", 0)
    audit = await _audit(env_admin)
    return ChaosReport(
        referrals=run.config.referrals,
        sent=len(run.sent),
        expected_handovers=len(expected),
        delivered=delivered,
        lost=len(expected) - delivered,
        duplicated=duplicated,
        unexpected=unexpected,
        receipts=sum(answers),
        receipts_missing=sum(1 for n in answers if n == 0),
        receipts_duplicated=sum(n - 1 for n in answers if n > 1),
        files_ok=files_ok,
        files_missing_or_wrong=len(expected) - files_ok,
        notices=dict(Counter(seen.notice_kinds.values())),
        repeats=run.repeats,
        repeats_unnoticed=len(run.repeat_ids - seen.noticed),
        dead_letters=dict(_dead_letters(run, read[names.dlq])),
        replays_injected=run.replays,
        tampered_injected=len(run.tampered),
        tampered_delivered=seen.tampered_delivered,
        final_handovers=final,
        not_final=dict(states),
        audit_ok=audit.returncode == 0,
        audit_output=(audit.stdout or audit.stderr).decode(errors="replace")[-2000:],
        faults=run.faults,
        unplanned_exits=dict(run.fleet.unplanned),
        send_retries=run.send_retries,
        elapsed_s=run.now_s(),
        send_s=send_s,
        samples=run.samples,
        replicas=(await _fewest_replicas(run), len(run.launcher.nodes())),
    )


# -- the whole run ------------------------------------------------------------------------


async def _drain(run: _Run, api: Any, expected: int, notices: int) -> None:
    """Until the tracker recorded every receipt and the notices are in the inbox
    folders (or the drain timeout: the check then counts what is missing)."""
    deadline = time.monotonic() + run.config.drain_timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            got = sum(
                _count_files(_inbox_folder(run, p.removeprefix("inbox-")) / "notices")
                for p in run.fleet.services
                if p.startswith("inbox-")
            )
            if await _received(api) >= expected and got >= notices:
                return
        await asyncio.sleep(1.0)  # polling the tracker's API


async def run_chaos(config: ChaosConfig, launcher: Any, folder: Path) -> ChaosReport:
    """Provision, start every service, send under the fault schedule, drain, check."""
    import httpx

    from broker.tracker import OPERATOR, TokenStore
    from schemas import utcnow

    run = _Run(
        config,
        folder,
        launcher,
        launcher.settings(),
        prefix="chaos" + os.urandom(3).hex(),
    )
    fed, settings, env, as_principal = await _provision(run)
    env_admin = services_env(run.admin, folder, run.prefix, settings, admin=True)
    token, _ = TokenStore(folder / "tokens.json").issue(
        OPERATOR, ttl=timedelta(hours=12), now=utcnow()
    )
    port = free_port()
    receivers = _members_receiving(fed)
    plan = _plan(
        config, random.Random(config.seed), receivers, [n.node_id for n in launcher.nodes()]
    )
    groups = {"routers": settings.router.group_id, "tracker": settings.tracker.group_id} | {
        f"inbox-{p}": f"{settings.adapter.group_id_prefix}.{p}" for p in receivers
    }
    stop = asyncio.Event()
    _start_services(run, fed, env, port)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as api:
            await _ready(api, run.fleet)
            supervisor = asyncio.create_task(run.fleet.supervise(stop))
            sampler = (
                asyncio.create_task(_sample(run, api, stop, groups))
                if config.soak_sample_s
                else None
            )
            run.started = time.monotonic()
            progress = asyncio.create_task(_progress(run, api, stop))
            faults = asyncio.create_task(_faults(run, plan))
            await _send(run, fed, settings, as_principal)
            send_s = run.now_s()
            await faults
            expected = sum(len(s.recipients) for s in run.sent.values())
            await _drain(run, api, expected, 2 * run.repeats)
            stop.set()
            await supervisor
            await progress
            if sampler is not None:
                await sampler
            return await _check(run, fed, api, env_admin, send_s)
    finally:
        stop.set()
        run.fleet.stop_all()


def stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C: the services and the cluster are stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = ChaosConfig()
    parser.add_argument("--referrals", type=int, default=defaults.referrals)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="referrals/s")
    parser.add_argument("--router-kills", type=int, default=defaults.router_kills)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--sample-s", type=float, default=0.0, help="sample RSS/fds/lag this often")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from broker.dev.kafka_local import LocalKafka
    from broker.logs import configure_logging

    configure_logging("warning")
    config = ChaosConfig(
        referrals=args.referrals,
        rate=args.rate,
        router_kills=args.router_kills,
        seed=args.seed,
        soak_sample_s=args.sample_s,
    )
    stop_on_sigterm()
    base = Path(tempfile.mkdtemp(prefix="crb-chaos-"))
    launcher = LocalKafka(base / "kafka")
    print(f"starting a three-broker secured Kafka in {base} ...", file=sys.stderr, flush=True)
    launcher.up(nodes=3)
    try:
        report = asyncio.run(run_chaos(config, launcher, base / "run"))
    finally:
        launcher.destroy()
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok}))
    else:
        print(report.table())
        if not report.audit_ok:
            print(report.audit_output)
    print(f"logs: {base / 'run' / 'logs'}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
