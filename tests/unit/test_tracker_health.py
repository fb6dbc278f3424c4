"""What /healthz and /metrics say: the truth about Kafka, not just "the process is up"."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from broker.tracker import OPERATOR, Access, create_app
from broker.tracker._access import new_token
from broker.tracker._health import HealthReport, TrackerHealth
from tests.unit.test_tracker_api import _ledger

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_tracker_kafka_stopped_answering_is_degraded_and_says_since_when() -> None:
    h = TrackerHealth()
    assert "starting" == h.report(100.0, grace_s=30).status
    h.ready = True
    assert "degraded" == h.report(100.0, grace_s=30).status, "Kafka never answered"
    h.probed(100.0, lag_records=0)
    ok = h.report(110.0, grace_s=30)
    assert ("ok", 10.0, 0, 0.0) == (ok.status, ok.kafka_seen_s, ok.lag_records, ok.stale_s)
    h.failed("broker unreachable")
    still = h.report(129.0, grace_s=30)
    assert "ok" == still.status, "within the grace period"
    late = h.report(745.0, grace_s=30)
    assert "degraded" == late.status
    assert "Kafka has not answered for 645 s" in late.detail
    assert "broker unreachable" in late.detail
    h.probed(750.0, lag_records=12)
    behind = h.report(760.0, grace_s=30)
    assert ("ok", 12, 660.0) == (behind.status, behind.lag_records, behind.stale_s)


def _report(status: str) -> HealthReport:
    return HealthReport(status, status != "starting", 640.0, 3, 650.0, f"{status} detail")


@pytest.mark.parametrize(("status", "code"), [("ok", 200), ("degraded", 503), ("starting", 503)])
async def test_healthz_answers_503_unless_ok(status: str, code: int) -> None:
    token, record = new_token(OPERATOR, label="t", now=T0)
    access = Access(lambda: {record.id: record}, clock=lambda: T0)
    handovers = list(_ledger().handovers.values())
    app = create_app(lambda: handovers, access=access, health=lambda: _report(status))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/healthz")
        assert code == answer.status_code
        assert status == answer.json()["status"]
        assert f"{status} detail" == answer.json()["detail"]
        assert 401 == (await client.get("/metrics")).status_code
        text = (await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert 'crb_tracker_handovers{state="received"} 1' in text
    assert 'crb_tracker_handovers{state="escalated"} 1' in text
    assert 'crb_tracker_overdue{priority="urgent"} 1' in text
    assert f"crb_tracker_up {1 if status == 'ok' else 0}" in text
    assert "crb_tracker_lag_records 3" in text


async def test_no_page_loads_anything_from_a_public_cdn() -> None:
    """/docs and /redoc would fetch Swagger UI and ReDoc from jsdelivr: not served;
    the OpenAPI document is."""
    _, record = new_token(OPERATOR, label="t", now=T0)
    access = Access(lambda: {record.id: record}, clock=lambda: T0)
    app = create_app(lambda: [], access=access)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert 404 == (await client.get(path)).status_code, path
        doc = await client.get("/openapi.json")
    assert 200 == doc.status_code
    assert "cdn" not in doc.text.lower()


async def test_metrics_carry_what_the_watch_saw() -> None:
    from broker.tracker._watch import HealthStrip

    token, record = new_token(OPERATOR, label="t", now=T0)
    access = Access(lambda: {record.id: record}, clock=lambda: T0)
    strip = HealthStrip(
        at=T0, directory_version=4, tracker=_report("ok"), brokers=3, router_lag=7,
        router_stalled_s=12.0, dead_letters=2, inbox_backlog=(("fr.police24", 5, 900.0),),
    )  # fmt: skip
    app = create_app(lambda: [], access=access, health=lambda: _report("ok"), strip=lambda: strip)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        text = (await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert "crb_router_lag_records 7" in text
    assert "crb_tracker_dead_letters 2" in text
    assert 'crb_tracker_inbox_backlog_records{participant="fr.police24"} 5' in text
