"""``crb send`` while Kafka is away: it answers at once, keeps the referral queued,
and ``crb send --retry-pending`` delivers it later exactly once (real Kafka, router
in-process, federation made by the CLI)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from uuid import UUID

import pytest

from schemas import TopicNames
from tests._cli import crb
from tests._fed import make_referral, settings_for, unique_prefix
from tests._kafka import login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import drain, free_port
from tests.integration.test_adapter_cli_flow import _router

pytestmark = pytest.mark.kafka


async def test_send_with_kafka_away_queues_then_sends_once(
    kafka: KafkaEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Kafka unreachable: exit 1 within seconds, one line with the hint and the
    retry command, the file queued. Kafka back: --retry-pending prints the id, the
    recipient's inbox holds it once, the queue is empty; a second retry sends
    nothing."""
    monkeypatch.setenv("CRB_HOME", str(tmp_path))
    monkeypatch.delenv("CRB_PASSPHRASE", raising=False)
    for name, value in login_env(kafka.bootstrap).items():
        monkeypatch.setenv(name, value)
    prefix = unique_prefix()
    up = ("--bootstrap", kafka.bootstrap, "--prefix", prefix)

    async def run(*argv: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(crb, capsys, *argv)

    for argv in (
        ("federation", "init", "--federation-id", "offline"),
        ("participant", "add", "de.hotline", "--role", "hotline"),
        ("participant", "add", "nl.hotline", "--role", "hotline"),
    ):
        code, _, err = await run(*argv)
        assert 0 == code, err
    code, out, err = await run("topics", "apply", *up, "--json")
    assert 0 == code, err
    assert f"{prefix}.outbox.de.hotline" in json.loads(out)["created"]
    code, out, err = await run("acl", "apply", *up, "--json")
    assert 0 == code, err
    assert json.loads(out)["applied"]
    code, out, err = await run("acl", "plan", *up, "--json")
    assert 0 == code, err
    plan = json.loads(out)  # nothing left to change
    assert ([], [], False) == (plan["grant"], plan["revoke"], plan["applied"])
    referral = tmp_path / "case.json"
    referral.write_bytes(make_referral().model_dump_json().encode())
    queue = tmp_path / "adapters" / "de.hotline" / "dropfolder"

    down = ("--bootstrap", f"127.0.0.1:{free_port()}", "--prefix", prefix)  # nothing there
    started = time.monotonic()
    code, out, err = await run("send", str(referral), "--as", "de.hotline", *down)
    answered_s = time.monotonic() - started
    assert (1, "") == (code, out)
    [line] = err.strip().splitlines()[-1:]
    assert "is Kafka running? (crb kafka status)" in line
    assert "crb send --retry-pending --as de.hotline" in line
    assert ["case.json"] == [p.name for p in (queue / "incoming").iterdir()]
    assert answered_s < 60, "bounded well below the old five-minute wait"

    # A broker that accepts connections but never answers: given up after --timeout.
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # the kernel completes handshakes; nothing ever replies
        silent = ("--bootstrap", f"127.0.0.1:{hole.getsockname()[1]}", "--prefix", prefix)
        started = time.monotonic()
        code, out, err = await run(
            "send", "--retry-pending", "--as", "de.hotline", "--timeout", "3", *silent
        )
        silent_s = time.monotonic() - started
    assert (1, "") == (code, out)
    assert "did not answer within 3s (--timeout)" in err.strip().splitlines()[-1]
    assert silent_s < 30
    assert ["case.json"] == [p.name for p in (queue / "incoming").iterdir()]

    names = TopicNames(prefix)
    async with _router(settings_for(kafka.bootstrap, prefix)):
        code, out, err = await run("send", "--retry-pending", "--as", "de.hotline", *up)
        assert 0 == code, err
        message_id = UUID(out.strip())
        records = await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1, idle_s=3)
        assert [str(message_id)] == [
            dict(r.headers).get("crb-message-id", b"").decode() for r in records
        ]
        code, out, err = await run("send", "--retry-pending", "--as", "de.hotline", *up)
        assert (0, "") == (code, out), err
    assert [] == list((queue / "incoming").iterdir())
    assert [] == [p for p in (queue / "processing").iterdir() if not p.name.startswith(".")]
    assert (queue / "sent" / "case.json.sent.json").exists()
    assert not (queue / "sent" / "case.json").exists(), "no plaintext copy kept"
    again = await drain(kafka.bootstrap, names.inbox("nl.hotline"), idle_s=3)
    assert 1 == len(again), "sent once, never twice"
    print(
        f"\n[send offline] refused connection: answered in {answered_s:.2f} s; silent broker "
        f"with --timeout 3: {silent_s:.2f} s; delivered once on --retry-pending"
    )
