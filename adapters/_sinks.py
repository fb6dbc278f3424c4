"""Where opened messages go: the local system's durable handover (``Sink``).

A sink's ``deliver`` returns only when the local system holds the message durably;
then the receiver records it, sends the receipt and commits the Kafka offset.
``deliver`` raises ``DeliveryError``: ``retriable`` (the system is unavailable:
keep the offset, try again later) or not (it refused this message: quarantine).

Every sink receives one JSON document per message (:meth:`Delivery.document`)::

    {"message_id", "message_type", "case_id", "sender", "recipient", "in_reply_to",
     "envelope_sha256", "received_at", "<message_type>": {the decrypted payload}}

so a referral arrives under ``"referral"``, a receipt under ``"receipt"``, a case
decision under ``"case_ack"``.

- :class:`FolderSink` writes ``<folder>/<message_id>.json`` atomically (temporary
  dot-file, fsync, rename, fsync the folder). A message delivered again (a crash
  after delivery, before the dedupe record) replaces its own file: still one file.
  A folder it cannot write (a full disk, a quota, a read-only or missing mount) is
  retriable whatever the ``OSError``: it is never the message's fault, and it clears up.
- :class:`HttpSink` POSTs the document; a 2xx is the handover. Connection errors,
  timeouts, 429 and 5xx are retried with exponential backoff (bounded attempts,
  then a retriable ``DeliveryError``), waiting at least a numeric ``Retry-After``
  (capped at the maximum backoff); any other status refuses the message.
  The ``Idempotency-Key`` header carries the message id, because the same
  message can be POSTed twice if the adapter dies between the 2xx and its record.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import httpx
import structlog

from adapters._errors import DeliveryError
from adapters._model import ReceivedMessage
from adapters._retry import RetryPolicy
from keys import atomic_write_many, fsync_dir
from schemas import DeconflictionNotice

__all__ = ["Delivery", "FolderSink", "HttpSink", "Sink"]

log = structlog.get_logger("crb.adapter")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One opened message for the local system: its clear facts and the payload."""

    message: ReceivedMessage
    received_at: datetime
    payload: bytes = field(repr=False)
    """The decrypted payload (canonical JSON of the contract model)."""

    @property
    def message_id(self) -> UUID:
        return self.message.message_id

    def document(self) -> dict[str, Any]:
        m = self.message
        return {
            "message_id": str(m.message_id),
            "message_type": m.message_type.value,
            "case_id": str(m.case_id),
            "sender": m.sender,
            "recipient": m.recipient,
            "in_reply_to": str(m.in_reply_to) if m.in_reply_to else None,
            "escalation_of": str(m.escalation_of) if m.escalation_of else None,
            "envelope_sha256": m.envelope_sha256,
            "received_at": self.received_at.astimezone(UTC).isoformat(),
            m.message_type.value: json.loads(self.payload),
        }


class Sink(Protocol):
    """The participant's own system, as the receiver hands it messages.

    A sink that keeps the messages itself (:class:`FolderSink`) also has
    ``forget(message_ids) -> int``: the receiver calls it once a referral's
    ``delete_after`` date has passed. A case system behind the HTTP sink keeps its
    copy under its own retention (the date is in the document it received).

    A sink that takes deconfliction notices has ``async deliver_notice(notice)``
    (both built-in sinks do); for one that has not, notices are only logged."""

    async def deliver(self, delivery: Delivery) -> None:
        """Hand ``delivery`` over durably, or raise ``DeliveryError``."""
        ...


class FolderSink:
    """Writes each message to ``folder/<message_id>.json`` (atomic, fsynced)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, message_id: UUID) -> Path:
        return self.folder / f"{message_id}.json"

    async def deliver(self, delivery: Delivery) -> None:
        await self.deliver_batch([delivery])

    async def deliver_batch(self, deliveries: list[Delivery]) -> None:
        """Write every message, with one durable barrier for the batch (the files'
        fsyncs run together, the folder is fsynced once). All or error."""
        items = [
            (
                self.path_for(d.message_id),
                json.dumps(d.document(), indent=2, ensure_ascii=False).encode() + b"\n",
            )
            for d in deliveries
        ]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(atomic_write_many, items)
        except OSError as exc:
            raise _unwritable(self.folder, exc) from exc

    def notice_path(self, notice_id: UUID) -> Path:
        return self.folder / "notices" / f"{notice_id}.json"

    async def deliver_notice(self, notice: DeconflictionNotice) -> None:
        """Write a deconfliction notice to ``folder/notices/<notice_id>.json``."""
        path = self.notice_path(notice.notice_id)
        data = json.dumps(notice.model_dump(mode="json"), indent=2, ensure_ascii=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(atomic_write_many, [(path, data.encode() + b"\n")])
        except OSError as exc:
            raise _unwritable(path.parent, exc) from exc

    def forget(self, message_ids: list[UUID]) -> int:
        """Delete the delivered files of ``message_ids`` (their ``delete_after`` has
        passed); returns how many there were."""
        gone = 0
        for message_id in message_ids:
            path = self.path_for(message_id)
            if path.exists():
                path.unlink()
                gone += 1
        if gone:
            fsync_dir(self.folder)
        return gone


def _unwritable(folder: Path, exc: OSError) -> DeliveryError:
    """The retriable error for a folder that cannot be written: ``ENOSPC``, ``EDQUOT``,
    ``EROFS`` and the rest clear up once someone acts, so the message waits in Kafka
    (its offset kept) instead of being refused."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "OSError"
    return DeliveryError(
        f"folder_unwritable:{name}",
        retriable=True,
        detail=f"cannot write to {folder}: {exc.strerror or exc}",
    )


class HttpSink:
    """POSTs each message to the case system at ``url`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._own_client = client is None
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def deliver(self, delivery: Delivery) -> None:
        body = json.dumps(delivery.document(), ensure_ascii=False).encode()
        await self._post(body, delivery.message_id)

    async def deliver_notice(self, notice: DeconflictionNotice) -> None:
        """POST ``{"notice": {...}}`` (idempotency key: the notice id)."""
        body = json.dumps({"notice": notice.model_dump(mode="json")}, ensure_ascii=False).encode()
        await self._post(body, notice.notice_id)

    async def _post(self, body: bytes, key: UUID) -> None:
        headers = {"content-type": "application/json", "idempotency-key": str(key)}
        policy = RetryPolicy(
            initial_s=self.backoff_s, max_s=self.backoff_max_s, attempts=self.attempts
        )

        async def attempt() -> None:
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect, read, timeouts, protocol
                raise DeliveryError(f"unavailable:{type(exc).__name__}", retriable=True) from exc
            status = response.status_code
            if 200 <= status < 300:
                return
            if status != 429 and status < 500:
                raise DeliveryError(f"http_{status}", retriable=False)
            raise DeliveryError(
                f"unavailable:http_{status}",
                retriable=True,
                retry_after_s=_retry_after(response, self.backoff_max_s),
            )

        def on_retry(exc: BaseException, attempt_no: int, wait: float) -> None:
            log.warning(
                "sink_retry",
                message_id=str(key),
                attempt=attempt_no,
                error=getattr(exc, "reason", type(exc).__name__),
                wait_s=wait,
            )

        await policy.run(attempt, on_retry=on_retry, sleep=self._sleep)


def _retry_after(response: httpx.Response, cap: float) -> float:
    """A numeric ``Retry-After`` (seconds), capped; 0 when absent or an HTTP date."""
    try:
        return min(max(float(response.headers.get("retry-after", "0")), 0.0), cap)
    except ValueError:
        return 0.0
