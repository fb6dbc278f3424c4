"""Deconfliction: which referrals share a keyed tag, and the notices that says so.

Pure: the tracker calls :func:`find_notices` with the handovers a batch changed
and its store *before* the batch commits, and writes the notices it returns in
the same Kafka transaction (signed, into the participants' inboxes), so each is
written exactly once.

A referral is *new* when the batch routes it and the store has no handover of
its message yet. A new referral with tags is matched against earlier ones of the
same epoch (stored, or earlier in the same batch) from **another participant and
another case** — a participant's own repeats and a moved case are not news. For
each of at most :data:`MAX_MATCHES` earlier referrals, earliest first:

- the new referral's sender gets ``already_referred`` (who referred it first,
  when, to whom and in which states, under which message);
- the earlier referral's sender gets ``referred_again`` (the same about the new
  one).

Notice ids are derived from (kind, own message, other message), so a notice
computed again after a failed transaction has the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime
from uuid import UUID

from broker.tracker._machine import Handover, HandoverStore
from schemas import DeconflictionNotice, MatchedReferral, NoticeKind

__all__ = ["MAX_MATCHES", "find_notices", "notice_id"]

MAX_MATCHES = 5
"""Earlier referrals a new one is reported against (viral content can match
hundreds; the first referrers are the ones to coordinate with)."""

_LABEL = b"crb/tracker/v1 notice id\x00"


def notice_id(kind: NoticeKind, own: UUID, other: UUID) -> UUID:
    """A UUIDv7 with ``own``'s timestamp and 74 bits of SHA-256 over the rest."""
    digest = hashlib.sha256(_LABEL + kind.value.encode() + own.bytes + other.bytes).digest()
    rand = int.from_bytes(digest[:10], "big")
    millis = own.int >> 80
    value = (millis << 80) | (0x7 << 76) | ((rand >> 68 & 0xFFF) << 64)
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return UUID(int=value)


def _matched(handovers: Sequence[Handover]) -> MatchedReferral:
    first = handovers[0]
    routed = [h.routed_at or h.updated_at for h in handovers]
    return MatchedReferral(
        message_id=first.message_id,
        case_id=first.case_id,
        sender=first.sender,
        jurisdiction=first.jurisdiction,
        referred_at=min(routed),
        states={h.recipient: h.state for h in handovers if h.recipient is not None},
    )


def find_notices(
    changed: Iterable[Handover],
    store: HandoverStore,
    now: datetime,
    *,
    silent: Container[str] = (),
) -> list[DeconflictionNotice]:
    """The notices a batch's changes call for (see the module docstring); none to
    a participant in ``silent`` (industry reporters learn nothing of others)."""
    batch: dict[UUID, list[Handover]] = {}
    for h in changed:
        batch.setdefault(h.message_id, []).append(h)
    new = [
        hs
        for mid, hs in batch.items()
        if hs[0].deconfliction is not None
        and any(h.routed_at is not None for h in hs)
        and next(iter(store.matching(message_id=mid)), None) is None
    ]
    notices: list[DeconflictionNotice] = []
    earlier_in_batch: list[list[Handover]] = []
    for hs in new:
        h = hs[0]
        tags = h.deconfliction
        assert tags is not None
        found: dict[UUID, int] = {}
        for mid, count in store.tagged(tags.epoch, tags.tags, limit=MAX_MATCHES * 4):
            found[mid] = count
        in_batch: Mapping[UUID, list[Handover]] = {o[0].message_id: o for o in earlier_in_batch}
        wanted = set(tags.tags)
        for mid, other in in_batch.items():
            d = other[0].deconfliction
            if d is not None and d.epoch == tags.epoch and (shared := len(wanted & set(d.tags))):
                found[mid] = shared
        earlier_in_batch.append(hs)
        matches = 0
        for mid, count in found.items():
            if matches >= MAX_MATCHES:
                break
            others = in_batch.get(mid) or list(store.matching(message_id=mid))
            if not others:
                continue
            o = others[0]
            if o.sender == h.sender or o.case_id == h.case_id:
                continue
            matches += 1
            notices.append(_notice(NoticeKind.ALREADY_REFERRED, hs, others, count, tags.epoch, now))
            notices.append(_notice(NoticeKind.REFERRED_AGAIN, others, hs, count, tags.epoch, now))
    return [n for n in notices if n.to not in silent]


def _notice(
    kind: NoticeKind,
    own: Sequence[Handover],
    other: Sequence[Handover],
    count: int,
    epoch: int,
    now: datetime,
) -> DeconflictionNotice:
    mine = own[0]
    return DeconflictionNotice(
        notice_id=notice_id(kind, mine.message_id, other[0].message_id),
        kind=kind,
        to=mine.sender,
        at=now,
        message_id=mine.message_id,
        case_id=mine.case_id,
        matched=_matched(other),
        matched_tags=count,
        epoch=epoch,
    )
