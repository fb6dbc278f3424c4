"""Deconfliction on the real Kafka: router and tracker running, tagged referrals in,
signed notices out in the right inboxes — and no URL or hash anywhere in Kafka."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.kafka import KafkaClients, Record, signed_by
from broker import topics
from broker.router import Router
from broker.tracker import Tracker
from keys import NOTICE_CONTEXT
from schemas import DeconflictionNotice, NoticeKind, Referral, ServiceRole, TopicNames
from tests._fed import LiveFederation, make_referral, now, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import read_all, running, send_raw, wait_until

pytestmark = [pytest.mark.kafka]


def _notices(records: list[Record], fed: LiveFederation) -> list[DeconflictionNotice]:
    """The notices among ``records``, each checked against the tracker's key."""
    out = []
    for r in records:
        if r.header("crb-record") != b"notice":
            continue
        n = DeconflictionNotice.model_validate_json(r.value or b"")
        assert signed_by(r, fed.directory(), (ServiceRole.TRACKER,), NOTICE_CONTEXT, at=n.at)
        out.append(n)
    return out


@pytest.mark.timeout(180)
async def test_the_same_url_from_de_and_nl_notifies_both_and_leaks_nothing(
    kafka: KafkaEndpoint,
) -> None:
    fed = LiveFederation()
    prefix = unique_prefix()
    settings = settings_for(kafka.bootstrap, prefix)
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    names = TopicNames(prefix)
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    tracker = Tracker(
        settings, fed.directory(), directory=fed.directory(), signer=fed.signer(ServiceRole.TRACKER)
    )
    first = make_referral()
    url = first.urls[0].url
    # NL's analyst found the same page, spelled differently (scheme, case, fragment).
    spelled = url.replace("https://", "HTTP://", 1) + "#top"
    same: Referral = make_referral().model_copy(
        update={"urls": (first.urls[0].model_copy(update={"url": spelled}),)}
    )
    other = make_referral()
    t = now()
    seal = fed.fed.seal_referral
    de_env = seal("de.hotline", first, jurisdiction="NL", now=t, tagged=True)
    nl_env = seal("nl.hotline", same, jurisdiction="NL", now=t + timedelta(seconds=1), tagged=True)
    other_env = seal("de.hotline", other, jurisdiction="NL", now=t, tagged=True)

    async with (
        running(router.run, router.ready, "router"),
        running(tracker.run, tracker.ready, "tracker"),
    ):
        await send_raw(kafka.bootstrap, names.outbox("de.hotline"), de_env)
        await wait_until(lambda: len(tracker.snapshot()) >= 1, what="DE's referral routed")
        await send_raw(kafka.bootstrap, names.outbox("nl.hotline"), nl_env)
        await send_raw(kafka.bootstrap, names.outbox("de.hotline"), other_env)
        await wait_until(lambda: tracker.notices >= 2, what="two notices written")
        await wait_until(lambda: len(tracker.snapshot()) >= 3, what="all three routed")

    nl_notices = _notices(await read_all(kafka.bootstrap, names.inbox("nl.hotline")), fed)
    de_notices = _notices(await read_all(kafka.bootstrap, names.inbox("de.hotline")), fed)
    assert [n.kind for n in nl_notices] == [NoticeKind.ALREADY_REFERRED]
    assert [n.kind for n in de_notices] == [NoticeKind.REFERRED_AGAIN]
    (told_nl,), (told_de,) = nl_notices, de_notices
    assert told_nl.matched.sender == "de.hotline"
    assert told_nl.matched.jurisdiction == "NL"
    assert set(told_nl.matched.states) == {"nl.hotline"}
    assert told_de.matched.sender == "nl.hotline"
    assert told_de.matched.message_id == told_nl.message_id
    assert told_nl.matched.message_id == told_de.message_id
    # The referral with another URL and hash brought nothing: exactly one of each.
    assert tracker.notices == 2

    if kafka.launcher is None:
        pytest.skip("Kafka's data directory is not local (CRB_KAFKA_BOOTSTRAP): cannot scan it")
    blob = b"".join(
        p.read_bytes()
        for p in kafka.launcher.iter_data_files()
        if p.suffix not in (".index", ".timeindex")
    )
    assert prefix.encode() in blob  # positive control: the scan reads our segments
    canaries = [url, spelled, first.items[0].hashes[0].value, other.urls[0].url]
    canaries += [h.value for h in other.items[0].hashes]
    assert [c for c in canaries if c.encode() in blob] == []
