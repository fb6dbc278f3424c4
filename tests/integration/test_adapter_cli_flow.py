"""``crb send`` -> router -> ``crb inbox --once`` -> ``crb ack accept`` -> ``crb inbox``
on the sender's side, against a real Kafka, with the router in-process and a
federation created by the CLI itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from broker.cli._context import Context
from broker.router import Router
from broker.settings import Settings
from schemas import ServiceRole, TopicNames
from tests._cli import crb
from tests._fed import make_referral, settings_for, unique_prefix
from tests._kafka import login_env
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import drain

pytestmark = pytest.mark.kafka


@contextlib.asynccontextmanager
async def _router(settings: Settings) -> AsyncIterator[None]:
    ctx = Context({})
    router = Router(settings, ctx.directory(), signer=ctx.signer(ServiceRole.ROUTER))
    stop = asyncio.Event()
    task = asyncio.create_task(router.run(stop))
    try:
        await asyncio.wait_for(router.ready.wait(), 60)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_cli_send_inbox_ack_round_trip(
    kafka: KafkaEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands print the message id, deliver it to nl.hotline's inbox folder, and
    de.hotline's `crb inbox` then receives the receipt and the Accepted decision carrying
    nl.hotline's own reference; `crb dropfolder --once` sends a good file, fails a bad one."""
    monkeypatch.setenv("CRB_HOME", str(tmp_path))
    monkeypatch.delenv("CRB_PASSPHRASE", raising=False)
    for name, value in login_env(kafka.bootstrap).items():
        monkeypatch.setenv(name, value)
    prefix = unique_prefix()
    kafka_opts = ("--bootstrap", kafka.bootstrap, "--prefix", prefix)

    async def run(*argv: str) -> tuple[int, str, str]:
        # Logs (the command's and the in-process router's) go to stderr: stdout holds
        # only the command's results.
        return await asyncio.to_thread(crb, capsys, *argv)

    for argv in (
        ("federation", "init", "--federation-id", "test"),
        ("participant", "add", "de.hotline", "--role", "hotline", "--jurisdiction", "DE"),
        ("participant", "add", "nl.hotline", "--role", "hotline", "--jurisdiction", "NL"),
        ("topics", "apply", *kafka_opts),
    ):
        code, _, err = await run(*argv)
        assert 0 == code, err
    names = TopicNames(prefix)
    referral = tmp_path / "case.json"
    referral.write_bytes(make_referral().model_dump_json().encode())
    async with _router(settings_for(kafka.bootstrap, prefix)):
        code, out, err = await run("send", str(referral), "--as", "de.hotline", *kafka_opts)
        assert 0 == code, err
        message_id = out.strip()  # one referral: its id alone, for ID=$(crb send ...)
        assert UUID(message_id).version == 7
        await drain(kafka.bootstrap, names.inbox("nl.hotline"), expect=1)
        code, out, err = await run("inbox", "--as", "nl.hotline", "--once", *kafka_opts)
        inbox = tmp_path / "adapters" / "nl.hotline" / "inbox"
        assert (0, [
            f"{message_id}  referral from de.hotline",
            f"delivered 1 (to {inbox}), duplicates 0, quarantined 0",
        ]) == (code, out.strip().splitlines())  # fmt: skip
        assert [f"{message_id}.json"] == [p.name for p in inbox.iterdir()]
        code, out, err = await run(
            "ack", "accept", message_id, "--as", "nl.hotline", "--reference", "NL-7", *kafka_opts
        )
        assert 0 == code, err
        ack_id = out.strip()
        await drain(kafka.bootstrap, names.inbox("de.hotline"), expect=2)
        code, out, err = await run("inbox", "--as", "de.hotline", "--once", *kafka_opts)
        sender_inbox = tmp_path / "adapters" / "de.hotline" / "inbox"
        lines = out.strip().splitlines()
        assert (0, f"delivered 2 (to {sender_inbox}), duplicates 0, quarantined 0") == (
            code,
            lines[-1],
        )
        assert f"{ack_id}  case_ack from nl.hotline" in lines
        drop = tmp_path / "drop"
        (drop / "incoming").mkdir(parents=True)
        (drop / "incoming" / "next.json").write_bytes(make_referral().model_dump_json().encode())
        (drop / "incoming" / "broken.json").write_bytes(b"{")
        code, out, err = await run(
            "dropfolder", "--as", "de.hotline", "--folder", str(drop), "--once", *kafka_opts
        )
        # One file failed: exit 1, one line per file on stdout, the count on stderr.
        assert 1 == code, err
        assert "crb: error: 1 of 2 file(s) not sent" in err
        lines = sorted(out.strip().splitlines())
        assert lines[0].startswith("failed: broken.json: "), (out, err)
        assert re.fullmatch(r"sent: next\.json: [0-9a-f-]{36}", lines[1]), lines
    assert (drop / "sent" / "next.json.sent.json").exists()
    assert "not JSON" in (drop / "failed" / "broken.json.error.txt").read_text()
    ack = json.loads(
        (tmp_path / "adapters" / "de.hotline" / "inbox" / f"{ack_id}.json").read_bytes()
    )
    assert ("case_ack", message_id) == (ack["message_type"], ack["in_reply_to"])
    assert {"kind": "accepted", "receiver_reference": "NL-7"} == ack["case_ack"]["decision"]
    sent = tmp_path / "adapters" / "de.hotline" / "dropfolder" / "sent"
    assert (sent / "case.json.sent.json").exists()
    assert not (sent / "case.json").exists(), "no plaintext copy kept after sending"
