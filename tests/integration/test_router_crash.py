"""Crash test: the router process is SIGKILLed at random moments while it forwards
thousands of referrals; every inbox still sees each message exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from adapters.kafka import KafkaClients
from broker import topics
from keys import verify
from schemas import Priority, TopicNames, resolve
from tests._fed import LiveFederation, now, settings_for, unique_prefix
from tests._kafka import kafka_kwargs, login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import read_all, wait_group_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TOTAL = 2000
KILLS = 5


def _start_router(
    bootstrap: str, prefix: str, group: str, files: Path, log: Path
) -> subprocess.Popen[bytes]:
    directory, root = files / "directory.json", files / "root.pub.pem"
    env = {**os.environ, **login_env(bootstrap), "CRB_HOME": str(files / "home")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker.cli",
                "router",
                "run",
                "--bootstrap",
                bootstrap,
                "--prefix",
                prefix,
                "--directory",
                str(directory),
                "--root-key",
                str(root),
                "--trust-store",
                str(files / "trust.json"),
                "--keystore",
                str(files / "keys"),
                "--group",
                group,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


@pytest.mark.timeout(600)
async def test_sigkilled_router_forwards_every_referral_exactly_once(
    kafka: KafkaEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,000 referrals (a tenth urgent, so fanned out) over three outbox partitions;
    the router is SIGKILLed five times at random moments and restarted; a
    read_committed reader of every inbox counts sent, delivered, lost, duplicated."""
    rng = random.Random(20261123)
    fed = LiveFederation()
    prefix = unique_prefix()
    settings = settings_for(kafka.bootstrap, prefix, partitions=3)
    names = TopicNames(prefix)
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    fed.write(tmp_path)
    directory = fed.directory()

    envelopes = [
        fed.referral(priority=Priority.URGENT if i % 10 == 0 else Priority.ROUTINE)
        for i in range(TOTAL)
    ]
    expected: Counter[tuple[str, str]] = Counter()
    for env in envelopes:
        header = verify(env, directory=directory, now=now()).header
        for r in resolve(header, directory).recipients:
            expected[(r, str(header.message_id))] += 1

    log = tmp_path / "router.log"
    group = settings.router.group_id
    proc = _start_router(kafka.bootstrap, prefix, group, tmp_path, log)
    producer = AIOKafkaProducer(
        **kafka_kwargs(kafka.bootstrap), acks="all", enable_idempotence=True
    )
    await producer.start()
    kills = 0

    async def produce() -> None:
        for i, env in enumerate(envelopes):
            await producer.send(names.outbox("de.hotline"), env, partition=i % 3)
            if i % 100 == 99:
                await producer.flush()
                await asyncio.sleep(0.8)  # ~16 s of steady traffic
        await producer.flush()

    try:
        sending = asyncio.create_task(produce())
        deadline = time.monotonic() + 240
        while kills < KILLS and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(3.0, 7.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            proc = _start_router(kafka.bootstrap, prefix, group, tmp_path, log)
        await sending
        want = sum(expected.values())
        inbox_topics = sorted({names.inbox(r) for r, _ in expected})
        # The last router has decided every referral: each input offset is committed
        # in the transaction that wrote its forwards, so the inboxes are final.
        await wait_group_caught_up(
            kafka.bootstrap,
            group,
            names.outbox("de.hotline"),
            what=f"the router committing past all {TOTAL} referrals in the outbox",
            timeout_s=180,
        )
        got: Counter[tuple[str, str]] = Counter()
        for topic in inbox_topics:
            for record in await read_all(kafka.bootstrap, topic):
                message_id = dict(record.headers)["crb-message-id"].decode()
                got[(topic.removeprefix(f"{prefix}.inbox."), message_id)] += 1
        dlq = await read_all(kafka.bootstrap, names.dlq)
    finally:
        await producer.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    delivered = sum(min(n, 1) for n in got.values())
    lost = sum(1 for k in expected if k not in got)
    duplicated = sum(n - 1 for n in got.values() if n > 1)
    unexpected = sum(1 for k in got if k not in expected)
    with capsys.disabled():
        print(
            f"\n[router crash] kills={kills} sent={TOTAL} expected_deliveries={want} "
            f"delivered={delivered} lost={lost} duplicated={duplicated} "
            f"unexpected={unexpected} dead_lettered={len(dlq)}"
        )
    assert kills == KILLS
    assert lost == 0
    assert duplicated == 0
    assert unexpected == 0
    assert len(dlq) == 0
