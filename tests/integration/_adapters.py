"""A participant's adapter process for integration tests: its sender (keeping
copies for escalation and redelivery), its inbox loop into a folder, and on request
its intake API over real HTTP — stopped and awaited on exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import (
    Access,
    FolderSink,
    Identity,
    Outbox,
    Receiver,
    Sender,
    StateStore,
    TokenStore,
    create_intake,
)
from adapters.kafka import KafkaClients
from broker.settings import Settings
from broker.tracker import serve
from schemas import TopicNames, utcnow
from tests._fed import LiveFederation


@dataclass
class AdapterRun:
    sender: Sender
    receiver: Receiver
    store: StateStore
    key: str | None
    """The intake API key, when the intake is served."""


@contextlib.asynccontextmanager
async def running_adapter(
    settings: Settings, fed: LiveFederation, pid: str, state: Path, *, intake_port: int = 0
) -> AsyncIterator[AdapterRun]:
    names = TopicNames(settings.topics.prefix)
    clients = KafkaClients(settings.kafka)
    identity = Identity(pid, fed.signing[pid], (fed.opening[pid],), fed.directory())
    with StateStore(state) as store:
        async with Outbox.of(clients, names, pid, settings.adapter) as outbox:
            sender = Sender(identity, outbox, pending=store)
            sink = FolderSink(state / "inbox")
            receiver = Receiver(clients, names, settings.adapter, sender, sink, store)
            stop = asyncio.Event()
            tasks: list[asyncio.Task[Any]] = [asyncio.create_task(receiver.run(stop))]
            key = None
            if intake_port:
                tokens = TokenStore(state / "intake-keys.json")
                key, _ = tokens.issue(f"participant:{pid}", label="case system", now=utcnow())
                app = create_intake(
                    sender, store, Access(tokens.tokens), inbox_folder=state / "inbox"
                )
                tasks.append(asyncio.create_task(serve(app, "127.0.0.1", intake_port, stop)))
            try:
                yield AdapterRun(sender, receiver, store, key)
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
