"""The sending adapter rides out a broker restart (real Kafka, SIGKILL and restart)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from adapters import DropFolder, FileState, Identity, Outbox, Sender
from adapters.kafka import KafkaClients
from broker import topics
from broker.settings import AdapterSettings, Settings
from keys import parse
from schemas import TopicNames
from tests._fed import LiveFederation, make_referral, settings_for, unique_prefix
from tests.conftest import KafkaEndpoint
from tests.integration._kafka_util import read_all, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _outbox(settings: Settings, participant: str) -> Outbox:
    names = TopicNames(settings.topics.prefix)
    return Outbox.of(KafkaClients(settings.kafka), names, participant, settings.adapter)


async def test_drop_folder_send_survives_a_broker_restart(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    """With the only broker SIGKILLed, a dropped file stays pending while the adapter
    retries; once the broker is back the same envelope is acknowledged, the file moves
    to sent/, and the outbox holds that message id and no other."""
    if kafka.launcher is None:
        pytest.skip("needs the broker this session started (CRB_KAFKA_BOOTSTRAP is external)")
    fed = LiveFederation()
    base = settings_for(kafka.bootstrap, unique_prefix())
    settings = base.model_copy(
        update={
            "kafka": kafka.settings.model_copy(update={"request_timeout_ms": 5_000}),
            "adapter": AdapterSettings(send_deadline_s=180),
        }
    )
    await topics.apply(fed.directory(), KafkaClients(settings.kafka), settings.topics)
    (tmp_path / "drop" / "incoming").mkdir(parents=True)
    (tmp_path / "drop" / "incoming" / "case.json").write_bytes(
        make_referral().model_dump_json().encode()
    )
    identity = Identity(
        "de.hotline", fed.signing["de.hotline"], (fed.opening["de.hotline"],), fed.directory()
    )
    pending = tmp_path / "drop" / "processing" / "case.json.pending.json"
    await asyncio.to_thread(kafka.launcher.kill_node, 1, signal.SIGKILL)
    try:
        async with _outbox(settings, "de.hotline") as outbox:
            drop = DropFolder(tmp_path / "drop", Sender(identity, outbox))
            with capture_logs() as logged:
                task = asyncio.create_task(drop.run_once())
                # Sealed (sidecar written) and a send attempt failed; or it gave up.
                await wait_until(
                    lambda: (
                        task.done()
                        or (pending.exists() and any(e["event"] == "produce_retry" for e in logged))
                    ),
                    what="the adapter sealing the file and retrying its send",
                    timeout_s=60,
                )
            assert not task.done(), "sent although the only broker was down"
            assert pending.exists()
            await asyncio.to_thread(kafka.launcher.up, nodes=1)
            (result,) = await asyncio.wait_for(task, 180)
    finally:
        await asyncio.to_thread(kafka.launcher.up, nodes=1)  # whole again for other tests
    assert FileState.SENT == result.state
    assert (tmp_path / "drop" / "sent" / "case.json.sent.json").exists()
    records = await read_all(
        kafka.bootstrap, TopicNames(settings.topics.prefix).outbox("de.hotline")
    )
    assert records, "nothing reached the outbox"
    assert set(result.message_ids) == {parse(r.value or b"").header.message_id for r in records}
