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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from adapters import FolderSink, Identity, Outbox, Receiver, Sender, StateStore, Submission
from broker import topics
from broker.router import Router
from broker.settings import KafkaSettings, RouterSettings, Settings, TopicSettings, client_kwargs
from broker.topics import TopicNames
from broker.tracker import Tracker, route_stats
from keys import Kem, Keystore, OpeningKey, SigningKey, TrustStore, record_for, sign_directory
from schemas import (
    Category,
    DeliveryRule,
    Directory,
    Participant,
    Referral,
    Role,
    RoutingRules,
    StandingCopy,
)

__all__ = ["DemoConfig", "DemoReport", "RouteRow", "run_demo"]

JURISDICTIONS = ("DE", "NL", "FR", "BE")
ORPHAN = "IE"
COORDINATOR = "int.coordinator"
REGIONAL = "int.regional"


def _members() -> dict[str, tuple[str | None, tuple[Role, ...]]]:
    out: dict[str, tuple[str | None, tuple[Role, ...]]] = {}
    for j in JURISDICTIONS:
        out[f"{j.lower()}.hotline"] = (j, (Role.HOTLINE,))
        out[f"{j.lower()}.police24"] = (j, (Role.POLICE_24X7,))
    out[COORDINATOR] = (None, (Role.COORDINATOR,))
    out[REGIONAL] = (None, (Role.REGIONAL_BODY,))
    return out


@dataclass
class DemoConfig:
    bootstrap: str
    folder: Path
    referrals: int = 300
    urgent_share: float = 0.1
    orphan_share: float = 0.05
    timeout_s: float = 180.0
    seed: int | None = None
    prefix: str = field(default_factory=lambda: "demo" + secrets.token_hex(3))


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


@dataclass
class _Federation:
    root: SigningKey
    signing: dict[str, SigningKey]
    opening: dict[str, OpeningKey]
    directory: Directory


def _federation(now: datetime) -> _Federation:
    root = SigningKey.generate()
    signing = {pid: SigningKey.generate() for pid in _members()}
    opening = {pid: OpeningKey.generate(Kem.X25519) for pid in _members()}
    start, end = now - timedelta(days=1), now + timedelta(days=365)
    participants = [
        Participant(
            participant_id=pid,
            display_name=f"Demo {pid}",
            jurisdiction=jurisdiction,
            roles=roles,
            categories=tuple(Category),
            keys=(
                record_for(signing[pid].verify_key, not_before=start, not_after=end),
                record_for(opening[pid].sealing_key, not_before=start, not_after=end),
            ),
        )
        for pid, (jurisdiction, roles) in _members().items()
    ]
    directory = Directory(
        federation_id="demo-federation",
        version=1,
        issued_at=now,
        root_key_id=root.key_id,
        participants=tuple(participants),
        rules=RoutingRules(
            delivery=(DeliveryRule(roles=(Role.HOTLINE,)),),
            standing_copies=(StandingCopy(recipient=REGIONAL, categories=(Category.TRAFFICKING,)),),
            coordinator=COORDINATOR,
            escalation_recipient=COORDINATOR,
        ),
    )
    return _Federation(root, signing, opening, directory)


def _persist(fed: _Federation, folder: Path) -> None:
    """Keystore, signed directory and trust store, so the CLI works on the demo too
    (``CRB_HOME=<folder> crb status ...``). Keys are generated per run, 0600."""
    store = Keystore(folder / "keys")
    store.save_signing_key("federation", fed.root)
    for pid in fed.signing:
        store.save_signing_key(pid, fed.signing[pid])
        store.save_opening_key(pid, fed.opening[pid])
    (folder / "directory.json").write_bytes(sign_directory(fed.directory, fed.root).to_json())
    TrustStore(folder / "trust.json").accept(fed.directory)


_INCIDENTS = (
    (Category.CSAM, "Gallery page with images assessed as CSAM."),
    (Category.GROOMING, "Adult user soliciting a minor in a chat room."),
    (Category.SEXTORTION, "Minor coerced to send images, then threatened."),
    (Category.TRAFFICKING, "Advertisement indicating trafficking of a minor."),
    (Category.LIVE_STREAMED_ABUSE, "Paid live stream of abuse announced in a forum."),
)


def synthetic_referral(
    rng: random.Random, sender: str, jurisdiction: str, urgent: bool
) -> Referral:
    """A realistic, plainly synthetic referral hosted in ``jurisdiction``."""
    category, summary = rng.choice(_INCIDENTS)
    net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    urgency: dict[str, Any] = {"priority": "urgent" if urgent else rng.choice(("routine", "high"))}
    if urgent:
        urgency["reason"] = "Synthetic: indications of ongoing abuse of an identifiable child."
    host = (
        f"{rng.choice(('imagehost', 'files', 'forum', 'social'))}{rng.randrange(100)}.example.org"
    )
    return Referral.model_validate(
        {
            "reporter": {
                "reference": f"{sender[:2].upper()}-DEMO-{rng.getrandbits(48):012x}",
                "memo": "Synthetic demo referral.",
            },
            "incident": {"type": category.value, "summary": f"Synthetic: {summary}"},
            "urgency": urgency,
            "urls": [
                {
                    "url": f"https://{host}/item/{rng.getrandbits(32):08x}",
                    "site_type": rng.choice(("image_host", "file_host", "forum", "social_site")),
                    "hosting": {
                        "country": jurisdiction,
                        "ip": f"{net}.{rng.randrange(1, 255)}",
                        "asn": rng.choice((64496, 64500, 64511)),
                        "isp": "Example Hosting",
                        "cdn": rng.random() < 0.2,
                    },
                }
            ],
            "items": [
                {
                    "media_type": "image",
                    "hashes": [
                        {"algorithm": "sha256", "value": f"{rng.getrandbits(256):064x}"},
                        {
                            "algorithm": "pdq",
                            "value": f"{rng.getrandbits(256):064x}",
                            "quality": 90,
                        },
                    ],
                    "classification": rng.choice(("baseline", "national")),
                    "age_group": rng.choice(("pre_pubescent", "pubescent")),
                    "gender": "not_determined",
                    "url_index": 0,
                }
            ],
            "handling": {
                "code": "H0",
                "source_reliability": "B",
                "information_accuracy": "2",
                "tlp": "AMBER",
            },
            "delete_after": (date.today() + timedelta(days=365)).isoformat(),
        }
    )


def _settings(config: DemoConfig) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap=config.bootstrap),
        topics=TopicSettings(prefix=config.prefix, partitions=1),
        router=RouterSettings(
            group_id=f"{config.prefix}-router", transactional_id_prefix=f"{config.prefix}-router"
        ),
    )


async def run_demo(
    config: DemoConfig,
    *,
    progress: Callable[[str, int, int], None] = lambda _stage, _done, _total: None,
    keep: asyncio.Event | None = None,
) -> DemoReport:
    """Run the whole flow once (see the module docstring). ``keep``: if given, the
    services keep running after the report until it is set."""
    started = time.monotonic()
    rng = random.Random(config.seed)  # noqa: S311 - synthetic data, not secrets
    now = datetime.now(UTC)
    config.folder.mkdir(parents=True, exist_ok=True)
    fed = _federation(now)
    _persist(fed, config.folder)
    settings = _settings(config)
    await topics.apply(fed.directory, settings.kafka, settings.topics)

    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    router = Router(settings, fed.directory)
    tracker = Tracker(settings, fed.directory)
    tasks.append(asyncio.create_task(router.run(stop), name="router"))
    tasks.append(asyncio.create_task(tracker.run(stop), name="tracker"))
    identities = {
        pid: Identity(pid, fed.signing[pid], (fed.opening[pid],), fed.directory)
        for pid in fed.signing
    }
    outboxes = {pid: Outbox(settings, pid) for pid in identities}
    senders = {pid: Sender(identities[pid], outboxes[pid]) for pid in identities}
    stores = []
    for pid in identities:
        store = StateStore(config.folder / "adapters" / pid)
        stores.append(store)
        sink = FolderSink(config.folder / "inbox" / pid)
        receiver = Receiver(settings, senders[pid], sink, store)
        tasks.append(asyncio.create_task(receiver.run(stop), name=f"receiver {pid}"))

    try:
        await _wait_ready(router, tracker, tasks)
        sent = await _push(config, rng, senders, settings, progress)
        valid_ids = {str(s.message_id) for _, s in sent}
        routed, missing, dead = await _await_receipts(
            config, tracker, settings, valid_ids, progress
        )
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
        report = DemoReport(
            prefix=config.prefix,
            submitted=config.referrals + 2,
            valid=len(valid_ids),
            expected_handovers=len(routed) + len(missing),
            received_handovers=received,
            routes=rows,
            dead_letters=dead,
            elapsed_s=time.monotonic() - started,
            inbox_folder=config.folder / "inbox",
        )
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


async def _push(
    config: DemoConfig,
    rng: random.Random,
    senders: dict[str, Sender],
    settings: Settings,
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
        referral = synthetic_referral(rng, sender, jurisdiction, urgent)
        sealed = senders[sender].seal_referral(Submission(referral, jurisdiction))
        await senders[sender].send(sealed)
        sent.append((sender, sealed))
        progress("send", i + 1, config.referrals)
    # The two hostile cases: the first envelope again (a duplicate), and a fresh
    # envelope with one flipped byte (tampered in transit).
    dup_sender, dup = sent[0]
    await _raw_send(settings, names.outbox(dup_sender), dup.envelope)
    bad_sender = sent[1][0]
    fresh = senders[bad_sender].seal_referral(
        Submission(synthetic_referral(rng, bad_sender, "NL", False), "NL")
    )
    tampered = bytearray(fresh.envelope)
    tampered[len(tampered) // 2] ^= 0x01
    await _raw_send(settings, names.outbox(bad_sender), bytes(tampered))

    return sent


async def _await_receipts(
    config: DemoConfig,
    tracker: Tracker,
    settings: Settings,
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
        dead = await _read_dead_letters(settings, names.dlq)
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


async def _raw_send(settings: Settings, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(
        **client_kwargs(settings.kafka), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"demo")
    finally:
        await producer.stop()


async def _read_dead_letters(settings: Settings, topic: str) -> Counter[str]:
    from broker.cli._router import read_records

    reasons: Counter[str] = Counter()
    for _where, _value, headers in await read_records(settings.kafka, topic):
        reasons[headers.get("crb-reason", b"?").decode()] += 1
    return reasons
