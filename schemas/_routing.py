"""The routing decision: a pure function of the clear header and the directory.

The sender calls :func:`resolve` to learn whom to encrypt for; the router calls
it again on the received header and refuses a mismatch (:func:`check_routing`).
Both use only fields of the signed header, so they agree.

Referrals (``message_type == referral``), in order:

1. The sender must be a known, active participant.
2. *Delivery*: every active participant whose ``jurisdiction`` is the case's,
   having a role selected by a matching :class:`DeliveryRule` (rules add up),
   and accepting the category.
3. *Urgent*: for ``priority == urgent`` the ``rules.urgent_roles`` (default
   ``police_24x7``) of the jurisdiction are selected too (same filters).
4. *Orphan*: if steps 2-3 found nobody, the case goes to ``rules.coordinator``
   (if active) and ``Resolution.orphan`` is true. A jurisdiction whose only
   receiver is the sender itself is an orphan too.
5. *Standing copies*: each matching :class:`StandingCopy` adds its recipient
   (active and accepting the category). Copies never prevent the orphan path.
6. The sender is never a recipient; the result is sorted and unique. An empty
   result raises :class:`RoutingError` (``no_recipient``).

Industry reporters (``electronic_service_provider``): their referrals go through
steps 2-4 with the ``hotline`` role only — no urgent roles, no standing copies;
and no participant with that role is ever a recipient of a referral.

Escalations: a referral with ``escalation_of`` set (the sender's own earlier
referral whose recipients did not answer in time) goes to ``rules.escalation_recipient``
alone — active, accepting the category, not the sender — instead of steps 2-5;
none such raises ``no_recipient``. The router additionally checks, from its record
of forwarded messages, that the escalated message was the sender's own.

Replies (``receipt`` / ``case_ack``) go back to the original sender. ``resolve``
cannot know who that was from the header alone, so the reply header names it
as its single recipient and ``resolve`` only validates it: exactly one, known,
active, not the sender. The router additionally checks, from its own record of
forwarded messages, that ``in_reply_to`` was sent by that recipient to this
sender — state that is out of scope for a pure function.

Exceptions (all carry ``.reason``, one of ``schemas.ROUTING_REASONS``)::

    ValueError
     └── RoutingError      the header cannot be routed under this directory
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from ._common import REPLY_MESSAGE_TYPES, Category, FrozenModel, MessageType, Priority
from ._common import CountryCode as _CountryCode
from ._common import ParticipantId as _ParticipantId
from ._directory import Directory, Participant, Role
from ._reasons import Reason


class RoutingError(ValueError):
    """The header cannot be routed under this directory (the sender's fault, or
    the directory's). ``reason`` is the stable code (in ``ROUTING_REASONS``);
    ``participant`` the id at fault, when there is one."""

    def __init__(self, reason: Reason, participant: str | None = None) -> None:
        self.reason = reason
        self.participant = participant
        super().__init__(f"{reason}" + (f": {participant}" if participant else ""))


class RoutingInput(Protocol):
    """What :func:`resolve` reads; an :class:`EnvelopeHeader` satisfies it, and so
    does a :class:`RoutingRequest` built before the header exists."""

    @property
    def message_type(self) -> MessageType: ...
    @property
    def sender(self) -> str: ...
    @property
    def jurisdiction(self) -> str: ...
    @property
    def category(self) -> Category: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def recipients(self) -> Sequence[str]: ...
    @property
    def escalation_of(self) -> UUID | None: ...


class RoutingRequest(FrozenModel):
    """The routing-relevant part of a header, for the sender before it seals.

    ``recipients`` is read only for replies (the original sender)."""

    message_type: MessageType = MessageType.REFERRAL
    sender: _ParticipantId
    jurisdiction: _CountryCode
    category: Category
    priority: Priority
    recipients: tuple[_ParticipantId, ...] = ()
    escalation_of: UUID | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """Outcome of :func:`resolve`.

    ``recipients`` is what goes into the header. The other fields say why, for
    the audit log and the status stream: ``orphan`` (the coordinator got it
    because the jurisdiction had no active receiver), ``urgent`` (recipients
    added only because of urgency) and ``copies`` (standing copies).
    """

    recipients: tuple[str, ...]
    orphan: bool = False
    urgent: tuple[str, ...] = ()
    copies: tuple[str, ...] = ()


def _accepts(p: Participant, category: Category, sender: str) -> bool:
    return (
        p.active
        and category in p.categories
        and p.participant_id != sender
        and Role.ELECTRONIC_SERVICE_PROVIDER not in p.roles
    )


def resolve(header: RoutingInput, directory: Directory) -> Resolution:
    """Whom a message goes to (see the module docstring for the rules)."""
    sender = directory.participant(header.sender)
    if sender is None:
        raise RoutingError(Reason.UNKNOWN_SENDER, header.sender)
    if not sender.active:
        raise RoutingError(Reason.SENDER_SUSPENDED, header.sender)
    if header.message_type in REPLY_MESSAGE_TYPES:
        return _resolve_reply(header, directory)
    if header.escalation_of is not None:
        target = directory.participant(directory.rules.escalation_recipient)
        if target is None or not _accepts(target, header.category, header.sender):
            raise RoutingError(Reason.NO_RECIPIENT)
        return Resolution(recipients=(target.participant_id,))

    rules = directory.rules
    j, c, prio = header.jurisdiction, header.category, header.priority
    industry = Role.ELECTRONIC_SERVICE_PROVIDER in sender.roles
    roles: set[Role] = set()
    for rule in rules.delivery:
        if rule.matches(j, c, prio):
            roles.update(rule.roles)
    if industry:  # an industry reporter's referral goes to the hotlines only
        roles = {Role.HOTLINE}
    urgent_roles = set(rules.urgent_roles) - roles if prio is Priority.URGENT else set()
    if industry:
        urgent_roles = set()

    regular: set[str] = set()
    urgent: set[str] = set()
    for p in directory.participants:
        if p.jurisdiction != j or not _accepts(p, c, header.sender):
            continue
        if roles.intersection(p.roles):
            regular.add(p.participant_id)
        elif urgent_roles.intersection(p.roles):
            urgent.add(p.participant_id)

    found = regular | urgent
    orphan = not found
    if orphan:
        coordinator = directory.participant(rules.coordinator)
        if coordinator is not None and _accepts(coordinator, c, header.sender):
            found.add(coordinator.participant_id)

    copies: set[str] = set()
    for copy in () if industry else rules.standing_copies:
        target = directory.participant(copy.recipient)
        if copy.matches(j, c, prio) and target is not None and _accepts(target, c, header.sender):
            copies.add(target.participant_id)
    copies -= found

    recipients = tuple(sorted(found | copies))
    if not recipients:
        raise RoutingError(Reason.NO_RECIPIENT)
    return Resolution(
        recipients=recipients,
        orphan=orphan,
        urgent=tuple(sorted(urgent)),
        copies=tuple(sorted(copies)),
    )


def _resolve_reply(header: RoutingInput, directory: Directory) -> Resolution:
    if len(header.recipients) != 1:
        raise RoutingError(Reason.REPLY_NEEDS_ONE_RECIPIENT)
    (target_id,) = header.recipients
    if target_id == header.sender:
        raise RoutingError(Reason.REPLY_TO_SELF, target_id)
    target = directory.participant(target_id)
    if target is None:
        raise RoutingError(Reason.UNKNOWN_RECIPIENT, target_id)
    if not target.active:
        raise RoutingError(Reason.RECIPIENT_SUSPENDED, target_id)
    return Resolution(recipients=(target_id,))


def recipients_for(header: RoutingInput, directory: Directory) -> tuple[str, ...]:
    """Convenience: ``resolve(header, directory).recipients``."""
    return resolve(header, directory).recipients


def check_routing(header: RoutingInput, directory: Directory) -> Resolution:
    """Router side: resolve again and insist the header names exactly that set.

    Raises :class:`RoutingError` (``recipient_mismatch`` when the sets differ).
    """
    resolution = resolve(header, directory)
    if tuple(sorted(set(header.recipients))) != resolution.recipients:
        raise RoutingError(Reason.RECIPIENT_MISMATCH, header.sender)
    return resolution


__all__ = [
    "Resolution",
    "RoutingError",
    "RoutingInput",
    "RoutingRequest",
    "check_routing",
    "recipients_for",
    "resolve",
]
