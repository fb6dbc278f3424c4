"""Receiving without a broker: the state store, the sinks (HTTP retries against
``httpx.MockTransport`` and a real local server) and the receiver's per-record
pipeline. Delivery claims against Kafka itself: test_adapter_flow.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from structlog.testing import capture_logs

import keys
from adapters import (
    Delivery,
    DeliveryError,
    FolderSink,
    HttpSink,
    Identity,
    Outbox,
    Outcome,
    ReceivedMessage,
    Receiver,
    Sender,
    StateStore,
)
from adapters.kafka import Record
from keys import LiveDirectory, OfferOutcome, parse
from keys import open as open_envelope
from schemas import (
    Category,
    HandlingCode,
    MessageType,
    ParticipantStatus,
    Priority,
    Receipt,
    uuid7,
)
from tests._fed import LiveFederation, make_referral, now
from tests.unit._adapter_kit import NAMES, FakeKafka, sender, settings


def _delivery(payload: bytes = b'{"x": 1}') -> Delivery:
    t = now()
    message = ReceivedMessage(
        message_id=uuid7(t),
        message_type=MessageType.REFERRAL,
        sender="de.hotline",
        recipient="nl.hotline",
        case_id=uuid7(t),
        jurisdiction="NL",
        category=Category.CSAM,
        priority=Priority.ROUTINE,
        handling_code=HandlingCode.H0,
        envelope_sha256="00" * 32,
    )
    return Delivery(message, t, payload)


# --- sinks ---------------------------------------------------------------------------


async def test_folder_sink_writes_one_file_per_message_id(tmp_path: Path) -> None:
    """Delivering the same message twice leaves one complete file and no temporaries."""
    sink = FolderSink(tmp_path / "inbox")
    d = _delivery()
    await sink.deliver(d)
    await sink.deliver(d)
    assert [f"{d.message_id}.json"] == [p.name for p in (tmp_path / "inbox").iterdir()]
    doc = json.loads(sink.path_for(d.message_id).read_bytes())
    assert {"x": 1} == doc["referral"]
    assert ("de.hotline", str(d.message.case_id)) == (doc["sender"], doc["case_id"])


async def test_folder_sink_failure_is_retriable(tmp_path: Path) -> None:
    """An unwritable inbox folder (here: a file in its place) asks for a retry later."""
    (tmp_path / "inbox").write_bytes(b"")
    with pytest.raises(DeliveryError) as info:
        await FolderSink(tmp_path / "inbox").deliver(_delivery())
    assert info.value.retriable


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
async def test_folder_sink_full_or_read_only_is_retriable_and_says_where_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A full disk, an exhausted quota or a read-only mount is the folder's state, not
    the message's fault: a retriable error (the offset is kept, never a quarantine)
    whose text names the folder and what the operating system said."""

    def refuse(items: list[tuple[Path, bytes]]) -> None:
        raise OSError(code, os.strerror(code), str(items[0][0]))

    monkeypatch.setattr("adapters._sinks.atomic_write_many", refuse)
    folder = tmp_path / "inbox"
    with pytest.raises(DeliveryError) as info:
        await FolderSink(folder).deliver(_delivery())
    error = info.value
    assert (True, f"folder_unwritable:{errno.errorcode[code]}") == (error.retriable, error.reason)
    assert f"cannot write to {folder}: {os.strerror(code)}" == error.detail
    assert f"delivery failed (folder_unwritable:{errno.errorcode[code]}): " in str(error)


def _mock_sink(
    statuses: list[int | Exception | httpx.Response], sleeps: list[float], **kw: object
) -> HttpSink:
    calls = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        nxt = next(calls)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt if isinstance(nxt, httpx.Response) else httpx.Response(nxt)

    async def sleep(s: float) -> None:
        sleeps.append(s)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpSink("http://case.test/in", client=client, sleep=sleep, **kw)  # type: ignore[arg-type]


async def test_http_sink_retries_5xx_429_and_connection_errors_with_backoff() -> None:
    """503, 429 and a refused connection are retried with doubling delays; 201 ends it."""
    sleeps: list[float] = []
    sink = _mock_sink(
        [503, 429, httpx.ConnectError("refused"), 201], sleeps, backoff_s=0.5, backoff_max_s=1.5
    )
    with capture_logs() as logged:
        await sink.deliver(_delivery())
    assert [0.5, 1.0, 1.5] == sleeps
    assert [(1, 0.5), (2, 1.0), (3, 1.5)] == [(e["attempt"], e["wait_s"]) for e in logged]


async def test_http_sink_honours_a_numeric_retry_after_up_to_the_cap() -> None:
    """A 429 with Retry-After: 7 waits 7 s (not the 0.5 s backoff); 120 s is capped."""
    sleeps: list[float] = []
    sink = _mock_sink(
        [
            httpx.Response(429, headers={"retry-after": "7"}),
            httpx.Response(503, headers={"retry-after": "120"}),
            200,
        ],
        sleeps,
        backoff_s=0.5,
        backoff_max_s=30.0,
    )
    await sink.deliver(_delivery())
    assert [7.0, 30.0] == sleeps


async def test_http_sink_gives_up_after_bounded_attempts_as_retriable() -> None:
    """After `attempts` failures the error is retriable: the offset stays, retried later."""
    sleeps: list[float] = []
    sink = _mock_sink([500, 502, 504], sleeps, attempts=3)
    with pytest.raises(DeliveryError) as info:
        await sink.deliver(_delivery())
    assert (True, "unavailable:http_504") == (info.value.retriable, info.value.reason)
    assert 2 == len(sleeps)


async def test_http_sink_4xx_refuses_the_message_for_good() -> None:
    """A 4xx other than 429 is not retried: the message goes to quarantine."""
    sleeps: list[float] = []
    with pytest.raises(DeliveryError) as info:
        await _mock_sink([422], sleeps).deliver(_delivery())
    assert (False, "http_422") == (info.value.retriable, info.value.reason)
    assert [] == sleeps


@pytest.fixture
def case_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP server on 127.0.0.1 that fails the first POST with 503, then 204."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((dict(self.headers), body))
            self.send_response(503 if len(received) == 1 else 204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/referrals", received
    finally:
        server.shutdown()
        server.server_close()


async def test_http_sink_against_a_real_local_server(
    case_server: tuple[str, list[tuple[dict[str, str], bytes]]],
) -> None:
    """Over a real socket: the 503 is retried, the 204 is the handover; the JSON body
    carries message id, case id, sender and the referral, keyed for idempotency."""
    url, received = case_server
    sink = HttpSink(url, backoff_s=0.01)
    d = _delivery(b'{"reporter": {"reference": "R-1"}}')
    try:
        await sink.deliver(d)
    finally:
        await sink.aclose()
    assert 2 == len(received)
    headers, body = received[-1]
    doc = json.loads(body)
    assert (str(d.message_id), str(d.message.case_id), "de.hotline") == (
        doc["message_id"],
        doc["case_id"],
        doc["sender"],
    )
    assert {"reporter": {"reference": "R-1"}} == doc["referral"]
    assert str(d.message_id) == {k.lower(): v for k, v in headers.items()}["idempotency-key"]


# --- state store ------------------------------------------------------------------------


def test_state_store_survives_reopening_and_keeps_no_payload(tmp_path: Path) -> None:
    """A recorded delivery and its receipt mark are there after reopening the store."""
    fed = LiveFederation()
    opened = open_envelope(
        fed.referral(),
        recipient="nl.hotline",
        opening_keys=[fed.opening["nl.hotline"]],
        directory=fed.directory(),
        now=now(),
    )
    from adapters import ReceivedMessage

    m = ReceivedMessage.from_opened(opened)
    t = now()
    with StateStore(tmp_path) as store:
        store.record_delivered(m, at=t)
        store.record_delivered(m, at=t + timedelta(hours=1))  # ignored: first one wins
        store.mark_receipt_sent(m.message_id, uuid7(t), at=t)
    with StateStore(tmp_path) as store:
        got = store.get(m.message_id)
        assert got is not None
        assert (m, t) == (got.message, got.delivered_at)
        assert got.receipt_sent_at == t
        assert 1 == store.count()
        assert store.get(uuid7(t)) is None
    raw = (tmp_path / "adapter.sqlite3").read_bytes()
    assert b"Synthetic" not in raw  # summary text never stored


# --- receiver pipeline (no Kafka) -------------------------------------------------------


class CountingSink:
    def __init__(self, inner: FolderSink, fail: list[DeliveryError] | None = None) -> None:
        self.inner = inner
        self.calls: list[UUID] = []
        self.fail = fail or []

    async def deliver(self, delivery: Delivery) -> None:
        self.calls.append(delivery.message_id)
        if self.fail:
            raise self.fail.pop(0)
        await self.inner.deliver(delivery)

    def forget(self, message_ids: list[UUID]) -> int:
        return self.inner.forget(message_ids)


class Crash(Exception):
    pass


def _receiver(
    fed: LiveFederation, tmp_path: Path, kafka: FakeKafka, sink: CountingSink, crash_at: str = ""
) -> tuple[Receiver, StateStore]:
    store = StateStore(tmp_path / "state")

    def hook(stage: str, _mid: UUID) -> None:
        if stage == crash_at:
            raise Crash(stage)

    s = sender(fed, "nl.hotline", kafka)
    return Receiver(kafka, NAMES, settings(), s, sink, store, hook=hook), store


def _record(value: bytes, offset: int = 0, at: datetime | None = None) -> Record:
    ts = at if at is not None else now()
    return Record("unit.inbox.nl.hotline", 0, offset, None, value, (), int(ts.timestamp() * 1000))


async def test_delivered_once_with_one_receipt_over_the_exact_bytes(tmp_path: Path) -> None:
    """A referral is delivered, then a receipt for its exact bytes goes to the sender;
    the same record again is a duplicate: not delivered, no second receipt."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = CountingSink(FolderSink(tmp_path / "inbox"))
    receiver, store = _receiver(fed, tmp_path, kafka, sink)
    env = fed.referral()
    assert Outcome.DELIVERED == await receiver.handle(_record(env))
    assert Outcome.DUPLICATE == await receiver.handle(_record(env, 1))
    assert 1 == len(sink.calls)
    (receipt_rec,) = kafka.sent
    assert "unit.outbox.nl.hotline" == receipt_rec.topic
    opened = open_envelope(
        receipt_rec.value,
        recipient="de.hotline",
        opening_keys=[fed.opening["de.hotline"]],
        directory=fed.directory(),
        now=now(),
    )
    assert isinstance(opened.message, Receipt)
    assert hashlib.sha256(env).hexdigest() == opened.message.envelope_sha256
    assert parse(env).header.message_id == opened.header.in_reply_to
    store.close()


async def test_crash_after_recording_sends_the_receipt_on_redelivery(tmp_path: Path) -> None:
    """Killed after delivery was recorded but before the receipt: the redelivered record
    is not delivered again, and the one receipt is sent then."""
    fed = LiveFederation()
    sink = CountingSink(FolderSink(tmp_path / "inbox"))
    env = fed.referral()
    first, store = _receiver(fed, tmp_path, FakeKafka(), sink, crash_at="recorded")
    with pytest.raises(Crash):
        await first.handle(_record(env))
    store.close()
    kafka = FakeKafka()
    second, store = _receiver(fed, tmp_path, kafka, sink)
    assert Outcome.DUPLICATE == await second.handle(_record(env))
    assert 1 == len(sink.calls)
    assert 1 == len(kafka.sent)
    assert 1 == len(list((tmp_path / "inbox").iterdir()))
    store.close()


async def test_unopenable_records_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    """Not for us, tampered, garbage, header/payload disagreement: each is quarantined
    with its reason code, nothing is delivered, no receipt is sent."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = CountingSink(FolderSink(tmp_path / "inbox"))
    receiver, store = _receiver(fed, tmp_path, kafka, sink)
    for_police = fed.referral(jurisdiction="DE")  # de.hotline -> ... DE: not nl.hotline
    tampered = bytearray(fed.referral())
    tampered[-100] ^= 1
    mismatch = _mismatching_referral(fed)
    for i, value in enumerate([for_police, bytes(tampered), b"garbage", mismatch]):
        assert Outcome.QUARANTINED == await receiver.handle(_record(value, i))
    reasons = [q["reason"] for q in store.quarantined()]
    assert ["not_a_recipient", "bad_signature", "malformed", "payload_mismatch"] == reasons
    assert [] == sink.calls
    assert [] == kafka.sent
    assert b"garbage" == (store.quarantine_dir / "unit.inbox.nl.hotline-0-2.crbe").read_bytes()
    store.close()


def _mismatching_referral(fed: LiveFederation) -> bytes:
    """A correctly signed envelope whose header says urgent while the payload says routine."""
    from keys import Draft, seal
    from schemas import HandlingCode
    from tests._fed import make_referral

    t = now()
    ref = make_referral()
    draft = Draft(
        sender="de.hotline",
        case_id=uuid7(t),
        jurisdiction="NL",
        category=ref.incident.type,
        priority=Priority.HIGH,
        handling_code=HandlingCode.H0,
    )
    return seal(draft, ref, signing_key=fed.signing["de.hotline"], directory=fed.directory(), now=t)


async def test_sink_outage_is_raised_and_refusal_is_quarantined(tmp_path: Path) -> None:
    """A retriable sink failure propagates (the loop keeps the offset); a refusal
    quarantines with the sink's reason; neither records a delivery or sends a receipt."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = CountingSink(
        FolderSink(tmp_path / "inbox"),
        fail=[
            DeliveryError("unavailable:http_503", retriable=True),
            DeliveryError("http_422", retriable=False),
        ],
    )
    receiver, store = _receiver(fed, tmp_path, kafka, sink)
    env = fed.referral()
    with pytest.raises(DeliveryError):
        await receiver.handle(_record(env))
    assert Outcome.QUARANTINED == await receiver.handle(_record(env))
    assert [("sink_refused", "http_422")] == [
        (q["reason"], q["detail"]) for q in store.quarantined()
    ]
    assert 0 == store.count()
    assert [] == kafka.sent
    assert Outcome.DELIVERED == await receiver.handle(_record(env))
    store.close()


async def test_old_inbox_record_opens_at_its_kafka_time(tmp_path: Path) -> None:
    """An envelope 30 h old (adapter was down) still opens: verified at the record's
    timestamp; without a timestamp it would be stale."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = CountingSink(FolderSink(tmp_path / "inbox"))
    receiver, store = _receiver(fed, tmp_path, kafka, sink)
    t = now() - timedelta(hours=30)
    env = fed.referral(at=t)
    stale = Record("unit.inbox.nl.hotline", 0, 0, None, fed.referral(at=t))
    assert Outcome.QUARANTINED == await receiver.handle(stale)
    assert ["stale"] == [q["reason"] for q in store.quarantined()]
    rec = _record(env, 1, at=t + timedelta(seconds=1))
    assert Outcome.DELIVERED == await receiver.handle(rec)
    store.close()


# --- a sender revoked while its message was in flight -----------------------------------


def _outbox(kafka: FakeKafka, participant: str) -> Outbox:
    return Outbox(kafka, NAMES.outbox(participant), deadline_s=5.0)


def _revoked_meanwhile(fed: LiveFederation, revoked_at: datetime) -> tuple[LiveDirectory, Identity]:
    """nl.hotline following a live directory in which de.hotline was then revoked
    (every key) and suspended, as ``crb participant revoke`` publishes it."""
    live = LiveDirectory(fed.directory(), root=fed.root.verify_key)
    me = Identity("nl.hotline", fed.signing["nl.hotline"], (fed.opening["nl.hotline"],), live)
    revoked = keys.revoke(fed.directory(), "de.hotline", key_id=None, now=revoked_at)
    revoked = keys.set_status(revoked, "de.hotline", ParticipantStatus.SUSPENDED, now=revoked_at)
    assert live.offer(fed.fed.signed(revoked).to_json()).outcome is OfferOutcome.ACCEPTED
    return live, me


async def test_a_message_forwarded_before_its_sender_was_revoked_is_delivered_unanswered(
    tmp_path: Path,
) -> None:
    """The router forwarded it while the key was valid (the inbox record's time), so it
    opens and is delivered; no receipt can be sealed to a revoked sender, so none is
    sent — recorded as ``sender_revoked`` — and the record is done (not retried)."""
    fed = LiveFederation()
    t = now()
    _, me = _revoked_meanwhile(fed, t - timedelta(minutes=1))
    env = fed.referral(at=t - timedelta(minutes=3))
    forwarded_ms = int((t - timedelta(minutes=2)).timestamp() * 1000)
    kafka = FakeKafka()
    with StateStore(tmp_path / "state") as store:
        receiver = Receiver(
            kafka,
            NAMES,
            settings(),
            Sender(me, _outbox(kafka, "nl.hotline")),
            FolderSink(tmp_path / "inbox"),
            store,
        )
        record = Record(NAMES.inbox("nl.hotline"), 0, 0, None, env, timestamp_ms=forwarded_ms)
        assert Outcome.DELIVERED is await receiver.handle(record)
        assert Outcome.DUPLICATE is await receiver.handle(record)
        mid = parse(env).header.message_id
        known = store.get(mid)
        assert known is not None
        assert known.receipt_sent_at is None
        assert (known.receipt_note or "").startswith("sender_revoked at ")
    assert [] == kafka.sent, "no receipt to a revoked sender"
    assert (tmp_path / "inbox" / f"{mid}.json").exists()


async def test_a_message_forwarded_after_the_revocation_is_quarantined(tmp_path: Path) -> None:
    """Forwarded by a router that had not yet seen the revocation: the key was no longer
    valid then, so the recipient refuses it (quarantine, reason recorded) and moves on."""
    fed = LiveFederation()
    t = now()
    _, me = _revoked_meanwhile(fed, t - timedelta(minutes=2))
    env = fed.referral(at=t - timedelta(minutes=3))
    forwarded_ms = int((t - timedelta(minutes=1)).timestamp() * 1000)
    kafka = FakeKafka()
    with StateStore(tmp_path / "state") as store:
        receiver = Receiver(
            kafka,
            NAMES,
            settings(),
            Sender(me, _outbox(kafka, "nl.hotline")),
            FolderSink(tmp_path / "inbox"),
            store,
        )
        record = Record(NAMES.inbox("nl.hotline"), 0, 0, None, env, timestamp_ms=forwarded_ms)
        assert Outcome.QUARANTINED is await receiver.handle(record)
        (note,) = store.quarantined()
    assert note["reason"] in {"key_revoked", "sender_suspended"}
    assert [] == kafka.sent


def test_case_references_are_indexed_and_found(tmp_path: Path) -> None:
    """The adapter state indexes references by kind (idempotently) and finds every
    use of one; references of other cases are not returned."""
    from uuid import uuid4

    from adapters import RefKind, StateStore

    m1, m2, c1, c2 = uuid4(), uuid4(), uuid4(), uuid4()
    with StateStore(tmp_path / "state") as store:
        store.record_reference("NL-2026-0042", RefKind.OWN, m1, c1)
        store.record_reference("NL-2026-0042", RefKind.OWN, m1, c1)  # again: no duplicate
        store.record_reference("NL-2026-0042", RefKind.SENDER, m2, c1)
        store.record_reference("DE-7", RefKind.RECEIVER, m2, c2)
        found = store.find_reference("NL-2026-0042")
        assert sorted((e.kind, e.case_id) for e in found) == sorted(
            [(RefKind.OWN, c1), (RefKind.SENDER, c1)]
        )
        assert [] == store.find_reference("nl-2026-0042")  # exact match
    with StateStore(tmp_path / "state") as again:  # durable
        assert [c2] == [e.case_id for e in again.find_reference("DE-7")]


def test_a_sidecar_keeps_the_reference() -> None:
    """A pending sidecar written and read back keeps each referral's reference (and
    reads an older sidecar without one)."""
    import json
    from datetime import UTC, datetime
    from uuid import uuid4

    from adapters._dropfolder import _decode, _encode
    from adapters._sender import Sealed

    sealed = Sealed(uuid4(), uuid4(), datetime(2026, 1, 1, tzinfo=UTC), b"env", "REF-1")
    assert [(2, sealed)] == _decode(_encode([(2, sealed)]), where="x")
    old = json.loads(_encode([(None, sealed)]))
    del old["items"][0]["reference"]
    [(_, read)] = _decode(json.dumps(old).encode(), where="x")
    assert read.reference is None


# --- a batch at once (the Kafka loop's fast path) ----------------------------------------


class BatchSink:
    """A folder sink that counts its batch writes and the messages in them."""

    def __init__(self, folder: Path) -> None:
        self.inner = FolderSink(folder)
        self.batches: list[list[UUID]] = []

    async def deliver(self, delivery: Delivery) -> None:
        await self.deliver_batch([delivery])

    async def deliver_batch(self, deliveries: list[Delivery]) -> None:
        self.batches.append([d.message_id for d in deliveries])
        await self.inner.deliver_batch(deliveries)


def _batch_receiver(
    fed: LiveFederation, tmp_path: Path, kafka: FakeKafka, sink: BatchSink, crash_at: str = ""
) -> tuple[Receiver, StateStore]:
    store = StateStore(tmp_path / "state")
    seen: list[str] = []

    def hook(stage: str, _mid: UUID) -> None:
        seen.append(stage)
        if stage == crash_at and seen.count(stage) == 2:  # in the middle of the batch
            raise Crash(stage)

    return Receiver(kafka, NAMES, settings(), sender(fed, "nl.hotline", kafka), sink, store,
                    hook=hook), store  # fmt: skip


async def test_a_batch_is_one_sink_write_one_transaction_and_one_receipt_each(
    tmp_path: Path,
) -> None:
    """Five referrals, one of them twice and a garbage record, in one poll: one sink
    write of the five, five records, five receipts, the copy a duplicate, the
    garbage quarantined; the outcomes are in record order."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = BatchSink(tmp_path / "inbox")
    receiver, store = _batch_receiver(fed, tmp_path, kafka, sink)
    envs = [fed.referral() for _ in range(5)]
    values = [*envs[:3], envs[0], b"garbage", *envs[3:]]
    outcomes = await receiver.handle_batch([_record(v, i) for i, v in enumerate(values)])
    D, Q, X = Outcome.DELIVERED, Outcome.QUARANTINED, Outcome.DUPLICATE
    assert [D, D, D, X, Q, D, D] == outcomes
    assert [5] == [len(b) for b in sink.batches]
    assert 5 == store.count()
    assert 5 == len(kafka.sent)  # receipts
    assert 5 == len(list((tmp_path / "inbox").glob("*.json")))
    assert ["malformed"] == [q["reason"] for q in store.quarantined()]
    assert (5, 1, 1) == (receiver.stats.delivered, receiver.stats.duplicates,
                         receiver.stats.quarantined)  # fmt: skip
    store.close()


@pytest.mark.parametrize("crash_at", ["delivered", "recorded", "receipt_sent"])
async def test_killed_in_the_middle_of_a_batch_nothing_is_lost_or_doubled(
    tmp_path: Path, crash_at: str
) -> None:
    """The receiver dies in the middle of a batch (after the sink write, after the
    state transaction, after some receipts); Kafka delivers the batch again to a
    new receiver: every message is recorded once, one file each, and each referral
    has exactly one receipt id (a receipt sent twice carries the same derived id,
    which the router refuses as a duplicate)."""
    fed = LiveFederation()
    envs = [fed.referral() for _ in range(4)]
    records = [_record(v, i) for i, v in enumerate(envs)]
    first_kafka = FakeKafka()
    first, store = _batch_receiver(fed, tmp_path, first_kafka, BatchSink(tmp_path / "inbox"),
                                   crash_at)  # fmt: skip
    with pytest.raises(Crash):
        await first.handle_batch(records)
    store.close()
    kafka = FakeKafka()
    second, store = _batch_receiver(fed, tmp_path, kafka, BatchSink(tmp_path / "inbox"))
    await second.handle_batch(records)
    assert 4 == store.count()
    assert 4 == len(list((tmp_path / "inbox").glob("*.json")))
    receipt_ids = {parse(s.value).header.message_id for s in [*first_kafka.sent, *kafka.sent]}
    assert 4 == len(receipt_ids)
    for env in envs:
        got = store.get(parse(env).header.message_id)
        assert got is not None
        assert got.receipt_sent_at is not None
    store.close()


async def test_what_passed_its_delete_after_date_is_purged_but_stays_a_duplicate(
    tmp_path: Path,
) -> None:
    """A delivered referral whose delete_after has passed: its file and its indexed
    reference are deleted, the bare delivery record stays — so Kafka delivering it
    again is still a duplicate, never delivered anew. Others are untouched."""
    fed, kafka = LiveFederation(), FakeKafka()
    sink = CountingSink(FolderSink(tmp_path / "inbox"))
    receiver, store = _receiver(fed, tmp_path, kafka, sink)
    today = now().date()

    def sealed(days: int) -> tuple[bytes, str]:
        referral = make_referral().model_copy(update={"delete_after": today + timedelta(days=days)})
        env = fed.fed.seal_referral("de.hotline", referral, jurisdiction="NL", now=now())
        return env, referral.reporter.reference

    (soon, soon_ref), (later, later_ref) = sealed(1), sealed(400)
    assert Outcome.DELIVERED == await receiver.handle(_record(soon, 0))
    assert Outcome.DELIVERED == await receiver.handle(_record(later, 1))
    soon_id, later_id = parse(soon).header.message_id, parse(later).header.message_id
    inbox = FolderSink(tmp_path / "inbox")
    assert 0 == receiver.purge_expired(), "nothing is due yet"
    receiver.clock = lambda: now() + timedelta(days=2)
    assert 1 == receiver.purge_expired()
    assert not inbox.path_for(soon_id).exists()
    assert inbox.path_for(later_id).exists()
    assert [] == store.find_reference(soon_ref)
    assert [later_id] == [r.message_id for r in store.find_reference(later_ref)]
    assert Outcome.DUPLICATE == await receiver.handle(_record(soon, 2))
    assert 2 == len(sink.calls), "not delivered again"
    assert 0 == receiver.purge_expired()
    # Past record_retention (90 days) the bare record goes too; the later referral,
    # whose content is still there, stays.
    assert store.get(soon_id) is not None
    receiver.clock = lambda: now() + timedelta(days=91)
    receiver.purge_expired()
    assert store.get(soon_id) is None
    assert store.get(later_id) is not None
    store.close()
