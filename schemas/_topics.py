"""Topic names: a contract every adapter, in any language, must follow.

Names are a convention with a configurable prefix (default ``crb``)::

    <prefix>.outbox.<participant>   a participant writes only here (Kafka ACL)
    <prefix>.inbox.<participant>    a participant reads only here
    <prefix>.dlq                    every rejected record, with its original bytes
    <prefix>.audit                  hash-chained decisions (kept forever by default)
    <prefix>.status                 handover status events (compacted)
    <prefix>.tracker                the tracker's own handover state (compacted)
    <prefix>.actions                operator actions, e.g. a dead letter redriven
                                    (tracker-signed, kept like the audit topic)
    <prefix>.directory              the signed directory, every version (compacted by
                                    federation id; only the federation admin writes)

Records on outboxes and inboxes are keyed by case id (UTF-8 of the UUID), so a
case stays in one partition, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicNames"]


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topic names under one prefix."""

    prefix: str = "crb"

    def outbox(self, participant: str) -> str:
        return f"{self.prefix}.outbox.{participant}"

    def inbox(self, participant: str) -> str:
        return f"{self.prefix}.inbox.{participant}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def actions(self) -> str:
        return f"{self.prefix}.actions"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def tracker(self) -> str:
        return f"{self.prefix}.tracker"

    @property
    def directory(self) -> str:
        return f"{self.prefix}.directory"

    @property
    def outbox_pattern(self) -> str:
        """Regex matching every outbox topic (for the router's subscription)."""
        return "^" + self.prefix.replace(".", r"\.") + r"\.outbox\..+$"

    def participant_of_outbox(self, topic: str) -> str | None:
        head = f"{self.prefix}.outbox."
        return topic[len(head) :] if topic.startswith(head) else None
