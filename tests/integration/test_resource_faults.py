"""Resource faults at the adapter's edges, against the real Kafka (issue 15, item 5).

- The receiving folder's disk is full, or read-only (a real tmpfs: ``ENOSPC``,
  ``EROFS``): nothing is acknowledged, one clear error, retries with backoff, and
  everything is delivered once when the folder can be written again.
- The case system's HTTP endpoint refuses connections, then answers 503, then 201:
  backoff grows and is capped, no receipt before the 2xx, one 2xx per message.
- Kafka unreachable when the drop folder sends: the file is kept and the drop folder
  says so; once Kafka answers it is sent once.

Time is compressed through the retry settings (small base and cap), so an outage
of many retry rounds takes seconds. Every wait ends on a condition — files,
committed offsets, log events, requests the case system saw — with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from structlog.testing import capture_logs

from adapters import (
    AdapterSettings,
    Delivery,
    DeliveryError,
    DropFolder,
    FolderSink,
    HttpSink,
    Identity,
    Outbox,
    ReceivedMessage,
    Receiver,
    RetryPolicy,
    Sender,
    Sink,
    StateStore,
)
from adapters.kafka import KafkaClients, Partition, Record
from broker import topics
from broker.settings import Settings
from keys import open as open_envelope
from keys import parse
from schemas import TopicNames
from tests._cli import crb
from tests._fed import LiveFederation, make_referral, now, settings_for, unique_prefix
from tests._kafka import kafka_kwargs, login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import (
    free_port,
    read_all,
    running,
    send_raw,
    wait_committed,
    wait_until,
)

pytestmark = pytest.mark.kafka

Event = MutableMapping[str, Any]

FAST = RetryPolicy(initial_s=0.05, max_s=0.4)
"""The receiver's retry policy here: 0.05, 0.1, 0.2, 0.4, 0.4, ... s."""

NEEDS_MOUNT = (
    "needs to mount a small tmpfs (root with CAP_SYS_ADMIN) for a real full or read-only "
    "file system; chmod is no substitute, root ignores file modes"
)


# --- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test if mounting is not
    permitted); unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        pytest.skip(f"{NEEDS_MOUNT} (no `mount` command)")
    if done.returncode != 0:
        pytest.skip(f"{NEEDS_MOUNT}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], timeout=30, check=True)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], timeout=30, check=True)


def _fill(folder: Path) -> Path:
    """Write ``folder/filler.bin`` until the file system says ``ENOSPC``."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)


def _delivered(folder: Path) -> Counter[UUID]:
    """The message files in ``folder`` (temporaries and the filler are not)."""
    return Counter(UUID(p.stem) for p in folder.glob("*.json") if not p.name.startswith("."))


def _events(logged: list[Event], name: str) -> list[Event]:
    return [e for e in logged if e["event"] == name]


async def _committed(bootstrap: str, group_id: str, topic: str) -> dict[Partition, int]:
    """What ``group_id`` has committed on ``topic`` (nothing: ``{}``)."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(bootstrap))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {
        Partition(tp.topic, tp.partition): m.offset
        for tp, m in offsets.items()
        if tp.topic == topic and m.offset >= 0
    }


def _answered(receipts: list[Record]) -> Counter[UUID]:
    """How many receipts answer each message id (read from the signed clear header)."""
    replies = [parse(r.value or b"").header.in_reply_to for r in receipts]
    return Counter(m for m in replies if m is not None)


async def _setup(kafka: KafkaEndpoint) -> tuple[Settings, LiveFederation, TopicNames]:
    """A federation with its topics, and adapter settings whose group is this test's."""
    fed = LiveFederation()
    prefix = unique_prefix()
    base = settings_for(kafka.bootstrap, prefix)
    adapter = AdapterSettings(group_id_prefix=f"{prefix}-adapter", poll_timeout_ms=200)
    settings = base.model_copy(update={"adapter": adapter})
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    return settings, fed, TopicNames(prefix)


def _identity(fed: LiveFederation, pid: str) -> Identity:
    return Identity(pid, fed.signing[pid], (fed.opening[pid],), fed.directory())


async def _referrals_in_inbox(
    kafka: KafkaEndpoint, fed: LiveFederation, names: TopicNames, n: int
) -> tuple[set[UUID], dict[Partition, int]]:
    """``n`` referrals from de.hotline in nl.hotline's inbox, as the router forwards
    them (the exact envelope bytes); their ids and the offsets that commit them all."""
    inbox = names.inbox("nl.hotline")
    envelopes = [fed.referral() for _ in range(n)]
    for envelope in envelopes:
        await send_raw(kafka.bootstrap, inbox, envelope)
    return {parse(e).header.message_id for e in envelopes}, {Partition(inbox, 0): n}


@contextlib.asynccontextmanager
async def _receiving(
    settings: Settings, fed: LiveFederation, sink: Sink, state: Path
) -> AsyncIterator[Receiver]:
    """nl.hotline's inbox loop (``Receiver.run``) into ``sink``, with the FAST retry
    policy; yielded once it has its partitions, stopped and awaited on exit."""
    names = TopicNames(settings.topics.prefix)
    clients = KafkaClients(settings.kafka)
    with StateStore(state) as store:
        async with Outbox.of(clients, names, "nl.hotline", settings.adapter) as outbox:
            sender = Sender(_identity(fed, "nl.hotline"), outbox)
            receiver = Receiver(clients, names, settings.adapter, sender, sink, store, retry=FAST)
            ready = asyncio.Event()

            async def run(stop: asyncio.Event) -> None:
                await receiver.run(stop, ready=ready)

            async with running(run, ready, "nl.hotline's inbox loop"):
                yield receiver


def _assert_backoff(waits: list[float], policy: RetryPolicy) -> None:
    """The waits are the policy's, one retry after another: growing, then capped."""
    assert [policy.delay(n) for n in range(1, len(waits) + 1)] == waits
    assert waits[0] < waits[-1] == policy.max_s


# --- 1. the receiving folder full or read-only ------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "cause"),
    [
        ("full", "ENOSPC", "No space left on device"),
        ("read_only", "EROFS", "Read-only file system"),
    ],
)
async def test_inbox_folder_full_or_read_only_holds_back_then_delivers_once(
    kafka: KafkaEndpoint, tmp_path: Path, fault: str, code: str, cause: str
) -> None:
    """With the inbox folder's file system full (a filler file, real ENOSPC) or
    remounted read-only (real EROFS), three referrals are not acknowledged over many
    retry rounds: no offset committed, no receipt produced, no file, nothing
    quarantined; one error names the folder and the cause, and the waits grow to the
    cap. Once the folder can be written (filler deleted / remounted rw) each message
    is one file with one receipt, every offset is committed, and the stall ends in
    one ``inbox_resumed``."""
    settings, fed, names = await _setup(kafka)
    ids, ends = await _referrals_in_inbox(kafka, fed, names, 3)
    inbox = names.inbox("nl.hotline")
    folder = tmp_path / "inbox"
    with _tmpfs(folder, "512k"), capture_logs() as logged:
        filler = _fill(folder) if fault == "full" else None
        if fault == "read_only":
            _remount(folder, "ro")
        sink = FolderSink(folder)
        async with _receiving(settings, fed, sink, tmp_path / "state") as receiver:
            await wait_until(  # or anything taken or refused meanwhile (asserted below)
                lambda: (
                    len(_events(logged, "inbox_retry_later")) >= 8
                    or receiver.stats.delivered + receiver.stats.quarantined > 0
                ),
                what=f"eight retry rounds on the {fault} inbox folder",
                timeout_s=60,
            )
            # Many rounds later: nothing acknowledged, nothing refused.
            assert {} == await _committed(kafka.bootstrap, receiver.group_id, inbox)
            assert [] == await read_all(kafka.bootstrap, names.outbox("nl.hotline"))
            assert Counter() == _delivered(folder)
            assert (0, 0) == (receiver.stats.delivered, receiver.stats.quarantined)
            if filler is not None:
                filler.unlink()  # space returns
            else:
                _remount(folder, "rw")
            await wait_committed(
                kafka.bootstrap, receiver.group_id, ends, what="every referral committed"
            )
            stats = receiver.stats
        receipts = await read_all(kafka.bootstrap, names.outbox("nl.hotline"))
        assert Counter(dict.fromkeys(ids, 1)) == _delivered(folder)
        assert Counter(dict.fromkeys(ids, 1)) == _answered(receipts)
        assert (3, 0, 0) == (stats.delivered, stats.duplicates, stats.quarantined)
    [blocked] = [e for e in logged if e["log_level"] == "error"]
    assert "inbox_blocked" == blocked["event"]
    assert f"folder_unwritable:{code}" in blocked["error"]
    assert f"cannot write to {folder}: {cause}" in blocked["error"]
    assert [] == _events(logged, "quarantined")
    waits = [e["wait_s"] for e in _events(logged, "inbox_retry_later")]
    _assert_backoff(waits, FAST)
    assert [len(waits)] == [e["retries"] for e in _events(logged, "inbox_resumed")]
    assert "Synthetic test report" not in repr(logged), "no payload in the logs"
    print(
        f"\n[{fault} inbox folder] {len(waits)} retry rounds held back, waits "
        f"{waits[0]:g} .. {max(waits):g} s; then 3 files, 3 receipts"
    )


async def test_a_write_refused_by_a_full_disk_leaves_no_temporary(tmp_path: Path) -> None:
    """A delivery that hits ENOSPC leaves nothing behind in the inbox folder: each
    retry on a full disk would otherwise leave one more (partial) temporary file."""
    fed = LiveFederation()
    opened = open_envelope(
        fed.referral(),
        recipient="nl.hotline",
        opening_keys=[fed.opening["nl.hotline"]],
        directory=fed.directory(),
        now=now(),
    )
    delivery = Delivery(ReceivedMessage.from_opened(opened), now(), opened.payload)
    folder = tmp_path / "inbox"
    with _tmpfs(folder, "256k"):
        _fill(folder)
        with pytest.raises(DeliveryError) as info:
            await FolderSink(folder).deliver(delivery)
        assert info.value.retriable
        assert ["filler.bin"] == sorted(p.name for p in folder.iterdir())


# --- 2. the case system's HTTP endpoint down for minutes --------------------------------


class CaseSystem:
    """A case system's intake on a free loopback port: not listening at first
    (connection refused), then answering every POST with ``status``; each request
    answered is recorded (idempotency key, status, time, the body's message id)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 503
        self.requests: list[tuple[str, int, float, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/messages"

    def listen(self) -> None:
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = system.status
                system.requests.append(
                    (
                        self.headers.get("idempotency-key", ""),
                        status,
                        time.time(),
                        str(json.loads(body).get("message_id")),
                    )
                )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)

    def answered(self, status: int) -> list[tuple[str, int, float, str]]:
        return [r for r in self.requests if r[1] == status]


async def test_case_system_down_then_503_then_back_delivers_each_message_once(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """The HTTP sink's case system refuses connections for many retry rounds, then
    answers 503 for many more, then 201. While it is down nothing is committed and no
    receipt produced; the receiver's waits grow to their cap across the whole outage,
    and within each delivery attempt the sink's own waits grow to theirs. Afterwards
    each message got exactly one 2xx (its Idempotency-Key is its message id), every
    request carried a message of the inbox, each receipt was produced after its
    message's 2xx, one per message, and all offsets are committed."""
    settings, fed, names = await _setup(kafka)
    ids, ends = await _referrals_in_inbox(kafka, fed, names, 3)
    inbox = names.inbox("nl.hotline")
    inner = RetryPolicy(initial_s=0.02, max_s=0.05, attempts=4)
    case = CaseSystem()
    sink = HttpSink(
        case.url, attempts=4, backoff_s=inner.initial_s, backoff_max_s=inner.max_s, timeout_s=5
    )

    def rounds(error: str) -> int:
        return sum(error in e["error"] for e in _events(logged, "inbox_retry_later"))

    def taken(receiver: Receiver) -> bool:  # what must not happen while it is down
        return receiver.stats.delivered + receiver.stats.quarantined > 0

    try:
        with capture_logs() as logged:
            async with _receiving(settings, fed, sink, tmp_path / "state") as receiver:
                await wait_until(
                    lambda: rounds("ConnectError") >= 5 or taken(receiver),
                    what="five retry rounds against a refused connection",
                    timeout_s=60,
                )
                case.listen()  # up, but failing
                await wait_until(
                    lambda: rounds("http_503") >= 5 or taken(receiver),
                    what="five retry rounds against 503",
                    timeout_s=60,
                )
                assert {} == await _committed(kafka.bootstrap, receiver.group_id, inbox)
                assert [] == await read_all(kafka.bootstrap, names.outbox("nl.hotline"))
                assert (0, 0) == (receiver.stats.delivered, receiver.stats.quarantined)
                case.status = 201  # back
                await wait_committed(
                    kafka.bootstrap, receiver.group_id, ends, what="every message committed"
                )
                stats = receiver.stats
    finally:
        await sink.aclose()
        case.close()
    receipts = await read_all(kafka.bootstrap, names.outbox("nl.hotline"))
    ok = case.answered(201)
    assert Counter({str(m): 1 for m in ids}) == Counter(key for key, *_ in ok)
    assert all(key == body_id for key, _, _, body_id in case.requests)
    assert {key for key, *_ in case.requests} <= {str(m) for m in ids}
    assert len(case.answered(503)) >= 5
    assert Counter(dict.fromkeys(ids, 1)) == _answered(receipts)
    took = {key: at for key, _, at, _ in ok}
    for r in receipts:
        replied = parse(r.value or b"").header.in_reply_to
        assert r.timestamp_ms is not None
        assert r.timestamp_ms >= int(took[str(replied)] * 1000), "receipt before the 2xx"
    assert (3, 0, 0) == (stats.delivered, stats.duplicates, stats.quarantined)
    assert [
        "delivery failed (unavailable:ConnectError)",
        "delivery failed (unavailable:http_503)",
    ] == [e["error"] for e in logged if e["log_level"] == "error"]
    waits = [e["wait_s"] for e in _events(logged, "inbox_retry_later")]
    _assert_backoff(waits, FAST)
    sink_waits = {(e["attempt"], e["wait_s"]) for e in _events(logged, "sink_retry")}
    assert {(n, inner.delay(n)) for n in (1, 2, 3)} == sink_waits
    assert inner.delay(1) < inner.delay(2) < inner.delay(3) == inner.max_s
    assert f"127.0.0.1:{case.port}" not in repr(logged), "the case system's URL is not logged"
    assert "Synthetic test report" not in repr(logged), "no payload in the logs"
    print(
        f"\n[case system down] {len(waits)} retry rounds ({rounds('ConnectError')} refused, "
        f"{rounds('http_503')} 503), {len(case.requests)} POSTs, waits {waits[0]:g} .. "
        f"{max(waits):g} s; 3 delivered once, 3 receipts after their 2xx"
    )


# --- 3. Kafka unreachable when the drop folder sends ----------------------------------


class Gate:
    """A loopback port in front of Kafka's: closed (connection refused, as when Kafka
    is away) until :meth:`open`, then forwarding bytes both ways."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()


async def test_drop_folder_keeps_a_file_while_kafka_is_unreachable_then_sends_it_once(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """The drop folder's loop (``DropFolder.run``) with its bootstrap on a closed
    loopback port: a dropped file is sealed and kept in processing/ (ids fixed in its
    sidecar), never moved to failed/, and each scan logs ``send_deferred`` naming the
    file, where it is kept and that no Kafka server answered; nothing reaches the
    outbox. Once the port leads to Kafka the same message is sent: the file goes to
    sent/ and the outbox holds exactly that one record."""
    settings, fed, names = await _setup(kafka)
    gate = Gate(kafka.bootstrap)
    away = KafkaClients(settings.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{gate.port}"}))
    root = tmp_path / "drop"
    outbox_topic = names.outbox("de.hotline")
    try:
        with capture_logs() as logged:
            async with Outbox(away, outbox_topic, deadline_s=2) as outbox:
                drop = DropFolder(root, Sender(_identity(fed, "de.hotline"), outbox))
                dot = root / "incoming" / ".case.json"
                dot.write_bytes(make_referral().model_dump_json().encode())
                dot.rename(root / "incoming" / "case.json")
                stop = asyncio.Event()
                task = asyncio.create_task(drop.run(stop, interval_s=0.1))
                try:
                    await wait_until(
                        lambda: (
                            task.done()
                            or len(_events(logged, "send_deferred")) >= 2
                            or any((root / "failed").iterdir())
                        ),
                        what="two scans deferring the file",
                        timeout_s=60,
                    )
                    assert not task.done()
                    assert [] == list((root / "failed").iterdir())
                    sidecar = root / "processing" / "case.json.pending.json"
                    assert (root / "processing" / "case.json").exists()
                    [item] = json.loads(sidecar.read_bytes())["items"]
                    message_id = UUID(item["message_id"])
                    assert [] == list((root / "sent").iterdir())
                    assert [] == await read_all(kafka.bootstrap, outbox_topic)
                    await gate.open()  # Kafka reachable
                    await wait_until(
                        lambda: task.done() or (root / "sent" / "case.json.sent.json").exists(),
                        what="the file sent once Kafka answers",
                        timeout_s=60,
                    )
                    assert not task.done()
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 60)
                assert [] == await drop.run_once()  # nothing left to send
    finally:
        await gate.close()
    deferred = _events(logged, "send_deferred")
    for e in deferred:
        assert ("case.json", str(root / "processing")) == (e["file"], e["kept_in"])
        assert f"no Kafka server answered at 127.0.0.1:{gate.port}" in e["error"]
    records = await read_all(kafka.bootstrap, outbox_topic)
    assert [message_id] == [parse(r.value or b"").header.message_id for r in records]
    note = json.loads((root / "sent" / "case.json.sent.json").read_bytes())
    assert [str(message_id)] == [m["message_id"] for m in note["messages"]]
    assert [] == [p.name for p in (root / "processing").iterdir()]
    assert [] == list((root / "failed").iterdir())
    assert [] == list((root / "incoming").iterdir())
    assert 1 == len(_events(logged, "file_sent"))
    print(f"\n[drop folder, Kafka away] {len(deferred)} scans deferred; then sent once")


async def test_crb_dropfolder_with_kafka_unreachable_says_the_file_stays_queued(
    kafka: KafkaEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``crb dropfolder --once`` with the bootstrap on a closed loopback port: exit 1,
    its last line says no Kafka server answered and that unsent files stay queued
    (naming the folder); the file is still in incoming/, not in failed/. With Kafka
    reachable the next ``crb dropfolder --once`` prints ``sent`` with its id, and the
    outbox holds it once; a third run sends nothing."""
    monkeypatch.setenv("CRB_HOME", str(tmp_path))
    monkeypatch.delenv("CRB_PASSPHRASE", raising=False)
    for name, value in login_env(kafka.bootstrap).items():
        monkeypatch.setenv(name, value)
    prefix = unique_prefix()
    up = ("--bootstrap", kafka.bootstrap, "--prefix", prefix)

    async def run(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(crb, capsys, *argv)

    for argv in (
        ("federation", "init", "--federation-id", "faults"),
        ("participant", "add", "de.hotline", "--role", "hotline"),
        ("participant", "add", "nl.hotline", "--role", "hotline"),
        ("topics", "apply", *up),
        ("acl", "apply", *up),
    ):
        code, _, err = await run(*argv)
        assert 0 == code, err
    root = tmp_path / "adapters" / "de.hotline" / "dropfolder"
    (root / "incoming").mkdir(parents=True)
    (root / "incoming" / "case.json").write_bytes(make_referral().model_dump_json().encode())

    port = free_port()
    down = ("--bootstrap", f"127.0.0.1:{port}", "--prefix", prefix)
    code, out, err = await run("dropfolder", "--once", "--as", "de.hotline", *down)
    assert (1, "") == (code, out)
    last = err.strip().splitlines()[-1]
    assert f"no Kafka server answered at 127.0.0.1:{port}" in last
    assert f"files not sent stay queued in {root}" in last
    assert ["case.json"] == [p.name for p in (root / "incoming").iterdir()]
    assert [] == list((root / "failed").glob("*"))

    code, out, err = await run("dropfolder", "--once", "--as", "de.hotline", *up)
    assert 0 == code, err
    [line] = out.strip().splitlines()
    state, name, message_id = line.split(": ")
    assert ("sent", "case.json") == (state, name)
    code, out, err = await run("dropfolder", "--once", "--as", "de.hotline", *up)
    assert (0, "") == (code, out), err
    records = await read_all(kafka.bootstrap, TopicNames(prefix).outbox("de.hotline"))
    assert [UUID(message_id)] == [parse(r.value or b"").header.message_id for r in records]
    assert (root / "sent" / "case.json.sent.json").exists()
    assert [] == list((root / "failed").iterdir())
