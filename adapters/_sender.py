"""Sending: validate -> resolve -> seal -> produce to the participant's own outbox.

:class:`Identity` is a participant's keys and the verified directory.
:class:`Sender` seals (``keys.seal``; recipients from ``schemas.resolve``) and
produces through :class:`~adapters._kafka.Outbox`, returning the message id only
after Kafka acknowledged the record.

Message ids are fixed before anything is produced: callers that must survive a
crash (the drop folder) seal first, persist the :class:`Sealed` envelope, then
``send`` it, and after a restart ``send`` the same bytes again. An envelope older
than the router's freshness window (24 h) is refused as ``stale``; such a pending
message is re-sealed with the SAME message and case ids (:meth:`Sender.reseal`),
so even then a copy the router already forwarded is refused as a duplicate.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

import pydantic
import structlog

from adapters._errors import InputError, SendError, StateError
from adapters._model import (
    ReceivedMessage,
    Submission,
    case_ack_for,
    derived_message_id,
    moved_referral_draft,
    receipt_for,
    referral_draft,
)
from adapters._outbox import Outbox
from adapters._state import PendingReferral
from adapters.kafka import trace_id
from keys import (
    DeconflictionKey,
    Draft,
    Keystore,
    KeystoreError,
    LiveDirectory,
    OpeningKey,
    PendingCopyError,
    SealError,
    SigningKey,
    current_sealing_key,
    current_signing_record,
    deconfliction_tags,
    open_for_self,
    parse,
    seal,
    seal_for_self,
)
from keys import KeyId as KeyIdType
from schemas import Clock, Decision, Directory, Referral, canonical_json, utcnow, uuid7

__all__ = ["Identity", "PendingKeeper", "Sealed", "Sender"]

log = structlog.get_logger("crb.adapter")


class Identity:
    """Who this adapter is: participant id, its private keys, and the directory it
    follows (a :class:`keys.LiveDirectory`, or a fixed :class:`Directory`).

    Loaded from a keystore (:meth:`load`), the keys follow the directory: when a
    newer version names another current signing key (a rotation), the next
    envelope is signed with it, and opening keys are re-read from the keystore so
    messages sealed to a new encryption key open. A key the keystore does not
    have is logged and the previous one kept.
    """

    __slots__ = (
        "_keys_version",
        "_opening",
        "_signing",
        "_store",
        "deconfliction",
        "live",
        "participant",
    )

    def __init__(
        self,
        participant: str,
        signing_key: SigningKey,
        opening_keys: Iterable[OpeningKey],
        directory: Directory | LiveDirectory,
        *,
        store: Keystore | None = None,
        deconfliction: DeconflictionKey | None = None,
    ) -> None:
        self.participant = participant
        self.deconfliction = deconfliction
        """The federation deconfliction key it tags referrals with (``None``: no tags)."""
        self._signing = signing_key
        self._opening = tuple(opening_keys)
        self.live = directory if isinstance(directory, LiveDirectory) else LiveDirectory(directory)
        self._store = store
        self._keys_version = self.live.version

    def __repr__(self) -> str:
        return f"Identity({self.participant!r}, directory v{self.live.version})"

    @classmethod
    def load(
        cls,
        store: Keystore,
        participant: str,
        directory: Directory | LiveDirectory,
        *,
        now: datetime,
    ) -> Identity:
        """The participant's current signing key (per the directory) and all opening keys."""
        current = directory.current if isinstance(directory, LiveDirectory) else directory
        p = current.participant(participant)
        if p is None:
            raise StateError(f"{participant} is not in the directory")
        record = current_signing_record(p, now)
        if record is None:
            raise StateError(f"{participant} has no valid signing key in the directory")
        try:
            signing = store.signing_key(participant, KeyIdType(record.key_id))
            opening = tuple(store.opening_keys(participant).values())
            tagging = store.deconfliction_key(participant)
        except KeystoreError as exc:
            raise StateError(str(exc)) from exc
        return cls(participant, signing, opening, directory, store=store, deconfliction=tagging)

    @property
    def directory(self) -> Directory:
        """The current directory (take it once per envelope)."""
        return self.live.current

    @property
    def signing_key(self) -> SigningKey:
        self._follow()
        return self._signing

    @property
    def opening_keys(self) -> tuple[OpeningKey, ...]:
        self._follow()
        return self._opening

    def _follow(self) -> None:
        store = self._store
        if store is None or self.live.version == self._keys_version:
            return
        self._keys_version = self.live.version
        p = self.live.current.participant(self.participant)
        record = current_signing_record(p, utcnow()) if p is not None else None
        try:
            if record is not None and record.key_id != self._signing.key_id:
                self._signing = store.signing_key(self.participant, KeyIdType(record.key_id))
                log.info("signing_key_switched", participant=self.participant, key_id=record.key_id)
            self._opening = tuple(store.opening_keys(self.participant).values())
        except KeystoreError as exc:
            log.warning("keys_not_followed", participant=self.participant, error=str(exc))


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed envelope and the ids fixed in it."""

    message_id: UUID
    case_id: UUID
    sealed_at: datetime
    envelope: bytes = field(repr=False)
    reference: str | None = None
    """The sender's own case reference, for a referral (indexed locally, never sent
    in clear)."""


class PendingKeeper(Protocol):
    """Where a sender keeps what it sent until it is answered (``StateStore``)."""

    def keep_pending(self, p: PendingReferral, /) -> None: ...
    def mark_pending_sent(self, message_id: UUID, *, at: datetime) -> None: ...


class Sender:
    """Seals with ``identity`` and produces through ``outbox``.

    With ``pending`` (the adapter's state store), every referral sealed is also kept
    as a copy sealed to the adapter's own key until each recipient's receipt
    arrives (:class:`adapters.PendingReferral`): what an escalation re-seals."""

    def __init__(
        self,
        identity: Identity,
        outbox: Outbox,
        *,
        clock: Clock = utcnow,
        rng: Callable[[int], bytes] = os.urandom,
        pending: PendingKeeper | None = None,
    ) -> None:
        self.identity = identity
        self.outbox = outbox
        self.clock = clock
        self.rng = rng
        self.pending = pending

    # -- sealing (no I/O) ------------------------------------------------------------

    def seal(self, draft: Draft, payload: pydantic.BaseModel) -> Sealed:
        now = self.clock()
        try:
            envelope = seal(
                draft,
                payload,
                signing_key=self.identity.signing_key,
                directory=self.identity.directory,
                now=now,
                rng=self.rng,
            )
        except SealError as exc:
            raise SendError(str(exc)) from exc
        assert draft.message_id is not None
        return Sealed(draft.message_id, draft.case_id, now, envelope)

    def seal_referral(
        self,
        submission: Submission,
        *,
        message_id: UUID | None = None,
        case_id: UUID | None = None,
    ) -> Sealed:
        """Seal a referral; the ids are drawn here unless given (a re-seal)."""
        now = self.clock()
        mid = message_id or uuid7(now, self.rng)
        cid = case_id or submission.case_id or uuid7(now, self.rng)
        key = self.identity.deconfliction
        draft = referral_draft(
            submission,
            sender=self.identity.participant,
            case_id=cid,
            message_id=mid,
            deconfliction=deconfliction_tags(submission.referral, key) if key else None,
        )
        sealed = self.seal(draft, submission.referral)
        if self.pending is not None:
            self._keep(sealed, submission)
        return dataclasses.replace(sealed, reference=submission.referral.reporter.reference)

    def _keep(self, sealed: Sealed, submission: Submission) -> None:
        keys = self.identity.opening_keys
        current = self._current_key_id()
        own = next((k for k in keys if k.key_id == current), keys[-1])
        copy = seal_for_self(
            canonical_json(submission.referral),
            own.sealing_key,
            context=str(sealed.message_id).encode(),
        )
        header = parse(sealed.envelope).header
        assert self.pending is not None
        self.pending.keep_pending(
            PendingReferral(
                message_id=sealed.message_id,
                case_id=sealed.case_id,
                jurisdiction=submission.jurisdiction,
                priority=header.priority,
                recipients=header.recipients,
                copy=copy,
                sealed_at=sealed.sealed_at,
            )
        )

    def _current_key_id(self) -> str | None:
        """The encryption key the directory names for this participant now."""
        p = self.identity.directory.participant(self.identity.participant)
        key = current_sealing_key(p, self.clock()) if p is not None else None
        return key.key_id if key is not None else None

    def _kept_referral(self, pending: PendingReferral) -> Referral:
        try:
            plaintext = open_for_self(
                pending.copy,
                self.identity.opening_keys,
                context=str(pending.message_id).encode(),
            )
        except PendingCopyError as exc:
            raise SendError(f"the kept copy of {pending.message_id}: {exc}") from exc
        return Referral.model_validate_json(plaintext)

    def seal_redelivery(self, pending: PendingReferral) -> Sealed:
        """The referral of ``pending`` sealed again under the SAME message and case
        ids (fresh time, content key and signature: other bytes), for an authorised
        redelivery (``broker.router.redelivery_allowed``). Not kept again."""
        referral = self._kept_referral(pending)
        key = self.identity.deconfliction
        draft = referral_draft(
            Submission(referral, pending.jurisdiction, pending.case_id),
            sender=self.identity.participant,
            case_id=pending.case_id,
            message_id=pending.message_id,
            deconfliction=deconfliction_tags(referral, key) if key else None,
        )
        return self.seal(draft, referral)

    def seal_escalation(self, pending: PendingReferral, escalate_to: str) -> Sealed:
        """The referral of ``pending`` re-sealed to the escalation recipient: a new
        referral of the same case with ``escalation_of`` naming the original, its id
        derived from the original and ``escalate_to`` (sealing it again after a crash
        gives the same id). Raises ``SendError`` when the copy cannot be opened or
        the directory names another escalation recipient now."""
        referral = self._kept_referral(pending)
        current = self.identity.directory.rules.escalation_recipient
        if current != escalate_to:
            raise SendError(
                f"the directory names {current} as escalation recipient, not {escalate_to}"
            )
        draft = Draft.for_referral(
            referral,
            sender=self.identity.participant,
            jurisdiction=pending.jurisdiction,
            case_id=pending.case_id,
            message_id=derived_message_id(pending.message_id, "escalation", escalate_to),
            escalation_of=pending.message_id,
        )
        sealed = self.seal(draft, referral)
        return dataclasses.replace(sealed, reference=referral.reporter.reference)

    def reseal(self, submission: Submission, old: Sealed) -> Sealed:
        """The same referral under the same ids, freshly dated (see the module docstring)."""
        return self.seal_referral(submission, message_id=old.message_id, case_id=old.case_id)

    def seal_receipt(self, original: ReceivedMessage, *, received_at: datetime) -> Sealed:
        draft, receipt = receipt_for(original, received_at=received_at)
        return self.seal(draft, receipt)

    def seal_case_ack(self, original: ReceivedMessage, decision: Decision) -> Sealed:
        self._check_replier(original)
        draft, ack = case_ack_for(original, decision, now=self.clock())
        return self.seal(draft, ack)

    def seal_move(
        self,
        original: ReceivedMessage,
        referral: Referral,
        *,
        to_jurisdiction: str,
        detail: str | None = None,
    ) -> tuple[Sealed, Sealed]:
        """(the new referral to ``to_jurisdiction``, the ``moved`` ack naming it)."""
        self._check_replier(original)
        draft, moved = moved_referral_draft(
            original, referral, to_jurisdiction=to_jurisdiction, detail=detail
        )
        forwarded = self.seal(draft, referral)
        return forwarded, self.seal_case_ack(original, moved)

    def _check_replier(self, original: ReceivedMessage) -> None:
        if original.recipient != self.identity.participant:
            raise InputError(
                f"{original.message_id} was received by {original.recipient}, "
                f"not {self.identity.participant}"
            )

    # -- producing -------------------------------------------------------------------

    async def send(self, sealed: Sealed) -> UUID:
        """Produce and wait for Kafka's acknowledgement; returns the message id."""
        traceparent = await self.outbox.send(
            sealed.envelope, case_id=sealed.case_id, message_id=sealed.message_id
        )
        if self.pending is not None and sealed.reference is not None:
            self.pending.mark_pending_sent(sealed.message_id, at=self.clock())
        log.info(
            "sent",
            message_id=str(sealed.message_id),
            case_id=str(sealed.case_id),
            trace_id=trace_id(traceparent),
        )
        return sealed.message_id

    async def send_referral(self, submission: Submission) -> UUID:
        return await self.send(self.seal_referral(submission))
