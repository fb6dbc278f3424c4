"""Errors of the local Kafka launcher.

LocalKafkaError            anything that stops the launcher; its message is one line
                           meant for a person (no traceback is shown by the CLI)
└── BrokerStartError       a broker process died or never answered; carries the
                           tail of its log
"""

from __future__ import annotations

__all__ = ["BrokerStartError", "LocalKafkaError"]


class LocalKafkaError(Exception):
    """The local Kafka cannot be fetched, started, reached or stopped."""


class BrokerStartError(LocalKafkaError):
    """A broker process died at start or never answered a metadata request."""

    def __init__(self, message: str, *, node_id: int, log_tail: str) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.log_tail = log_tail
