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

Case work: some referrals name a URL another hotline referred before (each must
bring a deconfliction notice to both hotlines), and some record only the hosting
IP, whose country the sending side fills from an allocation table — the demo's
own table of documentation ranges (:data:`DEMO_ALLOCATIONS`), since its IPs are
never real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters import (
    DirectoryFollower,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    Sender,
    StateStore,
    Submission,
    TableLookup,
    create_intake,
    fill_hosting_countries,
    jurisdiction_of,
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
from broker.settings import RouterSettings, Settings, TrackerSettings
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
    CountrySource,
    DeconflictionNotice,
    DeliveryRule,
    Hosting,
    Priority,
    Referral,
    Role,
    RoutingRules,
    ServiceRole,
    StandingCopy,
    TopicNames,
    utcnow,
)

__all__ = ["DemoConfig", "DemoReport", "MixItem", "RouteRow", "referral_mix", "run_demo"]

JURISDICTIONS = ("DE", "NL", "FR", "BE")
ORPHAN = "IE"
COORDINATOR = "int.coordinator"
REGIONAL = "int.regional"
INDUSTRY = "ie.examplehost"
"""A synthetic online service reporting what it found on its platform: it pushes
a batch over its adapter's intake API (HTTP), as an industry reporter would."""


DEMO_ALLOCATIONS = TableLookup.of(
    "demo allocation table",
    [
        ("192.0.2.0/26", "DE"),
        ("192.0.2.64/26", "NL"),
        ("198.51.100.0/26", "FR"),
        ("198.51.100.64/26", "BE"),
        ("203.0.113.0/26", "IE"),
    ],
)
"""Documentation ranges split between the demo's countries (an operator's table,
:class:`adapters.TableLookup`; the real default is the RIRs' data)."""
_DEMO_NETS = {"DE": "192.0.2.", "NL": "192.0.2.", "FR": "198.51.100.", "BE": "198.51.100."}
_DEMO_NETS["IE"] = "203.0.113."
_DEMO_BASE = {"DE": 0, "NL": 64, "FR": 0, "BE": 64, "IE": 0}


def _members() -> list[MemberSpec]:
    out = []
    for j in JURISDICTIONS:
        out.append(MemberSpec(f"{j.lower()}.hotline", j, (Role.HOTLINE,)))
        out.append(MemberSpec(f"{j.lower()}.police24", j, (Role.POLICE_24X7,)))
    out.append(MemberSpec(COORDINATOR, None, (Role.COORDINATOR,)))
    out.append(MemberSpec(REGIONAL, None, (Role.REGIONAL_BODY,)))
    out.append(MemberSpec(INDUSTRY, "IE", (Role.ELECTRONIC_SERVICE_PROVIDER,)))
    return out


@dataclass
class DemoConfig:
    kafka: KafkaSettings
    """Where the Kafka is and how to log in (the provisioning admin)."""
    folder: Path
    referrals: int = 300
    urgent_share: float = 0.1
    orphan_share: float = 0.05
    repeat_share: float = 0.08
    """Referrals naming a URL another hotline referred before (deconfliction)."""
    ip_only_share: float = 0.15
    """Referrals with the hosting IP but no country (filled by lookup)."""
    industry_batch: int = 20
    """Referrals the industry reporter pushes in one batch over HTTP."""
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
    repeats: int = 0
    """Referrals sent that repeat another hotline's URL."""
    notices: Counter[str] = field(default_factory=Counter)
    """Deconfliction notices delivered to the hotlines' inbox folders, by kind."""
    hosting_filled: int = 0
    """Hosting countries filled by lookup (``country_source: ip_lookup``)."""
    hosting_lookup: str = ""
    escalations_expected: int = 0
    """Urgent referrals for the receiver that was offline (each must be escalated)."""
    escalations_delivered: int = 0
    """Escalated referrals the escalation recipient received."""
    offline: str = ""
    industry_sent: int = 0
    """Referrals the industry reporter pushed in one batch over HTTP."""
    industry_accepted: int = 0
    industry_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.received_handovers >= self.expected_handovers
            and self.dead_letters == Counter({"duplicate_message": 1, "bad_signature": 1})
            and self.notices["already_referred"] == self.repeats
            and self.notices["referred_again"] == self.repeats
            and self.escalations_delivered >= self.escalations_expected
            and self.industry_accepted == self.industry_sent
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


OFFLINE = "be.police24"
"""A receiver that is down while the referrals go out, so that its urgent cases go
overdue and are escalated (and delivered) to the coordinator; it comes back once
the escalations arrived, and receives its backlog."""
DEMO_URGENT_SLA = timedelta(seconds=5)


def _settings(config: DemoConfig) -> Settings:
    return Settings(
        home=config.folder,
        kafka=config.kafka,
        topics=TopicSettings(prefix=config.prefix, partitions=1),
        router=RouterSettings(
            group_id=f"{config.prefix}-router", transactional_id_prefix=f"{config.prefix}-router"
        ),
        # Minutes in production; seconds here, so an overdue urgent case is escalated
        # within the demo's run (overdue after 5 s, escalated 2.5 s later).
        tracker=TrackerSettings(
            group_id=f"{config.prefix}-tracker",
            receipt_sla_urgent=DEMO_URGENT_SLA,
            escalate_after=0.5,
            fail_after=100.0,
        ),
    )


def _report(
    config: DemoConfig,
    routed: list[Handover],
    missing: int,
    dead: Counter[str],
    pushed: Pushed,
    started: float,
    routed_all: list[Handover],
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
        submitted=config.referrals + 2 + pushed.industry_sent,
        valid=len(pushed.sent) + len(pushed.intake_ids),
        expected_handovers=len(routed) + missing,
        received_handovers=received,
        routes=rows,
        dead_letters=dead,
        elapsed_s=time.monotonic() - started,
        inbox_folder=config.folder / "inbox",
        repeats=pushed.repeats,
        notices=_notices(config.folder / "inbox"),
        hosting_filled=pushed.hosting_filled,
        hosting_lookup=DEMO_ALLOCATIONS.name,
        escalations_expected=pushed.offline_urgent,
        escalations_delivered=_escalations_delivered(routed_all),
        offline=OFFLINE,
        industry_sent=pushed.industry_sent,
        industry_accepted=len(pushed.intake_ids),
        industry_ms=pushed.industry_ms,
    )


def _escalations_delivered(handovers: list[Handover]) -> int:
    """Escalated referrals whose recipient (the escalation recipient) received them."""
    return sum(1 for h in handovers if h.escalation_of is not None and h.received_at)


def _notices(inbox: Path) -> Counter[str]:
    """The deconfliction notices in the hotlines' inbox folders, by kind."""
    kinds: Counter[str] = Counter()
    for path in inbox.glob("*/notices/*.json"):
        kinds[DeconflictionNotice.model_validate_json(path.read_bytes()).kind.value] += 1
    return kinds


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
    tasks += [
        asyncio.create_task(follower.alongside(router.run(stop)), name="router"),
        asyncio.create_task(tracker.run(stop), name="tracker"),
    ]
    if config.console_port is not None:
        tasks.append(_serve_console(config.folder, config.console_port, tracker, live, stop))
    identities = {
        pid: Identity(pid, m.signing, (m.opening,), directory, deconfliction=fed.deconfliction)
        for pid, m in fed.members.items()
    }
    own = {pid: KafkaClients(as_principal(pid).kafka) for pid in identities}
    outboxes = {pid: Outbox.of(own[pid], names, pid, settings.adapter) for pid in identities}
    stores = {pid: StateStore(config.folder / "adapters" / pid) for pid in identities}
    senders = {
        pid: Sender(identities[pid], outboxes[pid], pending=stores[pid]) for pid in identities
    }

    def receive(pid: str) -> asyncio.Task[Any]:
        sink = FolderSink(config.folder / "inbox" / pid)
        receiver = Receiver(own[pid], names, settings.adapter, senders[pid], sink, stores[pid])
        return asyncio.create_task(receiver.run(stop), name=f"receiver {pid}")

    intake_task, intake_url, intake_key = _serve_intake(config, senders, stores, stop)
    tasks += [*(receive(pid) for pid in identities if pid != OFFLINE), intake_task]

    try:
        await _wait_ready(router, tracker, tasks)
        pushed = await _push(config, rng, senders, own, progress)
        await _industry_batch(config, rng, pushed, intake_url, intake_key)
        await _await_escalations(config, tracker, pushed.offline_urgent)
        tasks.append(receive(OFFLINE))  # back online: it receives its backlog
        report = await _collect(config, tracker, clients, pushed, progress, started)
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
        for store in stores.values():
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


@dataclass
class Pushed:
    """What :func:`_push` sent."""

    sent: list[tuple[str, Any]] = field(default_factory=list)
    repeats: int = 0
    hosting_filled: int = 0
    offline_urgent: int = 0
    """Urgent referrals to the jurisdiction whose 24/7 contact is offline."""
    industry_sent: int = 0
    intake_ids: list[str] = field(default_factory=list)
    """Message ids the intake API accepted from the industry reporter's batch."""
    industry_ms: float = 0.0


def _ip_only(referral: Referral, jurisdiction: str, rng: random.Random) -> Referral:
    """``referral`` with its hosting countries left to the lookup: an IP of the
    jurisdiction's demo range, no country."""
    ip = f"{_DEMO_NETS[jurisdiction]}{_DEMO_BASE[jurisdiction] + rng.randrange(1, 63)}"
    urls = tuple(u.model_copy(update={"hosting": Hosting(ip=ip, asn=64500)}) for u in referral.urls)
    return referral.model_copy(update={"urls": urls})


def _repeating(referral: Referral, earlier: Referral) -> Referral:
    """``referral`` naming, first, the first URL (and item) of ``earlier``."""
    return referral.model_copy(
        update={
            "urls": (earlier.urls[0], *referral.urls[1:]),
            "items": earlier.items[:1] + referral.items[1:],
        }
    )


REPEAT_WINDOW = 2_000
"""How far back a repeat may reach (:func:`referral_mix`)."""


@dataclass(frozen=True)
class MixItem:
    """One referral of the demo's mix (:func:`referral_mix`)."""

    sender: str
    jurisdiction: str
    referral: Referral
    urgent: bool
    repeat: bool
    """It names, first, a URL another hotline referred exactly once before."""
    hosting_filled: int
    """Hosting countries filled by lookup (``country_source: ip_lookup``)."""


def referral_mix(
    rng: random.Random,
    count: int,
    *,
    urgent_share: float = 0.1,
    orphan_share: float = 0.05,
    repeat_share: float = 0.08,
    ip_only_share: float = 0.15,
) -> Iterator[MixItem]:
    """The demo's referrals, one at a time: hotlines of DE, NL, FR, BE referring
    to another jurisdiction (``orphan_share`` to IE), ``urgent_share`` urgent,
    ``repeat_share`` repeating a URL another hotline referred exactly once before
    (each repeat must bring exactly one deconfliction notice of each kind), and
    ``ip_only_share`` with the hosting IP but no country (filled by lookup)."""
    hotlines = [f"{j.lower()}.hotline" for j in JURISDICTIONS]
    # The last REPEAT_WINDOW referrals (index, sender, jurisdiction, referral): a
    # repeat names a recent one, and the choice stays O(window), not O(count).
    earlier: deque[tuple[int, str, str, Referral]] = deque(maxlen=REPEAT_WINDOW)
    repeated: set[int] = set()  # indexes: repeated, or repeats themselves
    seen_urls: set[str] = set()
    for n in range(count):
        sender = rng.choice(hotlines)
        if rng.random() < orphan_share:
            jurisdiction = ORPHAN
        else:
            jurisdiction = rng.choice([j for j in JURISDICTIONS if j.lower() != sender[:2]])
        urgent = rng.random() < urgent_share
        referral = synthetic_demo_referral(rng, sender, jurisdiction, urgent)
        is_repeat, filled = False, 0
        repeat = [
            (k, j, r)
            for k, s, j, r in earlier
            if k not in repeated and s != sender and j.lower() != sender[:2] and r.urls
        ]
        if repeat and rng.random() < repeat_share:
            k, jurisdiction, first = rng.choice(repeat)
            repeated.add(k)
            referral = synthetic_demo_referral(rng, sender, jurisdiction, urgent)
            referral = _repeating(referral, first)
            is_repeat = True
        elif rng.random() < ip_only_share:
            bare = _ip_only(referral, jurisdiction, rng)
            referral = fill_hosting_countries(bare, DEMO_ALLOCATIONS)
            filled = sum(
                1
                for u in referral.urls
                if u.hosting and u.hosting.country_source is CountrySource.IP_LOOKUP
            )
            jurisdiction = jurisdiction_of(referral)
        if is_repeat or (referral.urls and referral.urls[0].url in seen_urls):
            repeated.add(n)  # a repeat is never repeated again
        seen_urls.update(u.url for u in referral.urls)
        earlier.append((n, sender, jurisdiction, referral))
        yield MixItem(sender, jurisdiction, referral, urgent, is_repeat, filled)


async def _push(
    config: DemoConfig,
    rng: random.Random,
    senders: dict[str, Sender],
    own: dict[str, KafkaClients],
    progress: Callable[[str, int, int], None],
) -> Pushed:
    """Send the referrals, then the two hostile envelopes; returns what was sent."""
    names = TopicNames(config.prefix)
    pushed = Pushed()
    mix = referral_mix(
        rng,
        config.referrals,
        urgent_share=config.urgent_share,
        orphan_share=config.orphan_share,
        repeat_share=config.repeat_share,
        ip_only_share=config.ip_only_share,
    )
    for i, item in enumerate(mix):
        sender = senders[item.sender]
        sealed = sender.seal_referral(Submission(item.referral, item.jurisdiction))
        await sender.send(sealed)
        pushed.sent.append((item.sender, sealed))
        pushed.repeats += item.repeat
        pushed.hosting_filled += item.hosting_filled
        if item.urgent and item.jurisdiction == OFFLINE[:2].upper():
            pushed.offline_urgent += 1
        progress("send", i + 1, config.referrals)
    # The two hostile cases: the first envelope again (a duplicate), and a fresh
    # envelope with one flipped byte (tampered in transit).
    dup_sender, dup = pushed.sent[0]
    await _raw_send(own[dup_sender], names.outbox(dup_sender), dup.envelope)
    bad_sender = pushed.sent[1][0]
    fresh = senders[bad_sender].seal_referral(
        Submission(synthetic_demo_referral(rng, bad_sender, "NL", False), "NL")
    )
    tampered = bytearray(fresh.envelope)
    tampered[len(tampered) // 2] ^= 0x01
    await _raw_send(own[bad_sender], names.outbox(bad_sender), bytes(tampered))
    return pushed


async def _await_receipts(
    config: DemoConfig,
    tracker: Tracker,
    clients: KafkaClients,
    valid_ids: set[str],
    progress: Callable[[str, int, int], None],
    *,
    notices: int = 0,
) -> tuple[list[Any], set[str], Counter[str]]:
    """Poll the tracker until every valid referral's handovers are received, the
    two hostile envelopes are dead-lettered and ``notices`` deconfliction notices
    are in the inbox folders (or the timeout): (routed, missing, DLQ)."""
    names = TopicNames(config.prefix)
    deadline = time.monotonic() + config.timeout_s
    while True:
        # The referrals sent, and the escalations their senders re-sealed.
        routed = [
            h
            for h in tracker.snapshot()
            if h.recipient is not None
            and (str(h.message_id) in valid_ids or str(h.escalation_of) in valid_ids)
        ]
        received = sum(1 for h in routed if h.received_at is not None)
        missing = valid_ids - {str(h.message_id) for h in routed}
        progress("receive", received, max(len(routed), 1))
        dead = await _read_dead_letters(clients, names.dlq)
        delivered = sum(_notices(config.folder / "inbox").values())
        done = (
            not missing
            and received == len(routed)
            and sum(dead.values()) >= 2
            and delivered >= notices
        )
        if done or time.monotonic() > deadline:
            return routed, missing, dead
        await asyncio.sleep(0.5)


async def _industry_batch(
    config: DemoConfig, rng: random.Random, pushed: Pushed, url: str, key: str
) -> None:
    """The industry reporter's batch, over HTTP to its adapter's intake API."""
    items = [
        synthetic_demo_referral(rng, INDUSTRY, rng.choice(JURISDICTIONS), False).model_dump(
            mode="json"
        )
        for _ in range(config.industry_batch)
    ]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as web:
        response = await web.post(
            "/referrals:batch",
            json={"items": items},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "demo-batch-1"},
        )
    response.raise_for_status()
    answer = response.json()
    pushed.industry_ms = (time.monotonic() - started) * 1000
    pushed.industry_sent = len(items)
    pushed.intake_ids = [i["message_id"] for i in answer["items"] if i["status"] == 202]


def _serve_intake(
    config: DemoConfig,
    senders: dict[str, Sender],
    stores: dict[str, StateStore],
    stop: asyncio.Event,
) -> tuple[asyncio.Task[None], str, str]:
    """The industry reporter's adapter serves its intake API on a free loopback
    port, with one API key: (task, base URL, key)."""
    port = _free_port()
    tokens = TokenStore(config.folder / "adapters" / INDUSTRY / "intake-keys.json")
    key, _ = tokens.issue(f"participant:{INDUSTRY}", label="demo batch", now=utcnow())
    app = create_intake(senders[INDUSTRY], stores[INDUSTRY], Access(tokens.tokens))
    task = asyncio.create_task(serve(app, "127.0.0.1", port, stop), name="intake")
    return task, f"http://127.0.0.1:{port}", key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _collect(
    config: DemoConfig,
    tracker: Tracker,
    clients: KafkaClients,
    pushed: Pushed,
    progress: Callable[[str, int, int], None],
    started: float,
) -> DemoReport:
    """Wait for every receipt and notice, then build the report."""
    valid_ids = {str(s.message_id) for _, s in pushed.sent} | set(pushed.intake_ids)
    routed, missing, dead = await _await_receipts(
        config, tracker, clients, valid_ids, progress, notices=2 * pushed.repeats
    )
    everything = list(tracker.snapshot())
    return _report(config, routed, len(missing), dead, pushed, started, everything)


async def _await_escalations(config: DemoConfig, tracker: Tracker, expected: int) -> None:
    """Until the escalation recipient received an escalated copy of each urgent
    referral the offline receiver left unanswered (or the timeout)."""
    deadline = time.monotonic() + config.timeout_s
    while time.monotonic() < deadline:
        if _escalations_delivered(list(tracker.snapshot())) >= expected:
            return
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
