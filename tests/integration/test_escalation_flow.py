"""Escalation that delivers, on the real Kafka: an urgent referral to NL whose
recipients stay silent goes overdue, the tracker escalates it, the sender's adapter
re-seals it to the escalation recipient, the router routes it there, and the
coordinator receives it and answers — the tracker shows both."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from adapters import Submission
from adapters.kafka import KafkaClients
from broker import topics
from broker.router import Router
from broker.settings import TrackerSettings
from broker.tracker import Tracker
from schemas import HandoverState, Priority, ServiceRole
from tests._fed import LiveFederation, make_referral, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._adapters import running_adapter
from tests.integration._kafka_util import running, wait_until

pytestmark = [pytest.mark.kafka]


@pytest.mark.timeout(240)
async def test_an_overdue_urgent_referral_is_resealed_to_the_fallback_and_received(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    fed = LiveFederation()
    prefix = unique_prefix()
    settings = settings_for(kafka.bootstrap, prefix).model_copy(
        update={
            "tracker": TrackerSettings(
                group_id=f"{prefix}-tracker",
                receipt_sla_urgent=timedelta(seconds=2),
                escalate_after=1.0,
                fail_after=60.0,
            )
        }
    )
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    tracker = Tracker(
        settings, fed.directory(), directory=fed.directory(), signer=fed.signer(ServiceRole.TRACKER)
    )
    async with (
        running(router.run, router.ready, "router"),
        running(tracker.run, tracker.ready, "tracker"),
        running_adapter(settings, fed, "de.hotline", tmp_path / "de") as de_run,
        running_adapter(settings, fed, "int.coordinator", tmp_path / "coord") as coord_run,
    ):
        de, de_inbox, coord_inbox = de_run.sender, de_run.receiver, coord_run.receiver
        # NL's hotline and 24/7 police contact are down: nobody answers.
        referral = make_referral(priority=Priority.URGENT)
        sealed = de.seal_referral(Submission(referral, "NL"))
        await de.send(sealed)
        original = sealed.message_id

        def fallback_received() -> bool:
            return any(
                h.escalation_of == original and h.received_at is not None
                for h in tracker.snapshot()
            )

        await wait_until(fallback_received, what="the escalation received", timeout_s=120)
        handovers = tracker.snapshot()
        first = [h for h in handovers if h.message_id == original]
        escalated = [h for h in handovers if h.escalation_of == original]

    assert {h.recipient for h in first} == {"nl.hotline", "nl.police24"}
    assert all(h.escalated_to == "int.coordinator" for h in first)
    assert all(h.state is HandoverState.ESCALATED for h in first)
    (fallback,) = escalated  # one escalation, though two handovers were escalated
    assert fallback.recipient == "int.coordinator"
    assert fallback.case_id == sealed.case_id
    assert fallback.sender == "de.hotline"
    assert de_inbox.stats.escalations == 1
    assert coord_inbox.stats.delivered == 1
    (document,) = [json.loads(p.read_text()) for p in (tmp_path / "coord" / "inbox").glob("*.json")]
    assert document["escalation_of"] == str(original)
    assert document["referral"]["reporter"]["reference"] == referral.reporter.reference
    assert tracker.escalation_notices >= 1
