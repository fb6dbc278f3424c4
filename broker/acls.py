"""Least-privilege Kafka access, derived from the signed directory.

:func:`plan` is pure: the directory, the settings and the time give the exact set
of :class:`~adapters.kafka.Grant` the federation needs, nothing more::

    participant p        WRITE its outbox, READ its inbox, READ its consumer group,
    (active, with a      READ the directory topic — all LITERAL: a prefix ACL on
     valid key)          <prefix>.outbox.de.a would also match <prefix>.outbox.de.ab
    crb-router           READ every outbox, WRITE every inbox (PREFIXED: the
                         router's own resources), WRITE dead letters and status,
                         READ+WRITE audit, READ the directory, READ its group,
                         WRITE its transactional ids (PREFIXED)
    crb-tracker          READ+WRITE status and its state topic, READ the directory,
                         READ its group, WRITE its transactional id; WRITE every
                         inbox (PREFIXED: deconfliction notices, signed); for
                         redrives WRITE outboxes and actions

READ and WRITE imply DESCRIBE; idempotent producers need no cluster ACL (Kafka
2.8+). Nobody but the admin (a super user) may create or delete topics, alter
topic configs, write the directory topic or touch ACLs and users.

:func:`diff` compares the plan with the cluster's ALLOW ACLs *inside this
federation's namespace* (its topic prefix, its groups and transactional ids) and
:func:`apply` makes the cluster match: it creates what is missing, removes what
the directory no longer grants (a revoked or suspended participant loses Kafka
access), and keeps the SCRAM users in step (every granted principal whose
credential the operator holds exists with that credential's password; every
participant without grants is disabled, never deleted, see ``SecurityAdmin``).
ACLs outside the namespace are reported, never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from adapters.kafka import (
    ROUTER,
    TRACKER,
    CredentialStore,
    Grant,
    KafkaClients,
)
from broker.settings import Settings
from schemas import Directory, KeyKind, Participant, TopicNames

__all__ = ["AclReport", "apply", "diff", "entitled", "plan", "redrive_transactional_id"]


def entitled(participant: Participant, now: datetime) -> bool:
    """Whether a participant may reach Kafka at all: active, with a valid signing key."""
    return participant.active and bool(participant.keys_valid_at(KeyKind.SIGNING, now))


def _tracker_transactional_id(settings: Settings) -> str:
    return settings.tracker.transactional_id or f"{settings.topics.prefix}-tracker"


def redrive_transactional_id(settings: Settings) -> str:
    """The tracker's transactional id for redrives (apart from its state's)."""
    return f"{_tracker_transactional_id(settings)}.redrive"


def plan(directory: Directory, settings: Settings, *, now: datetime) -> frozenset[Grant]:
    """Every grant the federation needs (see the module docstring)."""
    names = TopicNames(settings.topics.prefix)
    grants: set[Grant] = set()

    def allow(principal: str, kind: str, name: str, *ops: str, prefixed: bool = False) -> None:
        for op in ops:
            grants.add(Grant(principal, kind, name, op, prefixed))  # type: ignore[arg-type]

    for p in directory.participants:
        if not entitled(p, now):
            continue
        pid = p.participant_id
        allow(pid, "TOPIC", names.outbox(pid), "WRITE")
        allow(pid, "TOPIC", names.inbox(pid), "READ")
        allow(pid, "TOPIC", names.directory, "READ")
        allow(pid, "GROUP", f"{settings.adapter.group_id_prefix}.{pid}", "READ")

    r = settings.router
    allow(ROUTER, "TOPIC", f"{names.prefix}.outbox.", "READ", prefixed=True)
    allow(ROUTER, "TOPIC", f"{names.prefix}.inbox.", "WRITE", prefixed=True)
    allow(ROUTER, "TOPIC", names.dlq, "WRITE")
    allow(ROUTER, "TOPIC", names.status, "WRITE")
    allow(ROUTER, "TOPIC", names.audit, "READ", "WRITE")
    allow(ROUTER, "TOPIC", names.directory, "READ")
    allow(ROUTER, "GROUP", r.group_id, "READ")
    allow(ROUTER, "TRANSACTIONAL_ID", f"{r.transactional_id_prefix}.", "WRITE", prefixed=True)

    t = settings.tracker
    allow(TRACKER, "TOPIC", names.status, "READ", "WRITE")
    allow(TRACKER, "TOPIC", names.tracker, "READ", "WRITE")
    allow(TRACKER, "TOPIC", names.directory, "READ")
    allow(TRACKER, "GROUP", t.group_id, "READ")
    allow(TRACKER, "TRANSACTIONAL_ID", _tracker_transactional_id(settings), "WRITE")
    # Dead letters: the tracker lists them, and redrives one on an operator's word —
    # its original bytes back into the outbox they came from (the router checks them
    # all again) — recording the action on the actions topic, in one transaction.
    allow(TRACKER, "TOPIC", names.dlq, "READ")
    allow(TRACKER, "TOPIC", names.actions, "READ", "WRITE")
    allow(TRACKER, "TOPIC", f"{names.prefix}.outbox.", "WRITE", prefixed=True)
    allow(TRACKER, "TRANSACTIONAL_ID", redrive_transactional_id(settings), "WRITE")
    # The health strip and alerts: how far the router and each participant's adapter
    # have read (group offsets against the topics' ends). Describe only.
    allow(TRACKER, "GROUP", r.group_id, "DESCRIBE")
    allow(TRACKER, "GROUP", f"{settings.adapter.group_id_prefix}.", "DESCRIBE", prefixed=True)
    # Deconfliction notices go into the matching participants' inboxes, in the
    # tracker's own transaction (WRITE implies DESCRIBE for the health strip too).
    allow(TRACKER, "TOPIC", f"{names.prefix}.inbox.", "WRITE", prefixed=True)
    return frozenset(grants)


def _ours(grant: Grant, settings: Settings) -> bool:
    """Whether a grant is in this federation's namespace (so :func:`apply` owns it)."""
    prefix = f"{settings.topics.prefix}."
    if grant.kind == "TOPIC":
        return grant.name.startswith(prefix)
    if grant.kind == "GROUP":
        return grant.name in (settings.router.group_id, settings.tracker.group_id) or (
            grant.name.startswith(f"{settings.adapter.group_id_prefix}.")
        )
    if grant.kind == "TRANSACTIONAL_ID":
        return grant.name.startswith(settings.router.transactional_id_prefix) or (
            grant.name in (_tracker_transactional_id(settings), redrive_transactional_id(settings))
        )
    return False


@dataclass
class AclReport:
    """What :func:`apply` (or a dry run) found and did."""

    created: list[Grant] = field(default_factory=list)
    removed: list[Grant] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)
    users_removed: list[str] = field(default_factory=list)
    missing_credentials: list[str] = field(default_factory=list)
    """Principals granted access whose credential this operator does not hold."""
    foreign: int = 0
    """ALLOW ACLs outside the namespace (left alone)."""


def diff(
    wanted: Iterable[Grant], existing: Iterable[Grant], settings: Settings
) -> tuple[list[Grant], list[Grant], int]:
    """(to create, to remove, foreign count) — pure."""
    wanted_set = set(wanted)
    ours = {g for g in existing if _ours(g, settings)}
    foreign = sum(1 for g in existing if not _ours(g, settings))
    return sorted(wanted_set - ours), sorted(ours - wanted_set), foreign


async def apply(
    directory: Directory,
    settings: Settings,
    clients: KafkaClients,
    credentials: CredentialStore,
    *,
    now: datetime,
    dry_run: bool = False,
) -> AclReport:
    """Make the cluster's ACLs and SCRAM users match :func:`plan` (see the module
    docstring); ``dry_run`` only reports. Needs the admin's login."""
    security = clients.security()
    wanted = plan(directory, settings, now=now)
    create, remove, foreign = diff(wanted, await security.grants(), settings)
    report = AclReport(created=create, removed=remove, foreign=foreign)

    granted = {g.principal for g in wanted}
    participants = {p.participant_id for p in directory.participants}
    users = await security.scram_users()
    upserts = []
    for principal in sorted(granted):
        credential = credentials.load(principal)
        if credential is None:
            if principal not in users:
                report.missing_credentials.append(principal)
            continue
        if principal not in users:
            report.users_created.append(principal)
        upserts.append(credential)  # the operator's credential is the truth
    # A participant the directory no longer entitles loses its login too.
    report.users_removed = sorted((users & participants) - granted)
    if dry_run:
        return report
    await security.upsert_users(upserts)
    await security.disable_users(report.users_removed)
    await security.delete(remove)
    await security.create(create)
    return report
