"""The short chaos run (``make chaos`` is the long one): the whole federation on
the three-broker secured cluster, each service in its own process, with every
fault of ``bench/chaos.py`` during the send — routers SIGKILLed, a broker SIGKILLed
and started again, each receiving adapter SIGKILLed, the tracker SIGKILLed, a
router frozen past its session timeout — then the independent count."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos
from tests.conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]


async def test_every_referral_once_under_every_fault_at_once(
    kafka_cluster: KafkaEndpoint, tmp_path: Path
) -> None:
    if kafka_cluster.launcher is None:
        pytest.skip("the chaos run kills and restarts brokers: needs the local cluster")
    config = ChaosConfig(
        referrals=400,
        rate=20.0,
        router_kills=3,
        hostile_every=100,
        session_timeout_ms=6_000,
        broker_down_s=10.0,
        drain_timeout_s=600.0,
        seed=7,
    )
    report = await run_chaos(config, kafka_cluster.launcher, tmp_path)
    table = report.table()
    (tmp_path / "report.txt").write_text(table + "\n")
    assert report.replicas == (3, 3), table  # a broker kill takes no partition offline
    assert report.sent == 400, table
    assert report.expected_handovers > 400, table
    assert (report.lost, report.duplicated, report.unexpected) == (0, 0, 0), table
    assert report.delivered == report.expected_handovers == report.files_ok, table
    assert report.receipts == report.expected_handovers, table
    assert (report.receipts_missing, report.receipts_duplicated) == (0, 0), table
    assert report.final_handovers == report.expected_handovers, table
    assert not report.not_final, table
    assert report.audit_ok, report.audit_output
    assert report.repeats > 0, table
    # Each designed repeat brought its notice; random URLs may match by chance too.
    assert report.repeats_unnoticed == 0, table
    assert report.notices["already_referred"] == report.notices["referred_again"], table
    assert report.notices["already_referred"] >= report.repeats, table
    # Every injected replay and tampered envelope dead-lettered, none delivered.
    assert report.tampered_injected == 4, table
    assert report.tampered_delivered == 0, table
    # (a copy the outbox produced again, Kafka not answering in time, is refused too)
    assert report.dead_letters.get("bad_signature (tampered)", 0) >= 4, table
    assert report.dead_letters.get("duplicate_message (referral sent before)", 0) >= 4, table
    # The fault schedule ran in full.
    ran = [f.fault for f in report.faults]
    assert ran.count("router_kill") == 3, table
    assert ran.count("receiver_kill") == 10, table
    for fault in ("broker_kill", "broker_restart", "tracker_kill", "freeze", "resume"):
        assert ran.count(fault) == 1, table
    assert report.ok, table
