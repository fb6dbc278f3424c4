"""The exceptions of ``adapters``.

::

    AdapterError                 base; never raised itself
    ├── InputError               a referral file/row/ack request is invalid (the local
    │                            user's fault); ``.where`` names the file or row
    ├── SendError                the directory does not allow the message (no route, no
    │                            key), or Kafka did not acknowledge it within the deadline
    │                            (``.retriable``: send the same bytes again later)
    ├── DeliveryError            the local system did not take a message;
    │                            ``.retriable``: try again later (True) or quarantine (False)
    └── StateError               the adapter's state folder is unusable, or it holds no
                                 record of the message an ack answers

Foreign exceptions (pydantic, keys, httpx, sqlite3) are translated at this
package's boundary and chained (``raise ... from exc``); Kafka's are translated
once, in ``adapters.kafka`` (its own small tree, ``TransportError``).
"""

from __future__ import annotations

__all__ = ["AdapterError", "DeliveryError", "InputError", "SendError", "StateError"]


class AdapterError(Exception):
    """Base of every error raised by ``adapters``."""


class InputError(AdapterError):
    """A referral (file, CSV row) or an ack request is invalid; ``where`` says which."""

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.detail = message


class SendError(AdapterError):
    """The message cannot be sent: refused by the directory or by Kafka (``retriable``
    False), or not acknowledged by Kafka in time (``retriable`` True: same bytes later)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class DeliveryError(AdapterError):
    """The local system did not take a message.

    ``retriable`` — the local system is unavailable (retry later, keep the Kafka
    offset); otherwise it refused this message for good (quarantine it).
    ``reason`` is a short stable code for logs and the quarantine note; ``detail``
    says it for a person (which folder, what the operating system said).
    """

    def __init__(
        self,
        reason: str,
        *,
        retriable: bool,
        retry_after_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(f"delivery failed ({reason})" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.retriable = retriable
        self.retry_after_s = retry_after_s
        """A wait the local system asked for (HTTP ``Retry-After``), if any."""
        self.detail = detail


class StateError(AdapterError):
    """The state folder cannot be used, or it has no record the operation needs."""
