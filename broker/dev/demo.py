"""The end-to-end demonstration behind ``crb demo`` (and ``make demo``).

On a real Kafka it creates a demo federation, starts the router, the tracker and one
receiving adapter per participant in this process, pushes synthetic referrals from
the hotlines, and waits until every valid one is received (signed receipt routed
back), then reports per route. Everything is synthetic: ``.test`` / ``example.org``
domains, documentation IP ranges, random hashes; keys are generated for the run.

The federation: hotlines and 24/7 police contacts in DE, NL, FR and BE (urgent cases
also go to the police contact), a regional body with a standing copy of trafficking
cases, the coordinator ``int.coordinator``, and IE with no receiver at all, so IE
cases take the orphan path to the coordinator. Among the referrals are urgent ones,
a duplicate (the same envelope sent twice), a tampered envelope (one flipped byte)
and cases for IE; the duplicate and the tampered one must be dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adapters import (
    DirectoryFollower,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    Sender,
    StateStore,
    Submission,
    publish_directory,
)
from adapters.kafka import (
    ROUTER,
    TRACKER,
    CredentialStore,
    KafkaClients,
    KafkaSettings,
    OutRecord,
    Record,
    TopicSettings,
    read_topic,
)
from broker import acls, topics
from broker.router import Router
from broker.settings import RouterSettings, Settings
from broker.tracker import (
    Access,
    Handover,
    TokenStore,
    Tracker,
    create_app,
    route_stats,
    serve,
)
from keys import LiveDirectory
from keys.testing import Federation, MemberSpec, synthetic_referral
from schemas import (
    Category,
    DeliveryRule,
    Priority,
    Referral,
    Role,
    RoutingRules,
    ServiceRole,
    StandingCopy,
    TopicNames,
    utcnow,
)

__all__ = ["DemoConfig", "DemoReport", "RouteRow", "run_demo"]

JURISDICTIONS = ("DE", "NL", "FR", "BE")
ORPHAN = "IE"
COORDINATOR = "int.coordinator"
REGIONAL = "int.regional"


def _members() -> list[MemberSpec]:
    out = []
    for j in JURISDICTIONS:
        out.append(MemberSpec(f"{j.lower()}.hotline", j, (Role.HOTLINE,)))
        out.append(MemberSpec(f"{j.lower()}.police24", j, (Role.POLICE_24X7,)))
    out.append(MemberSpec(COORDINATOR, None, (Role.COORDINATOR,)))
    out.append(MemberSpec(REGIONAL, None, (Role.REGIONAL_BODY,)))
    return out


@dataclass
class DemoConfig:
    kafka: KafkaSettings
    """Where the Kafka is and how to log in (the provisioning admin)."""
    folder: Path
    referrals: int = 300
    urgent_share: float = 0.1
    orphan_share: float = 0.05
    timeout_s: float = 180.0
    seed: int | None = None
    prefix: str = field(default_factory=lambda: "demo" + secrets.token_hex(3))
    console_port: int | None = None
    """Serve the tracker's API and operator console on 127.0.0.1:PORT while running."""


@dataclass(frozen=True)
class RouteRow:
    sender: str
    recipient: str
    sent: int
    received: int
    median_s: float | None
    p99_s: float | None


@dataclass
class DemoReport:
    prefix: str
    submitted: int
    valid: int
    expected_handovers: int
    received_handovers: int
    routes: list[RouteRow]
    dead_letters: Counter[str]
    elapsed_s: float
    inbox_folder: Path

    @property
    def ok(self) -> bool:
        return self.received_handovers >= self.expected_handovers and self.dead_letters == Counter(
            {"duplicate_message": 1, "bad_signature": 1}
        )


def _federation(now: datetime) -> Federation:
    return Federation(
        _members(),
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
        issued_at=now,
        federation_id="demo-federation",
        rules=RoutingRules(
            delivery=(DeliveryRule(roles=(Role.HOTLINE,)),),
            standing_copies=(StandingCopy(recipient=REGIONAL, categories=(Category.TRAFFICKING,)),),
            coordinator=COORDINATOR,
            escalation_recipient=COORDINATOR,
        ),
    )


def synthetic_demo_referral(
    rng: random.Random, sender: str, jurisdiction: str, urgent: bool
) -> Referral:
    """A realistic, plainly synthetic referral from ``sender`` hosted in ``jurisdiction``."""
    return synthetic_referral(
        rng=rng,
        jurisdiction=jurisdiction,
        priority=Priority.URGENT if urgent else None,
        reference=f"{sender[:2].upper()}-DEMO-{rng.getrandbits(48):012x}",
    )


def _settings(config: DemoConfig) -> Settings:
    return Settings(
        home=config.folder,
        kafka=config.kafka,
        topics=TopicSettings(prefix=config.prefix, partitions=1),
        router=RouterSettings(
            group_id=f"{config.prefix}-router", transactional_id_prefix=f"{config.prefix}-router"
        ),
    )


def _report(
    config: DemoConfig,
    routed: list[Handover],
    missing: int,
    dead: Counter[str],
    valid: int,
    started: float,
) -> DemoReport:
    """The delivery table: per route, from the routed handovers the tracker holds."""
    received = sum(1 for h in routed if h.received_at is not None)
    rows = [
        RouteRow(
            r.sender,
            r.recipient or "-",
            r.sent,
            r.received,
            r.median_seconds_to_receipt,
            r.p99_seconds_to_receipt,
        )
        for r in route_stats(routed)
    ]
    return DemoReport(
        prefix=config.prefix,
        submitted=config.referrals + 2,
        valid=valid,
        expected_handovers=len(routed) + missing,
        received_handovers=received,
        routes=rows,
        dead_letters=dead,
        elapsed_s=time.monotonic() - started,
        inbox_folder=config.folder / "inbox",
    )


def _serve_console(
    folder: Path, port: int, tracker: Tracker, live: LiveDirectory, stop: asyncio.Event
) -> asyncio.Task[None]:
    """The tracker's API and operator console on 127.0.0.1:``port``, as ``crb
    tracker run --http-port`` serves them (tokens in the demo's token store)."""
    access = Access.of(TokenStore(folder / "tokens.json"), lambda: live.current)
    app = create_app(
        tracker.handovers,
        access=access,
        ready=tracker.ready.is_set,
        console=tracker.handovers,
        health=tracker.health_report,
        redrive=lambda p, o, by: tracker.redrive(p, o, by=by),
        strip=lambda: tracker.watch.strip,
    )
    return asyncio.create_task(serve(app, "127.0.0.1", port, stop), name="console")


async def run_demo(
    config: DemoConfig,
    *,
    progress: Callable[[str, int, int], None] = lambda _stage, _done, _total: None,
    keep: asyncio.Event | None = None,
    on_report: Callable[[DemoReport], None] = lambda _report: None,
) -> DemoReport:
    """Run the whole flow once (see the module docstring). ``on_report`` is called
    with the report as soon as it is ready; ``keep``: if given, the services keep
    running after that until it is set."""
    started = time.monotonic()
    rng = random.Random(config.seed)  # noqa: S311 - synthetic data, not secrets
    now = utcnow()
    config.folder.mkdir(parents=True, exist_ok=True)
    fed = _federation(now)
    # Keystore, signed directory and trust store, so the CLI works on the demo too
    # (``CRB_HOME=<folder> crb status ...``). Keys are generated per run, 0600.
    fed.write(config.folder)
    directory = fed.directory()
    settings = _settings(config)
    clients = KafkaClients(settings.kafka)  # the provisioning admin
    names = TopicNames(settings.topics.prefix)
    as_principal = await _provision(fed, settings, clients, config.folder, now)

    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    # The services follow the directory topic, as `crb router run` / `crb tracker run` do.
    router_clients = KafkaClients(as_principal(ROUTER).kafka)
    live = LiveDirectory(directory, root=fed.root.verify_key)
    follower = DirectoryFollower(router_clients, names.directory, live)
    router = Router(
        as_principal(ROUTER),
        live,
        signer=fed.signer(ServiceRole.ROUTER),
        clients=router_clients,
        follower=follower,
    )
    tracker = Tracker(
        as_principal(TRACKER),
        directory,
        directory=live,
        signer=fed.signer(ServiceRole.TRACKER),
        follower=follower,
    )
    tasks.append(asyncio.create_task(follower.alongside(router.run(stop)), name="router"))
    tasks.append(asyncio.create_task(tracker.run(stop), name="tracker"))
    if config.console_port is not None:
        tasks.append(_serve_console(config.folder, config.console_port, tracker, live, stop))
    identities = {
        pid: Identity(pid, m.signing, (m.opening,), directory) for pid, m in fed.members.items()
    }
    own = {pid: KafkaClients(as_principal(pid).kafka) for pid in identities}
    outboxes = {pid: Outbox.of(own[pid], names, pid, settings.adapter) for pid in identities}
    senders = {pid: Sender(identities[pid], outboxes[pid]) for pid in identities}
    stores = []
    for pid in identities:
        store = StateStore(config.folder / "adapters" / pid)
        stores.append(store)
        sink = FolderSink(config.folder / "inbox" / pid)
        receiver = Receiver(own[pid], names, settings.adapter, senders[pid], sink, store)
        tasks.append(asyncio.create_task(receiver.run(stop), name=f"receiver {pid}"))

    try:
        await _wait_ready(router, tracker, tasks)
        sent = await _push(config, rng, senders, own, progress)
        valid_ids = {str(s.message_id) for _, s in sent}
        routed, missing, dead = await _await_receipts(config, tracker, clients, valid_ids, progress)
        report = _report(config, routed, len(missing), dead, len(valid_ids), started)
        on_report(report)
        if keep is not None:
            await keep.wait()
        return report
    finally:
        stop.set()
        for t in tasks:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(t, 30)
        for outbox in outboxes.values():
            with contextlib.suppress(Exception):
                await outbox.stop()
        for store in stores:
            store.close()


async def _provision(
    fed: Federation,
    settings: Settings,
    admin: KafkaClients,
    folder: Path,
    now: datetime,
) -> Callable[[str], Settings]:
    """The topics, the signed directory published on its topic, a credential per
    principal (in ``folder/credentials``, 0600), SCRAM users and exactly the ACLs the
    directory implies; returns each principal's settings."""
    directory = fed.directory()
    await topics.apply(directory, admin, settings.topics)
    await publish_directory(admin, TopicNames(settings.topics.prefix).directory, fed.signed())
    logins = CredentialStore(folder / "credentials")
    for principal in (ROUTER, TRACKER, *fed.members):
        logins.ensure(principal)
    await acls.apply(directory, settings, admin, logins, now=now)

    def as_principal(principal: str) -> Settings:
        credential = logins.ensure(principal)
        return settings.model_copy(update={"kafka": credential.apply(settings.kafka)})

    return as_principal


async def _push(
    config: DemoConfig,
    rng: random.Random,
    senders: dict[str, Sender],
    own: dict[str, KafkaClients],
    progress: Callable[[str, int, int], None],
) -> list[tuple[str, Any]]:
    """Send the referrals, then the two hostile envelopes; returns what was sent."""
    names = TopicNames(config.prefix)
    hotlines = [f"{j.lower()}.hotline" for j in JURISDICTIONS]
    sent: list[tuple[str, Any]] = []
    for i in range(config.referrals):
        sender = rng.choice(hotlines)
        if rng.random() < config.orphan_share:
            jurisdiction = ORPHAN
        else:
            jurisdiction = rng.choice([j for j in JURISDICTIONS if j.lower() != sender[:2]])
        urgent = rng.random() < config.urgent_share
        referral = synthetic_demo_referral(rng, sender, jurisdiction, urgent)
        sealed = senders[sender].seal_referral(Submission(referral, jurisdiction))
        await senders[sender].send(sealed)
        sent.append((sender, sealed))
        progress("send", i + 1, config.referrals)
    # The two hostile cases: the first envelope again (a duplicate), and a fresh
    # envelope with one flipped byte (tampered in transit).
    dup_sender, dup = sent[0]
    await _raw_send(own[dup_sender], names.outbox(dup_sender), dup.envelope)
    bad_sender = sent[1][0]
    fresh = senders[bad_sender].seal_referral(
        Submission(synthetic_demo_referral(rng, bad_sender, "NL", False), "NL")
    )
    tampered = bytearray(fresh.envelope)
    tampered[len(tampered) // 2] ^= 0x01
    await _raw_send(own[bad_sender], names.outbox(bad_sender), bytes(tampered))

    return sent


async def _await_receipts(
    config: DemoConfig,
    tracker: Tracker,
    clients: KafkaClients,
    valid_ids: set[str],
    progress: Callable[[str, int, int], None],
) -> tuple[list[Any], set[str], Counter[str]]:
    """Poll the tracker until every valid referral's handovers are received and the
    two hostile envelopes are dead-lettered (or the timeout): (routed, missing, DLQ)."""
    names = TopicNames(config.prefix)
    deadline = time.monotonic() + config.timeout_s
    while True:
        routed = [
            h
            for h in tracker.snapshot()
            if str(h.message_id) in valid_ids and h.recipient is not None
        ]
        received = sum(1 for h in routed if h.received_at is not None)
        missing = valid_ids - {str(h.message_id) for h in routed}
        progress("receive", received, max(len(routed), 1))
        dead = await _read_dead_letters(clients, names.dlq)
        done = not missing and received == len(routed) and sum(dead.values()) >= 2
        if done or time.monotonic() > deadline:
            return routed, missing, dead
        await asyncio.sleep(0.5)


async def _wait_ready(router: Router, tracker: Tracker, tasks: list[asyncio.Task[Any]]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for t in tasks:
            if t.done():
                t.result()  # a service that died at start: raise its error
                raise RuntimeError(f"{t.get_name()} stopped at start")
        if router.ready.is_set() and tracker.ready.is_set():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("router and tracker did not start within 90 s")


async def _raw_send(clients: KafkaClients, topic: str, value: bytes) -> None:
    producer = clients.producer()
    await producer.start()
    try:
        await producer.send_and_wait(OutRecord(topic, b"demo", value))
    finally:
        await producer.stop()


async def _read_dead_letters(clients: KafkaClients, topic: str) -> Counter[str]:
    reasons: Counter[str] = Counter()

    def take(r: Record) -> None:
        reasons[(r.header("crb-reason") or b"?").decode()] += 1

    await read_topic(clients, topic, take)
    return reasons
