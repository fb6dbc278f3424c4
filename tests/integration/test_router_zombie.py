"""A zombie router on the real Kafka: frozen past its session timeout, replaced, resumed.

Router A (``crb router run`` in its own process) owns every outbox partition. It is
frozen with SIGSTOP for longer than its group session timeout; router B joins the
group, takes the partitions (its transactional producers fence A's) and forwards
what arrives meanwhile. A is resumed with SIGCONT: whatever A still tries to commit
is fenced, A gives the partitions up at its next rebalance and never fences back.
Counted afterwards by an independent ``read_committed`` reader: every referral
reached each of its recipients exactly once, nothing was dead-lettered, B was never
fenced, and A took nothing back by force.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.kafka import KafkaClients, OutRecord
from broker import topics
from broker.router import Router
from broker.settings import RouterSettings
from keys import parse
from schemas import ServiceRole, TopicNames
from tests._fed import LiveFederation, settings_for, unique_prefix
from tests._kafka import login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import drain, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SESSION_MS = 6_000  # the broker's group.min.session.timeout.ms
PARTITIONS = 3
BATCH = 30


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                out.append(event)
    return out


def _count(events: Sequence[Mapping[str, Any]], name: str) -> int:
    return sum(1 for e in events if e.get("event") == name)


class _Federation:
    """The test's federation, its topics, and what should arrive where."""

    def __init__(self, kafka: KafkaEndpoint) -> None:
        self.fed = LiveFederation()
        prefix = unique_prefix()
        self.prefix = prefix
        settings = settings_for(kafka.bootstrap, prefix, partitions=PARTITIONS)
        router = RouterSettings(
            group_id=f"{prefix}-router",
            transactional_id_prefix=f"{prefix}-router",
            session_timeout_ms=SESSION_MS,
            poll_timeout_ms=100,
        )
        self.settings = settings.model_copy(update={"router": router})
        self.bootstrap = kafka.bootstrap
        self.clients = KafkaClients(self.settings.kafka)
        self.names = TopicNames(prefix)
        self.inboxes = [self.names.inbox(p) for p in ("de.hotline", "nl.hotline")]
        self.expected: Counter[tuple[str, str]] = Counter()  # (message id, inbox)

    async def send(self, n: int) -> None:
        """``n`` referrals, alternately DE -> NL and NL -> DE (one recipient each)."""
        producer = self.clients.producer()
        await producer.start()
        try:
            for i in range(n):
                sender, jurisdiction = (("de.hotline", "NL"), ("nl.hotline", "DE"))[i % 2]
                env = self.fed.referral(sender=sender, jurisdiction=jurisdiction)
                header = parse(env).header
                for r in header.recipients:
                    self.expected[(str(header.message_id), self.names.inbox(r))] += 1
                out = OutRecord(self.names.outbox(sender), str(header.case_id).encode(), env)
                await producer.send_and_wait(out)
        finally:
            await producer.stop()

    async def delivered(self) -> Counter[tuple[str, str]]:
        """Copies per (message id, inbox), as a read_committed reader sees them."""
        got: Counter[tuple[str, str]] = Counter()
        for topic in self.inboxes:
            for r in await drain(self.bootstrap, topic, idle_s=0.3):
                message_id = dict(r.headers or ()).get("crb-message-id", b"").decode()
                got[(message_id, topic)] += 1
        return got

    def forwarded_at_least(self, n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return sum((await self.delivered()).values()) >= n

        return check

    def router_process(self, log: Path, home: Path, directory: Path, root: Path) -> Any:
        env = {
            **os.environ,
            **login_env(self.bootstrap),
            "CRB_HOME": str(home),
            "CRB_ROUTER__TRANSACTIONAL_ID_PREFIX": f"{self.prefix}-router",
            "CRB_ROUTER__SESSION_TIMEOUT_MS": str(SESSION_MS),
            "CRB_ROUTER__POLL_TIMEOUT_MS": "100",
        }
        argv = [
            sys.executable, "-m", "broker.cli", "router", "run", "--bootstrap", self.bootstrap,
            "--prefix", self.prefix, "--group", f"{self.prefix}-router",
            "--directory", str(directory), "--root-key", str(root),
            "--keystore", str(directory.parent / "keys"),
            "--trust-store", str(directory.parent / "trust.json"),
        ]  # fmt: skip
        with log.open("wb") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.mark.timeout(240)
async def test_frozen_router_is_replaced_and_resumes_without_duplicates_or_ping_pong(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """No referral forwarded twice, none lost or dead-lettered; the live router is
    never fenced; the resumed one is fenced at most once per partition, gives its
    partitions up at its next rebalance and never takes one back by force."""
    f = _Federation(kafka)
    await topics.apply(f.fed.directory(), f.clients, f.settings.topics)
    directory, root = f.fed.write(tmp_path / "fed")
    log_a = tmp_path / "router-a.log"
    a = f.router_process(log_a, tmp_path / "home", directory, root)
    b = Router(
        f.settings,
        f.fed.directory(),
        signer=f.fed.signer(ServiceRole.ROUTER),
        clients=f.clients,
    )
    stop_b = asyncio.Event()
    task_b: asyncio.Task[None] | None = None

    async def a_rejoined() -> bool:
        return _count(_events(log_a), "partitions_assigned") >= 2

    with capture_logs() as events_b:
        try:
            await f.send(BATCH)
            await wait_until(
                f.forwarded_at_least(BATCH),
                what="A to forward the first batch",
                timeout_s=90,
                interval_s=0.2,
            )
            a.send_signal(signal.SIGSTOP)
            task_b = asyncio.create_task(b.run(stop_b))
            await asyncio.wait_for(b.ready.wait(), 60)  # A's session expired; B holds it all
            await f.send(BATCH)
            await wait_until(
                f.forwarded_at_least(2 * BATCH),
                what="B to forward while A is frozen",
                timeout_s=60,
                interval_s=0.2,
            )
            revoked_before = _count(_events(log_a), "partitions_revoked")
            a.send_signal(signal.SIGCONT)
            await wait_until(
                a_rejoined,
                what="A to rejoin the group after resuming",
                timeout_s=60,
                interval_s=0.2,
            )
            await f.send(BATCH)
            await wait_until(
                f.forwarded_at_least(3 * BATCH),
                what="the last batch to be forwarded",
                timeout_s=60,
                interval_s=0.2,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                a.send_signal(signal.SIGCONT)
                a.send_signal(signal.SIGTERM)
            await asyncio.to_thread(a.wait, 60)
            stop_b.set()
            if task_b is not None:
                await asyncio.wait_for(task_b, 60)

    got = await f.delivered()
    duplicated = {k: n for k, n in got.items() if n > 1}
    lost = set(f.expected) - set(got)
    unexpected = set(got) - set(f.expected)
    dead = await drain(kafka.bootstrap, f.names.dlq, idle_s=0.5)
    events_a = _events(log_a)
    fenced_a = [e for e in events_a if e.get("event") == "partition_fenced"]
    rebalances_a = _count(events_a, "partitions_revoked") - revoked_before
    print(
        f"\n[zombie] referrals={3 * BATCH} handovers={sum(f.expected.values())} "
        f"delivered={sum(got.values())} duplicated={len(duplicated)} lost={len(lost)} "
        f"unexpected={len(unexpected)} dead_lettered={len(dead)} fenced_A={len(fenced_a)} "
        f"fenced_B={_count(events_b, 'partition_fenced')} rebalances_A_after_resume="
        f"{rebalances_a} reclaimed={_count([*events_a, *events_b], 'partition_reclaimed')}"
    )
    assert {} == duplicated
    assert set() == lost
    assert set() == unexpected
    assert [] == dead
    assert 0 == _count(events_b, "partition_fenced")  # the live router is never fenced
    assert len({e["partition"] for e in fenced_a}) == len(fenced_a) <= 2 * PARTITIONS
    assert 1 == rebalances_a  # A gives its partitions up at its first rebalance
    assert 0 == _count([*events_a, *events_b], "partition_reclaimed")
