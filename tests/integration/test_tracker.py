"""The tracker against a real Kafka: folding the router's status events, SLA timers
with a fake clock, rebuild after restart, fencing, the HTTP API and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from adapters.kafka import Fenced, KafkaClients
from broker import topics
from broker.settings import Settings, TrackerSettings
from broker.tracker import (
    OPERATOR,
    Access,
    Handover,
    Tracker,
    by_case,
    create_app,
    read_state,
    route_stats,
    select,
    serve,
)
from broker.tracker._access import new_token
from keys import STATUS_CONTEXT, RecordSigner
from schemas import (
    HandoverState,
    Priority,
    Reason,
    ServiceRole,
    StatusEvent,
    TopicNames,
    uuid7,
)
from tests._fed import LiveFederation, now, settings_for, unique_prefix
from tests._kafka import kafka_kwargs, login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import (
    drain,
    free_port,
    running,
    wait_group_caught_up,
    wait_until,
)

pytestmark = pytest.mark.kafka

S = HandoverState
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FED = LiveFederation()
"""Whose router and tracker keys sign the status events of every test here."""
ESCALATION = "int.coordinator"
URGENT_NL: dict[str, object] = {"priority": Priority.URGENT, "jurisdiction": "NL"}
HIGH_DE: dict[str, object] = {"priority": Priority.HIGH, "jurisdiction": "DE"}


class FakeClock:
    """The tracker's clock; tests move it forward by hand. ``reads`` counts the
    tracker's calls: it reads the clock once per poll, before folding and ticking."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def _setup(kafka: KafkaEndpoint, partitions: int = 3) -> Settings:
    prefix = unique_prefix()
    base = settings_for(kafka.bootstrap, prefix, partitions=partitions)
    settings = base.model_copy(
        update={"tracker": TrackerSettings(group_id=f"{prefix}-tracker", poll_timeout_ms=100)}
    )
    await topics.apply(FED.directory(), KafkaClients(settings.kafka), settings.topics)
    return settings


@contextlib.asynccontextmanager
async def running_tracker(
    settings: Settings, clock: Callable[[], datetime]
) -> AsyncIterator[tuple[Tracker, asyncio.Task[None]]]:
    tracker = Tracker(
        settings,
        ESCALATION,
        clock=clock,
        directory=FED.directory(),
        signer=FED.signer(ServiceRole.TRACKER),
    )
    async with running(tracker.run, tracker.ready, "tracker") as task:
        yield tracker, task


async def one_more_cycle(clock: FakeClock, what: str) -> None:
    """Wait until a whole poll cycle of the tracker began and ended after this call:
    the first read of the clock from now starts a fold and tick at the clock's
    current time, the second comes only once that cycle committed (or had nothing
    to commit) and the ledger took its changes."""
    start = clock.reads
    await wait_until(lambda: clock.reads >= start + 2, what=f"a tracker cycle: {what}")


async def folded_everything(settings: Settings, clock: FakeClock) -> None:
    """Wait until the tracker has folded every record the status topic holds now —
    its group committed past each (the offsets go in the same transaction as what
    the fold wrote) — and then one more cycle, so its ledger took that commit."""
    await wait_group_caught_up(
        settings.kafka.bootstrap,
        settings.tracker.group_id,
        TopicNames(settings.topics.prefix).status,
        what="the tracker committing past every record on the status topic",
    )
    await one_more_cycle(clock, "after folding the status topic")


def mid() -> UUID:
    return uuid7(T0, rng=os.urandom)


def event(
    state: HandoverState,
    message_id: UUID,
    case_id: UUID,
    recipient: str | None,
    at: datetime,
    **kw: object,
) -> StatusEvent:
    return StatusEvent.model_validate(
        {
            "message_id": message_id,
            "case_id": case_id,
            "sender": "de.hotline",
            "recipient": recipient,
            "state": state,
            "at": at,
            **kw,
        }
    )


async def publish(
    bootstrap: str,
    settings: Settings,
    events: list[StatusEvent],
    *,
    signer: RecordSigner | None = None,
) -> None:
    """As the router does: key = StatusEvent.key(), JSON value, crb-state header, signed
    by the router's key (``signer``: another one)."""
    signer = signer or FED.signer(ServiceRole.ROUTER)
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for e in events:
            value = e.model_dump_json().encode()
            await producer.send(
                TopicNames(settings.topics.prefix).status,
                value,
                key=e.key().encode(),
                headers=[
                    ("crb-state", e.state.value.encode()),
                    ("crb-signer", signer.key_id.encode()),
                    ("crb-signature", signer.sign(STATUS_CONTEXT, value).encode()),
                ],
            )
        await producer.flush()
    finally:
        await producer.stop()


def state_of(tracker: Tracker, message_id: UUID, recipient: str | None) -> HandoverState | None:
    h = tracker.ledger.get(f"{message_id}/{recipient or '-'}")
    return h.state if h is not None else None


def _sorted(hs: list[Handover]) -> list[Handover]:
    return sorted(hs, key=lambda h: h.key)


async def test_routed_then_received_and_case_lifecycle(kafka: KafkaEndpoint) -> None:
    """Routed events fan out into one handover per recipient; a receipt moves one to
    received (with its time to receipt), case decisions follow, the other stays
    routed; the state is on the tracker topic."""
    settings = await _setup(kafka)
    clock = FakeClock()
    m, c = mid(), mid()
    routed: dict[str, object] = {"priority": Priority.ROUTINE, "jurisdiction": "NL"}
    async with running_tracker(settings, clock) as (tracker, _):
        await publish(
            kafka.bootstrap,
            settings,
            [
                event(S.ROUTED, m, c, "nl.hotline", T0, **routed),
                event(S.ROUTED, m, c, "nl.police24", T0, **routed),
                event(S.RECEIVED, m, c, "nl.hotline", T0 + timedelta(seconds=42)),
                event(S.ACCEPTED, m, c, "nl.hotline", T0 + timedelta(minutes=3)),
                event(S.ACTIONED, m, c, "nl.hotline", T0 + timedelta(minutes=4)),
                # Out of order: a late routed after the decision is recorded, ignored.
                event(S.ROUTED, m, c, "nl.hotline", T0 + timedelta(minutes=5), **routed),
            ],
        )
        await wait_until(
            lambda: (
                len(tracker.ledger) == 2
                and len(tracker.ledger.handovers[f"{m}/nl.hotline"].history) == 5
            ),
            what="both handovers, five events on one",
        )
        hot = tracker.ledger.handovers[f"{m}/nl.hotline"]
        assert S.ACTIONED is hot.state
        assert timedelta(seconds=42) == hot.time_to_receipt
        assert ("NL", Priority.ROUTINE) == (hot.jurisdiction, hot.priority)
        assert "ignored" == hot.history[-1].disposition.value
        assert S.ROUTED is state_of(tracker, m, "nl.police24")
        snapshot = _sorted(tracker.snapshot())
    stored = await read_state(
        KafkaClients(settings.kafka), TopicNames(settings.topics.prefix).tracker, FED.directory()
    )
    assert snapshot == _sorted(list(stored.values()))


async def test_urgent_without_receipt_overdue_escalated_failed(kafka: KafkaEndpoint) -> None:
    """An urgent handover with no receipt: overdue after 5 min (fake clock), escalated
    to the escalation recipient 5 min later, failed 5 min after that; the three
    events are published on the status topic (after the router's routed), each
    once. A routine one routed at the same time stays routed."""
    settings = await _setup(kafka)
    clock = FakeClock()
    urgent, routine, c = mid(), mid(), mid()
    async with running_tracker(settings, clock) as (tracker, _):
        await publish(
            kafka.bootstrap,
            settings,
            [
                event(S.ROUTED, urgent, c, "nl.police24", T0, priority=Priority.URGENT),
                event(S.ROUTED, routine, c, "nl.hotline", T0, priority=Priority.ROUTINE),
            ],
        )
        await wait_until(lambda: len(tracker.ledger) == 2, what="two handovers")
        clock.advance(timedelta(minutes=4))
        await one_more_cycle(clock, "ticked at T0 + 4 min")
        assert S.ROUTED is state_of(tracker, urgent, "nl.police24")
        for step, expected in ((1, S.OVERDUE), (5, S.ESCALATED), (5, S.FAILED)):
            clock.advance(timedelta(minutes=step))
            await wait_until(
                lambda expected=expected: state_of(tracker, urgent, "nl.police24") is expected,  # type: ignore[misc]
                what=f"urgent handover {expected.value}",
            )
        h = tracker.ledger.handovers[f"{urgent}/nl.police24"]
        assert ESCALATION == h.escalated_to
        assert S.ROUTED is state_of(tracker, routine, "nl.hotline")
        await folded_everything(settings, clock)  # its own three events, read back
        assert h == tracker.ledger.handovers[f"{urgent}/nl.police24"]
    records = await drain(kafka.bootstrap, TopicNames(settings.topics.prefix).status, expect=5)
    mine = [
        (StatusEvent.model_validate_json(r.value or b""), dict(r.headers).get("crb-source"))
        for r in records
        if r.key == f"{urgent}/nl.police24".encode()
    ]
    assert [
        (S.ROUTED, None, None),
        (S.OVERDUE, Reason.RECEIPT_OVERDUE, b"tracker"),
        (S.ESCALATED, Reason.RECEIPT_OVERDUE, b"tracker"),
        (S.FAILED, Reason.RETRIES_EXHAUSTED, b"tracker"),
    ] == [(e.state, e.reason, src) for e, src in mine]
    assert ESCALATION == mine[2][0].escalated_to
    assert 5 == len(records)


@pytest.mark.parametrize("snapshot", [False, True], ids=["from-topic", "from-snapshot"])
async def test_a_restarted_tracker_rebuilds_the_same_state(
    kafka: KafkaEndpoint, tmp_path: Path, snapshot: bool
) -> None:
    """A second tracker on the same topics, started after the first stopped, rebuilds
    exactly the same handovers and views, raises no timer event twice, and goes on
    from where the first left off (a late receipt after failed is noted). With a
    local snapshot it reads nothing of the tracker topic; without, all of it."""
    settings = await _setup(kafka)
    if snapshot:
        section = settings.tracker.model_copy(update={"snapshot": tmp_path / "state.sqlite"})
        settings = settings.model_copy(update={"tracker": section})
    clock = FakeClock()
    names = TopicNames(settings.topics.prefix)
    c1, c2 = mid(), mid()
    messages = [mid() for _ in range(6)]
    events = []
    for i, m in enumerate(messages):
        prio = Priority.URGENT if i % 2 else Priority.HIGH
        events.append(event(S.ROUTED, m, c1 if i < 3 else c2, "nl.hotline", T0, priority=prio,
                            jurisdiction="NL" if i < 3 else "DE"))  # fmt: skip
    events.append(event(S.RECEIVED, messages[0], c1, "nl.hotline", T0 + timedelta(seconds=5)))
    events.append(event(S.DEAD_LETTERED, mid(), c2, None, T0, reason="recipient_mismatch"))
    async with running_tracker(settings, clock) as (first, _):
        await publish(kafka.bootstrap, settings, events)
        await wait_until(lambda: len(first.ledger) == 7, what="seven handovers")
        await wait_until(
            lambda: state_of(first, messages[0], "nl.hotline") is S.RECEIVED, what="receipt"
        )
        clock.advance(timedelta(minutes=5))
        await wait_until(
            lambda: len(select(first.snapshot(), overdue=True)) == 3, what="urgent ones overdue"
        )
        clock.advance(timedelta(minutes=10))
        await wait_until(
            lambda: (
                len(select(first.snapshot(), state=S.FAILED)) == 0
                and len(select(first.snapshot(), state=S.ESCALATED)) == 3
            ),
            what="urgent ones escalated",
        )
        await folded_everything(settings, clock)  # the echoes of its own events (no-ops)
        before = _sorted(first.snapshot())
    emitted_before = len(await drain(kafka.bootstrap, names.status, expect=14))
    assert 8 + 3 + 3 == emitted_before

    async with running_tracker(settings, clock) as (second, _):
        assert snapshot is second.restored["from_snapshot"]
        # Without: every state record written (7 new, 3 overdue, 3 escalated).
        assert (0 if snapshot else 7 + 3 + 3) == second.restored["records_read"]
        assert 5 == second.restored["waiting"], "3 escalated urgent, 2 high in time"
        assert before == _sorted(second.snapshot())
        assert by_case(before, c1) == by_case(second.snapshot(), c1)
        assert route_stats(before) == route_stats(second.snapshot())
        assert select(before, overdue=True) == select(second.snapshot(), overdue=True)
        # Nothing is due at this time: a whole fold-and-tick cycle may raise nothing again.
        await folded_everything(settings, clock)
        assert before == _sorted(second.snapshot())
        clock.advance(timedelta(minutes=5))
        await wait_until(
            lambda: len(select(second.snapshot(), state=S.FAILED)) == 3, what="urgent ones failed"
        )
        await publish(
            kafka.bootstrap,
            settings,
            [event(S.RECEIVED, messages[1], c1, "nl.hotline", T0 + timedelta(minutes=30))],
        )
        await wait_until(
            lambda: state_of(second, messages[1], "nl.hotline") is S.RECEIVED, what="late receipt"
        )
        late = second.ledger.handovers[f"{messages[1]}/nl.hotline"]
        assert "received after failed" == late.history[-1].note
    assert 14 + 3 + 1 == len(await drain(kafka.bootstrap, names.status, expect=18))


async def test_forged_status_events_are_ignored_and_reported(kafka: KafkaEndpoint) -> None:
    """A status event copied from a real one and set to ``accepted`` — unsigned, with
    the real event's signature, or signed by a participant-like key the directory does
    not list for a service — is not folded: the handover stays routed, each forgery is
    counted, and the genuine events around them still count."""
    settings = await _setup(kafka, partitions=1)
    clock = FakeClock()
    m, c = mid(), mid()
    routed = event(S.ROUTED, m, c, "nl.hotline", T0)
    accepted = event(S.ACCEPTED, m, c, "nl.hotline", T0 + timedelta(seconds=5))
    async with running_tracker(settings, clock) as (tracker, _):
        await publish(kafka.bootstrap, settings, [routed])
        # 1. unsigned; 2. the routed event's valid signature on the accepted value;
        # 3. signed with a key the directory lists for no service (a participant's).
        forged_value = accepted.model_dump_json().encode()
        real = FED.signer(ServiceRole.ROUTER)
        stranger = RecordSigner(ServiceRole.ROUTER, FED.signing["nl.hotline"])
        producer = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), acks="all")
        await producer.start()
        try:
            status = TopicNames(settings.topics.prefix).status
            key = accepted.key().encode()
            copied = real.sign(STATUS_CONTEXT, routed.model_dump_json().encode()).encode()
            for headers in (
                [],
                [("crb-signer", real.key_id.encode()), ("crb-signature", copied)],
                [
                    ("crb-signer", stranger.key_id.encode()),
                    ("crb-signature", stranger.sign(STATUS_CONTEXT, forged_value).encode()),
                ],
            ):
                await producer.send_and_wait(status, forged_value, key=key, headers=headers)
        finally:
            await producer.stop()
        received = event(S.RECEIVED, m, c, "nl.hotline", T0 + timedelta(seconds=9))
        await publish(kafka.bootstrap, settings, [received])
        await folded_everything(settings, clock)
        assert S.RECEIVED is state_of(tracker, m, "nl.hotline")
        assert 3 == tracker.unauthenticated
        h = tracker.ledger.handovers[f"{m}/nl.hotline"]
        assert [S.ROUTED, S.RECEIVED] == [x.state for x in h.history]


async def test_a_second_instance_fences_the_first(kafka: KafkaEndpoint) -> None:
    """Two trackers with one transactional id: the newer one fences the older, which
    stops with Fenced at its next transaction instead of writing on."""
    settings = await _setup(kafka, partitions=1)
    clock = FakeClock()
    async with (
        running_tracker(settings, clock) as (_, first_task),
        running_tracker(settings, clock) as (second, second_task),
    ):
        await publish(kafka.bootstrap, settings, [event(S.ROUTED, mid(), mid(), "nl.hotline", T0)])
        await wait_until(first_task.done, what="first tracker stopped")
        with pytest.raises(Fenced):
            first_task.result()
        await wait_until(lambda: len(second.ledger) == 1, what="second tracker took the event")
        assert not second_task.done()


async def test_the_http_api_serves_the_same_views(kafka: KafkaEndpoint) -> None:
    """The API served by uvicorn on a real port, over the running tracker, returns
    the same handovers, case view and route stats as the views over its state."""
    settings = await _setup(kafka)
    clock = FakeClock()
    m1, m2, c = mid(), mid(), mid()
    async with running_tracker(settings, clock) as (tracker, _):
        await publish(
            kafka.bootstrap,
            settings,
            [
                event(S.ROUTED, m1, c, "nl.hotline", T0, **URGENT_NL),
                event(S.ROUTED, m2, c, "nl.police24", T0, **URGENT_NL),
                event(S.RECEIVED, m1, c, "nl.hotline", T0 + timedelta(seconds=90)),
            ],
        )  # fmt: skip
        await wait_until(
            lambda: state_of(tracker, m1, "nl.hotline") is S.RECEIVED and len(tracker.ledger) == 2,
            what="two handovers, one received",
        )
        clock.advance(timedelta(minutes=5))
        await wait_until(lambda: state_of(tracker, m2, "nl.police24") is S.OVERDUE, what="overdue")
        port = free_port()
        stop = asyncio.Event()
        token, record = new_token(OPERATOR, label="test", now=now())
        access = Access(lambda: {record.id: record})
        app = create_app(tracker.snapshot, access=access, ready=tracker.ready.is_set)
        api = asyncio.create_task(serve(app, "127.0.0.1", port, stop))
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
            ) as client:

                async def healthy() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get("/healthz")).status_code == 200
                    return False

                await wait_until(healthy, what="the API answering /healthz with 200")
                overdue = (await client.get("/handovers", params={"overdue": "true"})).json()
                case = (await client.get(f"/cases/{c}")).json()
                routes = (await client.get("/routes")).json()
                bad = await client.get("/handovers", params={"jurisdiction": "ZZ"})
        finally:
            stop.set()
            await api
        state = tracker.snapshot()
    assert [h.key for h in select(state, overdue=True)] == [h["key"] for h in overdue["handovers"]]
    assert [f"{m2}/nl.police24"] == [h["key"] for h in overdue["handovers"]]
    assert [h.model_dump(mode="json") for h in by_case(state, c)] == [
        h["handover"] for h in case["handovers"]
    ]
    assert [r.model_dump(mode="json") for r in route_stats(state)] == routes["routes"]
    assert 90.0 in [r["median_seconds_to_receipt"] for r in routes["routes"]]
    assert 422 == bad.status_code


def test_cli_status_and_handovers_read_the_tracker_topic(
    kafka: KafkaEndpoint,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``crb handovers`` and ``crb status`` rebuild the state from the tracker topic
    (no tracker running; only records the tracker signed, checked with the directory)
    and show what the tracker committed."""
    import json

    from broker.cli import main

    clock = FakeClock()
    m1, m2, c = mid(), mid(), mid()

    async def scenario() -> tuple[Settings, list[Handover]]:
        settings = await _setup(kafka)
        async with running_tracker(settings, clock) as (tracker, _):
            await publish(
                kafka.bootstrap,
                settings,
                [
                    event(S.ROUTED, m1, c, "nl.hotline", T0, **URGENT_NL),
                    event(S.ROUTED, m2, c, "de.police", T0, **HIGH_DE),
                ],
            )  # fmt: skip
            await wait_until(lambda: len(tracker.ledger) == 2, what="two handovers")
            clock.advance(timedelta(minutes=5))
            await wait_until(
                lambda: state_of(tracker, m1, "nl.hotline") is S.OVERDUE, what="overdue"
            )
            return settings, tracker.snapshot()

    settings, state = asyncio.run(scenario())
    capsys.readouterr()  # the in-process tracker's logs
    monkeypatch.delenv("CRB_DEBUG", raising=False)
    for name, value in login_env(kafka.bootstrap).items():
        monkeypatch.setenv(name, value)
    FED.fed.write(tmp_path)
    monkeypatch.setenv("CRB_HOME", str(tmp_path))
    common = ["--bootstrap", kafka.bootstrap, "--prefix", settings.topics.prefix]

    def crb(*argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = crb("handovers", "--overdue", "--json", *common)
    assert 0 == code, err
    assert [f"{m1}/nl.hotline"] == [h["key"] for h in json.loads(out)["handovers"]]
    code, out, _ = crb("handovers", "--jurisdiction", "de", *common)
    assert 0 == code
    assert f"{m2}/de.police" in out
    assert "1 handovers" in out
    code, out, _ = crb("status", str(c), "--json", *common)
    assert 0 == code
    body = json.loads(out)
    assert "case" == body["kind"]
    assert [h.model_dump(mode="json") for h in by_case(state, c)] == [
        h["handover"] for h in body["handovers"]
    ]
    code, out, _ = crb("status", str(m1), *common)
    assert 0 == code
    assert "OVERDUE" in out
    assert "overdue  reason=receipt_overdue" in out
    code, _, err = crb("status", str(mid()), *common)
    assert 1 == code
    assert "no handover" in err


async def test_end_to_end_with_the_real_router(kafka: KafkaEndpoint) -> None:
    """Router and tracker together: an urgent NL referral fans out to the NL hotline
    and the 24/7 police contact (routed, with priority and jurisdiction from the
    signed header); the hotline's signed receipt, forwarded by the router, moves its
    handover to received; the police one, never receipted, goes overdue and is
    escalated to the directory's escalation recipient."""

    from broker.router import Router
    from tests._fed import now

    settings = await _setup(kafka)
    fed = FED
    names = TopicNames(settings.topics.prefix)
    clock = FakeClock(now())
    router = Router(settings, fed.directory(), signer=fed.signer(ServiceRole.ROUTER))
    stop_router = asyncio.Event()
    router_task = asyncio.create_task(router.run(stop_router))
    try:
        async with running_tracker(settings, clock) as (tracker, _):
            original = fed.referral(priority=Priority.URGENT)
            producer = AIOKafkaProducer(**kafka_kwargs(kafka.bootstrap), enable_idempotence=True)
            await producer.start()
            try:
                await producer.send_and_wait(names.outbox("de.hotline"), original, key=b"k")
                await wait_until(
                    lambda: len(tracker.ledger) == 2, what="two routed handovers", timeout_s=60
                )
                [hot, police] = _sorted(tracker.snapshot())
                assert ("nl.hotline", "nl.police24") == (hot.recipient, police.recipient)
                assert (Priority.URGENT, "NL") == (police.priority, police.jurisdiction)
                message_id = hot.message_id
                receipt = fed.receipt(original, by="nl.hotline")
                await producer.send_and_wait(names.outbox("nl.hotline"), receipt, key=b"k")
            finally:
                await producer.stop()
            await wait_until(
                lambda: state_of(tracker, message_id, "nl.hotline") is S.RECEIVED,
                what="receipt",
                timeout_s=60,
            )
            assert 2 == len(tracker.ledger)  # the receipt is not a handover of its own
            # The router stamps routed with its real time; the fake clock starts there.
            assert police.routed_at is not None
            clock.now = police.routed_at + timedelta(minutes=5)
            await wait_until(
                lambda: state_of(tracker, message_id, "nl.police24") is S.OVERDUE, what="overdue"
            )
            clock.advance(timedelta(minutes=5))
            await wait_until(
                lambda: state_of(tracker, message_id, "nl.police24") is S.ESCALATED,
                what="escalated",
            )
            police = tracker.ledger.handovers[f"{message_id}/nl.police24"]
            assert fed.directory().rules.escalation_recipient == police.escalated_to
            assert S.RECEIVED is state_of(tracker, message_id, "nl.hotline")
    finally:
        stop_router.set()
        await asyncio.wait_for(router_task, 60)


def test_crb_tracker_run_serves_the_api_and_stops_on_sigterm(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """The real ``crb tracker run --http-port`` executable: folds the status topic,
    serves /handovers and /routes over HTTP on 127.0.0.1 to tokens from ``crb token
    issue`` (anonymous 401, a participant sees only its own handovers), refuses a
    token revoked while it runs, and exits 0 on SIGTERM."""
    import signal
    import subprocess
    import sys

    settings = asyncio.run(_setup(kafka))
    FED.fed.write(tmp_path)  # the directory it follows, its root key, the tracker's key
    m, c = mid(), mid()
    asyncio.run(
        publish(
            kafka.bootstrap,
            settings,
            [
                event(S.ROUTED, m, c, "nl.hotline", T0, **URGENT_NL),
                event(S.RECEIVED, m, c, "nl.hotline", T0 + timedelta(seconds=12)),
            ],
        )
    )
    port = free_port()
    env = {
        **os.environ,
        **login_env(kafka.bootstrap),
        "CRB_TRACKER__GROUP_ID": f"{settings.topics.prefix}-tracker",
        "CRB_HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("crb")),
            "tracker",
            "run",
            "--bootstrap",
            kafka.bootstrap,
            "--prefix",
            settings.topics.prefix,
            "--http-port",
            str(port),
            "--escalate-to",
            ESCALATION,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    body: dict[str, object] = {}
    base = f"http://127.0.0.1:{port}"

    def token(*argv: str) -> str:
        """``crb token issue ARGV`` as an operator would run it: the token on stdout."""
        done = subprocess.run(
            [str(Path(sys.executable).with_name("crb")), "token", "issue", *argv],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return done.stdout.decode().strip()

    operator, police = token("--operator"), token("--participant", "nl.police")
    hotline = token("--participant", "nl.hotline", "--label", "nl case system")

    def get(path: str, bearer: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return httpx.get(base + path, headers=headers, timeout=5)

    async def api_shows_the_receipt() -> None:
        async with httpx.AsyncClient(
            base_url=base, timeout=2, headers={"Authorization": f"Bearer {operator}"}
        ) as client:

            async def shown() -> bool:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                with contextlib.suppress(httpx.TransportError):
                    got = (await client.get("/handovers")).json()
                    if got["count"] == 1 and got["handovers"][0]["handover"]["state"] == "received":
                        body.update(got)
                        return True
                return False

            await wait_until(
                shown, what="the API showing the received handover", timeout_s=60, interval_s=0.2
            )

    try:
        asyncio.run(api_shows_the_receipt())
        assert 1 == body.get("count"), "the API never showed the received handover"
        routes = get("/routes", operator).json()["routes"]
        assert [12.0] == [r["median_seconds_to_receipt"] for r in routes]
        anonymous = get("/handovers", None)
        assert (401, "Bearer") == (anonymous.status_code, anonymous.headers["WWW-Authenticate"])
        assert 200 == get("/healthz", None).status_code
        assert 1 == get("/handovers", hotline).json()["count"]  # its own handover
        assert 0 == get("/handovers", police).json()["count"]  # not its handover
        assert 404 == get(f"/cases/{c}", police).status_code
        # Revoked while the tracker runs: refused from the next request on.
        listed = subprocess.run(
            [str(Path(sys.executable).with_name("crb")), "token", "list", "--json"],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        ids = {t["label"]: t["id"] for t in json.loads(listed.stdout)["tokens"]}
        subprocess.run(
            [str(Path(sys.executable).with_name("crb")), "token", "revoke",
             ids["nl case system"]],
            env=env, check=True, timeout=60, capture_output=True,
        )  # fmt: skip
        revoked = get("/handovers", hotline)
        assert 401 == revoked.status_code
        assert "revoked" in revoked.json()["detail"]
        assert 200 == get("/handovers", operator).status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert 0 == proc.returncode, err.decode()
    assert b"tracker_stopped" in err


async def test_a_quiet_handover_is_forgotten_after_its_retention(kafka: KafkaEndpoint) -> None:
    """A received handover with nothing pending, quiet for longer than the retention,
    is tombstoned on the tracker and status topics and leaves the tracker; one still
    waiting for its receipt stays; a tracker rebuilt from the topic does not see the
    forgotten one again."""
    settings = await _setup(kafka)
    section = settings.tracker.model_copy(
        update={"handover_retention": timedelta(days=30), "retention_check_s": 0.1}
    )
    settings = settings.model_copy(update={"tracker": section})
    clock = FakeClock()
    done, open_ = mid(), mid()
    case = mid()
    events = [
        event(S.ROUTED, done, case, "nl.hotline", T0),
        event(S.RECEIVED, done, case, "nl.hotline", T0 + timedelta(seconds=3)),
        event(S.ROUTED, open_, case, "nl.hotline", T0, priority=Priority.ROUTINE),
    ]
    async with running_tracker(settings, clock) as (tracker, _):
        await publish(kafka.bootstrap, settings, events)
        await wait_until(lambda: len(tracker.ledger) == 2, what="two handovers")
        await wait_until(
            lambda: state_of(tracker, done, "nl.hotline") is S.RECEIVED, what="received"
        )
        clock.advance(timedelta(days=31))
        await wait_until(
            lambda: state_of(tracker, done, "nl.hotline") is None, what="the quiet one forgotten"
        )
        assert state_of(tracker, open_, "nl.hotline") is not None, "still pending, kept"
        await folded_everything(settings, clock)
    stored = await read_state(
        KafkaClients(settings.kafka), TopicNames(settings.topics.prefix).tracker, FED.directory()
    )
    assert f"{done}/nl.hotline" not in stored
    assert f"{open_}/nl.hotline" in stored
    async with running_tracker(settings, clock) as (again, _):
        assert state_of(again, done, "nl.hotline") is None
        assert state_of(again, open_, "nl.hotline") is not None
