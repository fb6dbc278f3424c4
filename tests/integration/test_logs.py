"""Logs are tested too (STYLE.md 14a): the whole demo flow — senders, router,
receiving adapters, tracker — logs no payload text, no URL, no hash and no key
material, only header fields and reason codes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

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
    with capture_logs() as events:
        report = await run_demo(config)
    assert report.ok

    delivered = [e for e in events if e.get("event") == "delivered"]
    assert len(delivered) >= report.expected_handovers
    assert any(e.get("reason") == "bad_signature" for e in events)  # dead letters are logged

    secrets = _payload_strings(config.folder) + _key_strings(config.folder)
    assert len(secrets) > 20 * 4
    logged = [json.dumps(e, default=str, ensure_ascii=False) for e in events]
    leaks = sorted({s for s in secrets for line in logged if s in line})
    assert [] == leaks
