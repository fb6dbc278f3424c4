"""Authorised redelivery on the real Kafka: a referral its recipient leaves
unanswered is sent again by the sender under the same id; the router forwards the
new sealing once (``redelivered``) and refuses a replay of the old bytes; the
recipient, back online, delivers it once and answers once; the sender then drops
its kept copy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from adapters import (
    AdapterSettings,
    Submission,
)
from adapters.kafka import KafkaClients, read_topic
from broker import topics
from broker.router import Router
from broker.settings import RouterSettings, TrackerSettings
from broker.tracker import Tracker
from keys import parse
from schemas import HandoverState, ServiceRole, TopicNames
from tests._fed import LiveFederation, make_referral, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._adapters import running_adapter
from tests.integration._kafka_util import read_all, running, send_raw, wait_until

pytestmark = [pytest.mark.kafka]


@pytest.mark.timeout(240)
async def test_an_unanswered_referral_is_redelivered_once_per_attempt_and_delivered_once(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    fed = LiveFederation()
    prefix = unique_prefix()
    base = settings_for(kafka.bootstrap, prefix)
    settings = base.model_copy(
        update={
            "router": RouterSettings(
                group_id=f"{prefix}-router",
                transactional_id_prefix=f"{prefix}-router",
                redelivery_min=timedelta(seconds=1),
            ),
            "tracker": TrackerSettings(group_id=f"{prefix}-tracker"),
            "adapter": AdapterSettings(
                redeliver_after_routine=timedelta(seconds=2),
                redeliver_check_s=0.5,
                redeliver_max=1,
            ),
        }
    )
    names = TopicNames(prefix)
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    tracker = Tracker(
        settings, fed.directory(), directory=fed.directory(), signer=fed.signer(ServiceRole.TRACKER)
    )
    async with (
        running(router.run, router.ready, "router"),
        running(tracker.run, tracker.ready, "tracker"),
        running_adapter(settings, fed, "de.hotline", tmp_path / "de") as de_run,
    ):
        de, de_inbox, de_state = de_run.sender, de_run.receiver, de_run.store
        sealed = de.seal_referral(Submission(make_referral(), "NL"))
        await de.send(sealed)
        mid = sealed.message_id

        def redelivered() -> bool:
            return any(h.message_id == mid and h.redeliveries >= 1 for h in tracker.snapshot())

        await wait_until(redelivered, what="a redelivered handover", timeout_s=60)
        # A replay of the first bytes is refused, however late.
        await send_raw(kafka.bootstrap, names.outbox("de.hotline"), sealed.envelope)
        dead: list[str] = []

        async def replay_refused() -> bool:
            dead.clear()
            await read_topic(
                KafkaClients(settings.kafka),
                names.dlq,
                lambda r: dead.append((r.header("crb-reason") or b"").decode()),
            )
            return dead == ["duplicate_message"]

        await wait_until(replay_refused, what="the replay dead-lettered", timeout_s=60)
        inbox = await read_all(kafka.bootstrap, names.inbox("nl.hotline"))
        assert [parse(r.value or b"").header.message_id for r in inbox] == [mid, mid]
        assert inbox[0].value != inbox[1].value

        # nl.hotline comes back: one delivery, one receipt, and de drops its copy.
        async with running_adapter(settings, fed, "nl.hotline", tmp_path / "nl") as nl_run:
            nl_inbox = nl_run.receiver

            def answered() -> bool:
                return (
                    any(h.message_id == mid and h.received_at for h in tracker.snapshot())
                    and de_state.pending(mid) is None
                )

            await wait_until(answered, what="the receipt back at the sender", timeout_s=60)
            assert nl_inbox.stats.delivered == 1
            assert nl_inbox.stats.duplicates == 1
        (handover,) = [h for h in tracker.snapshot() if h.message_id == mid]
        assert handover.state is HandoverState.RECEIVED
        assert handover.redeliveries == 1
        assert de_inbox.stats.redeliveries == 1  # redeliver_max
    assert len(list((tmp_path / "nl" / "inbox").glob("*.json"))) == 1
