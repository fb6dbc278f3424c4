"""The one error tree of the Kafka plumbing; aiokafka's exceptions never pass it.

::

    TransportError               base; ``.retriable`` says whether the same call
    │                            may succeed later (the retry policy acts on it)
    ├── Unavailable              retriable: unreachable, timed out, leader moving,
    │                            not enough replicas, group rebalancing
    ├── TopicMissing             a topic does not exist (``crb topics apply``)
    ├── AccessDenied             authentication failed or an ACL refused
    ├── Fenced                   another owner took this transactional id: stop
    │                            owning what it covered, never fence back
    ├── RecordTooLarge           the broker refused a record for its size
    └── Refused                  any other error the broker will repeat

Whose fault: ``Unavailable`` is the cluster's (transient), ``TopicMissing`` and
``AccessDenied`` the operator's, ``RecordTooLarge`` the caller's, ``Fenced`` a
newer owner's (not a fault). :func:`translate` maps a foreign exception onto this
tree; :func:`kafka_errors` does it at a boundary and chains the original.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

__all__ = [
    "AccessDenied",
    "Fenced",
    "RecordTooLarge",
    "Refused",
    "TopicMissing",
    "TransportError",
    "Unavailable",
    "kafka_errors",
    "translate",
]


class TransportError(Exception):
    """Base of the Kafka plumbing's errors; ``retriable``: try the same call later."""

    retriable = False


class Unavailable(TransportError):
    """Kafka cannot serve the call now; the same call may succeed later."""

    retriable = True


class TopicMissing(TransportError):
    """The topic does not exist; ``topic`` names it."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist: run `crb topics apply`")
        self.topic = topic


class AccessDenied(TransportError):
    """Authentication failed, or an ACL refused the operation."""


class Fenced(TransportError):
    """A newer producer with the same transactional id exists: stop owning its work."""


class RecordTooLarge(TransportError):
    """The broker refused a record (or batch) for its size."""


class Refused(TransportError):
    """A non-retriable broker error not named above."""


_UNAVAILABLE = frozenset(
    {
        "KafkaTimeoutError",
        "KafkaConnectionError",
        "RequestTimedOutError",
        "NoBrokersAvailable",
        "NodeNotReadyError",
        "CommitFailedError",
        "RebalanceInProgressError",
        "IllegalGenerationError",
        "UnknownMemberIdError",
        "UnknownTopicOrPartitionError",
        "OutOfOrderSequenceNumber",
        "UnknownProducerId",
        "InvalidTxnState",
        "ConcurrentTransactions",
        "ProducerClosed",
    }
)
"""aiokafka errors not flagged ``retriable`` that nevertheless clear up: timeouts,
a group or producer that must rejoin or restart. Retrying them is safe because
every write we make is idempotent or transactional."""
_FENCED = frozenset({"ProducerFenced", "InvalidProducerEpoch", "TransactionCoordinatorFenced"})
_DENIED = frozenset(
    {
        "TopicAuthorizationFailedError",
        "GroupAuthorizationFailedError",
        "ClusterAuthorizationFailedError",
        "TransactionalIdAuthorizationFailed",
        "SaslAuthenticationFailed",
        "AuthenticationFailedError",
        "AuthenticationMethodNotSupported",
        "UnsupportedSaslMechanismError",
        "IllegalSaslStateError",
    }
)
_TOO_LARGE = frozenset(
    {"MessageSizeTooLargeError", "RecordTooLargeError", "RecordListTooLargeError"}
)


def translate(exc: BaseException) -> TransportError:
    """The plumbing's error for a foreign exception (aiokafka, OSError, timeouts)."""
    if isinstance(exc, TransportError):
        return exc
    name = type(exc).__name__
    said = str(exc)
    text = said if said.startswith(name) else (f"{name}: {said}" if said else name)
    if "Unable to bootstrap from" in said:  # aiokafka and kafka-python, said two ways
        hosts = re.findall(r"\('([^']+)', (\d+)", said) or re.findall(r"'([^':]+):(\d+)'", said)
        where = ",".join(f"{h}:{p}" for h, p in hosts) or "the bootstrap servers"
        return Unavailable(f"no Kafka server answered at {where}")
    if name in _FENCED:
        return Fenced(text)
    if name in _DENIED:
        return AccessDenied(text)
    if name in _TOO_LARGE:
        return RecordTooLarge(text)
    if (
        name in _UNAVAILABLE
        or getattr(exc, "retriable", False) is True
        or isinstance(exc, OSError | TimeoutError)
    ):
        return Unavailable(text)
    return Refused(text)


@contextlib.contextmanager
def kafka_errors() -> Iterator[None]:
    """Translate foreign exceptions raised inside into :class:`TransportError` (chained)."""
    try:
        yield
    except TransportError:
        raise
    except Exception as exc:
        from aiokafka.errors import KafkaError

        if isinstance(exc, KafkaError | OSError | TimeoutError):
            raise translate(exc) from exc
        raise
