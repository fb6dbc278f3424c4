"""The one retry policy: exponential backoff that acts on an error's ``retriable``.

Every retry loop in the project goes through :class:`RetryPolicy`: the outbox
producer through a broker outage, the HTTP sink through a case system's 5xx, the
inbox loop re-reading a record the local system could not take yet, the router
and tracker re-running a failed transaction. An error is retried only when it
says so (``exc.retriable is True``: ``adapters.kafka.Unavailable``, a retriable
``DeliveryError``); anything else is raised at once. An error may carry
``retry_after_s`` (an HTTP ``Retry-After``): the wait is then at least that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy", "is_retriable"]

T = TypeVar("T")


def is_retriable(exc: BaseException) -> bool:
    """Whether ``exc`` says the same call may succeed later."""
    return getattr(exc, "retriable", False) is True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``initial_s * factor**(attempt-1)``, capped at ``max_s``; give up after
    ``attempts`` tries or when the next wait would pass ``deadline_s`` (``None``:
    never). ``sleep`` and ``clock`` are injected so tests need no real time."""

    initial_s: float = 0.2
    factor: float = 2.0
    max_s: float = 5.0
    attempts: int | None = None
    deadline_s: float | None = None

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based)."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))

    def wait_for(self, exc: BaseException, attempt: int) -> float:
        """The wait after ``exc`` at ``attempt``: the backoff, or the error's own hint."""
        hint = getattr(exc, "retry_after_s", None)
        delay = self.delay(attempt)
        return max(delay, min(float(hint), self.max_s)) if hint else delay

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[BaseException, int, float], Awaitable[None] | None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """``await op()`` until it succeeds, a non-retriable error, or the policy gives
        up (the last error is raised). ``on_retry(exc, attempt, wait)`` runs before
        each wait (log it, reset a client)."""
        started = clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await op()
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                wait = self.wait_for(exc, attempt)
                if self.attempts is not None and attempt >= self.attempts:
                    raise
                if self.deadline_s is not None and clock() - started + wait > self.deadline_s:
                    raise
                if on_retry is not None:
                    result = on_retry(exc, attempt, wait)
                    if result is not None:
                        await result
                await sleep(wait)
