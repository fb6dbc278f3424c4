"""Logs are tested too (STYLE.md 14a): the whole demo flow — senders, router,
receiving adapters, tracker — logs no payload text, no URL, no hash and no key
material, only header fields and reason codes."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
import structlog
from structlog.testing import LogCapture

from broker.dev.demo import DemoConfig, run_demo
from tests.conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _payload_strings(folder: Path) -> list[str]:
    """What no log may contain: every opened referral's reference, summary, URLs
    and hashes, as delivered to the inbox folders."""
    out: list[str] = []
    for path in (folder / "inbox").rglob("*.json"):
        document = json.loads(path.read_text())
        referral = document.get("referral")
        if referral is None:
            continue
        out.append(referral["reporter"]["reference"])
        out.append(referral["incident"]["summary"])
        out.extend(u["url"] for u in referral["urls"])
        out.extend(h["value"] for item in referral["items"] for h in item["hashes"])
    return out


def _key_strings(folder: Path) -> list[str]:
    """Every private key of the run: PEM body lines and the raw bytes in hex."""
    out: list[str] = []
    for pem in (folder / "keys").rglob("*.pem"):
        if ".pub." in pem.name:
            continue
        lines = pem.read_text().splitlines()
        body = [ln for ln in lines if ln and not ln.startswith("-----")]
        out.extend(body)
        out.append(base64.b64decode("".join(body)).hex())
    return out


@pytest.mark.timeout(300)
async def test_demo_flow_logs_no_payload_and_no_key_material(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """Every log event of a full run is searched for every opened referral's text,
    URL and hash and for every private key's encodings: none is found; a positive
    control shows the capture saw the flow (a delivery per handover, by id)."""
    config = DemoConfig(
        kafka=kafka.settings, folder=tmp_path / "demo", referrals=20, seed=11, timeout_s=120
    )
    # Debug too (the router's per-forward and the tracker's per-event lines), and
    # the bound context (trace ids) merged in as the services' own logging does.
    capture = LogCapture()
    old = structlog.get_config()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    try:
        report = await run_demo(config)
    finally:
        structlog.configure(**old)
    events = [dict(e) for e in capture.entries]
    assert report.ok
    _one_trace_per_referral(events)

    delivered = [e for e in events if e.get("event") == "delivered"]
    assert len(delivered) >= report.expected_handovers
    assert any(e.get("reason") == "bad_signature" for e in events)  # dead letters are logged

    secrets = _payload_strings(config.folder) + _key_strings(config.folder)
    assert len(secrets) > 20 * 4
    logged = [json.dumps(e, default=str, ensure_ascii=False) for e in events]
    leaks = sorted({s for s in secrets for line in logged if s in line})
    assert [] == leaks


def _one_trace_per_referral(events: list[dict[str, object]]) -> None:
    """One referral can be followed by its trace id: the sender's ``sent``, the
    router's ``forwarded``, every recipient's ``delivered`` and the tracker's
    ``status_event`` lines of that message carry the same trace id; different
    referrals have different ones, and a receipt continues its referral's."""
    sent = {
        e["message_id"]: e["trace_id"]
        for e in events
        if e.get("event") == "sent" and e.get("trace_id")
    }
    delivered = [
        e for e in events if e.get("event") == "delivered" and e.get("message_type") == "referral"
    ]
    assert delivered
    for e in delivered:
        assert sent.get(e["message_id"]) == e.get("trace_id"), e
    followed = 0
    for message_id, tid in sent.items():
        routed = [
            e for e in events if e.get("event") == "forwarded" and e.get("message_id") == message_id
        ]
        tracked = [
            e
            for e in events
            if e.get("event") == "status_event" and e.get("message_id") == message_id
        ]
        if routed and tracked:
            assert {tid} == {e.get("trace_id") for e in routed + tracked}
            followed += 1
    assert followed >= len(delivered) // 2
    referrals = {e["message_id"] for e in delivered}
    assert len(referrals) == len({sent[m] for m in referrals})  # one trace per referral
    assert len(set(sent.values())) < len(sent)  # receipts continue their referral's trace
