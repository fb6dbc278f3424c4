"""The signed federation directory: signing, verifying, rollback protection, edits.

A *signed directory* file is JSON::

    {"directory": {...Directory...}, "root_key_id": "ed25519-…", "signature": "<base64>"}

``signature`` is Ed25519 by the federation root key over::

    b"crb/directory/v1\\x00" || Directory.canonical_bytes()

Loading verifies, as a whole and before anything is used: the JSON shape, every
model invariant (``schemas.Directory``), the root key id against the pinned root
key, the signature, and that every public key decodes and has the key id derived
from it. Then the :class:`TrustStore` (a small JSON file) refuses a version lower
than the highest already accepted (``rollback``) and the same version with other
content (``equivocation``), and remembers the new one.

Edits (``add_participant``, ``rotate``, ``revoke``...) are pure: they take a
directory and return the next one with ``version + 1``; the caller signs it.
Rotation adds new keys valid from ``now`` and shortens every older key of the
participant to ``now + grace`` (if it ran longer): the newest key signs and is
encrypted to; old keys still verify and decrypt until they expire.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import pydantic

from keys import _primitives as P
from keys._errors import DirectoryError, DirectoryReason, KeystoreError
from keys._files import atomic_write
from keys._keys import Kem, KeyId, SealingKey, SigningKey, VerifyKey
from schemas import (
    Directory,
    KeyAlgorithm,
    KeyEncoding,
    KeyKind,
    Participant,
    ParticipantStatus,
    PublicKeyRecord,
    first_error,
)

__all__ = [
    "DIRECTORY_SIGNATURE_CONTEXT",
    "SignedDirectory",
    "TrustStore",
    "add_participant",
    "current_sealing_key",
    "current_signing_record",
    "load_directory",
    "record_for",
    "revoke",
    "rotate",
    "sealing_key_of",
    "set_status",
    "sign_directory",
    "verify_directory",
    "verify_key_of",
]

DIRECTORY_SIGNATURE_CONTEXT: Final = b"crb/directory/v1\x00"
DEFAULT_KEY_VALIDITY: Final = timedelta(days=365)
DEFAULT_ROTATION_GRACE: Final = timedelta(days=30)


class SignedDirectory(pydantic.BaseModel, frozen=True, extra="forbid"):
    """A directory with the root's signature; the on-disk/on-wire form."""

    directory: Directory
    root_key_id: str
    signature: str

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode("utf-8")


def _signed_bytes(directory: Directory) -> bytes:
    return DIRECTORY_SIGNATURE_CONTEXT + directory.canonical_bytes()


def sign_directory(directory: Directory, root: SigningKey) -> SignedDirectory:
    """Sign ``directory`` (whose ``root_key_id`` must name ``root``)."""
    if directory.root_key_id != root.key_id:
        raise DirectoryError(DirectoryReason.UNKNOWN_ROOT_KEY, "root_key_id is not this root key")
    _check_keys(directory)
    sig = base64.b64encode(root.sign(_signed_bytes(directory))).decode("ascii")
    return SignedDirectory(directory=directory, root_key_id=root.key_id, signature=sig)


# --- key records <-> role types ----------------------------------------------


@functools.lru_cache(maxsize=4096)
def _decode(algorithm: KeyAlgorithm, encoding: KeyEncoding, b64: str) -> VerifyKey | SealingKey:
    raw = base64.b64decode(b64)
    if algorithm is KeyAlgorithm.ED25519:
        return (
            VerifyKey.from_der(raw) if encoding is KeyEncoding.SPKI_DER else VerifyKey.from_raw(raw)
        )
    if algorithm is KeyAlgorithm.X25519:
        if encoding is KeyEncoding.SPKI_DER:
            raw = P.x25519_raw_from_der(raw)
        return SealingKey(Kem.X25519, raw)
    if encoding is not KeyEncoding.RAW:
        raise P.CryptoFailure("hybrid keys are published raw")
    return SealingKey(Kem.MLKEM768_X25519, raw)


def _decoded(record: PublicKeyRecord) -> VerifyKey | SealingKey:
    return _decoded_cached(record.algorithm, record.encoding, record.public_key, record.key_id)


@functools.lru_cache(maxsize=4096)
def _decoded_cached(
    algorithm: KeyAlgorithm, encoding: KeyEncoding, public_key: str, key_id: str
) -> VerifyKey | SealingKey:
    # Directory keys live for months and every envelope names them again: decode
    # (base64, DER, key-id hash) once per key. Keys are immutable; failures are
    # raised, never cached.
    key = _decode(algorithm, encoding, public_key)
    if key.key_id != key_id:
        raise P.CryptoFailure("key id does not match the key")
    return key


def verify_key_of(record: PublicKeyRecord) -> VerifyKey:
    """The ``VerifyKey`` of a signing record (cached; raises ``CryptoFailure`` if bad)."""
    key = _decoded(record)
    if not isinstance(key, VerifyKey):
        raise P.CryptoFailure("not a signing key")
    return key


def sealing_key_of(record: PublicKeyRecord) -> SealingKey:
    """The ``SealingKey`` of an encryption record (cached)."""
    key = _decoded(record)
    if not isinstance(key, SealingKey):
        raise P.CryptoFailure("not an encryption key")
    return key


def record_for(
    key: VerifyKey | SealingKey, *, not_before: datetime, not_after: datetime
) -> PublicKeyRecord:
    """The directory record publishing ``key``."""
    if isinstance(key, VerifyKey):
        kind, alg, enc, data = (
            KeyKind.SIGNING,
            KeyAlgorithm.ED25519,
            KeyEncoding.SPKI_DER,
            key.to_der(),
        )
    elif key.kem is Kem.X25519:
        kind, alg, enc = KeyKind.ENCRYPTION, KeyAlgorithm.X25519, KeyEncoding.SPKI_DER
        data = P.x25519_der_from_raw(key.public_raw())
    else:
        kind, alg, enc = KeyKind.ENCRYPTION, KeyAlgorithm.MLKEM768_X25519, KeyEncoding.RAW
        data = key.public_raw()
    return PublicKeyRecord(
        key_id=key.key_id,
        kind=kind,
        algorithm=alg,
        encoding=enc,
        public_key=base64.b64encode(data).decode("ascii"),
        not_before=not_before,
        not_after=not_after,
    )


def _newest_valid(participant: Participant, kind: KeyKind, now: datetime) -> PublicKeyRecord | None:
    valid = participant.keys_valid_at(kind, now)
    return max(valid, key=lambda r: (r.not_before, r.key_id)) if valid else None


def current_signing_record(participant: Participant, now: datetime) -> PublicKeyRecord | None:
    """The signing key a participant signs with at ``now``: the newest valid one."""
    return _newest_valid(participant, KeyKind.SIGNING, now)


def current_sealing_key(participant: Participant, now: datetime) -> SealingKey | None:
    """The key to encrypt to at ``now``: the newest valid encryption key."""
    record = _newest_valid(participant, KeyKind.ENCRYPTION, now)
    return None if record is None else sealing_key_of(record)


# --- verification --------------------------------------------------------------


def _check_keys(directory: Directory) -> None:
    owners = [(p.participant_id, p.keys) for p in directory.participants]
    owners += [(f"the {s.role.value}", s.keys) for s in directory.services]
    for owner, records in owners:
        for record in records:
            try:
                _decoded(record)
            except (P.CryptoFailure, ValueError, binascii.Error) as exc:
                raise DirectoryError(
                    DirectoryReason.INVALID,
                    f"key {record.key_id} of {owner} is not a valid key with that id",
                ) from exc


def verify_directory(data: bytes, *, root: VerifyKey) -> Directory:
    """Parse and verify signed-directory bytes against the pinned ``root`` key.

    Pure (no trust-store check): use :func:`load_directory` or :class:`TrustStore`
    for rollback protection.
    """
    try:
        signed = SignedDirectory.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise DirectoryError(DirectoryReason.MALFORMED, first_error(exc)) from exc
    directory = signed.directory
    if signed.root_key_id != root.key_id or directory.root_key_id != root.key_id:
        raise DirectoryError(
            DirectoryReason.UNKNOWN_ROOT_KEY,
            f"signed by {signed.root_key_id}, but the pinned root key is {root.key_id}",
        )
    try:
        signature = base64.b64decode(signed.signature, validate=True)
    except binascii.Error as exc:
        raise DirectoryError(DirectoryReason.MALFORMED, "signature is not base64") from exc
    if not root.verify(signature, _signed_bytes(directory)):
        raise DirectoryError(DirectoryReason.BAD_SIGNATURE, "root signature does not verify")
    _check_keys(directory)
    return directory


class TrustStore:
    """Remembers the highest directory version accepted per federation (a JSON file).

    ``{"federations": {"<federation_id>": {"version": n, "sha256": "<hex>"}}}``
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"{self.path}: unreadable trust store") from exc
        feds = data.get("federations") if isinstance(data, dict) else None
        if not isinstance(feds, dict):
            raise KeystoreError(f"{self.path}: unreadable trust store")
        return feds

    def highest(self, federation_id: str) -> int | None:
        entry = self._read().get(federation_id)
        v = entry.get("version") if isinstance(entry, dict) else None
        return v if isinstance(v, int) else None

    def check(self, directory: Directory) -> None:
        """Refuse a rollback or an equivocation; do not record anything."""
        entry = self._read().get(directory.federation_id)
        if not isinstance(entry, dict):
            return
        seen, digest = entry.get("version"), entry.get("sha256")
        if not isinstance(seen, int):
            return
        if directory.version < seen:
            raise DirectoryError(
                DirectoryReason.ROLLBACK,
                f"version {directory.version} is older than accepted version {seen}",
            )
        if directory.version == seen and digest != P.sha256(directory.canonical_bytes()).hex():
            raise DirectoryError(
                DirectoryReason.EQUIVOCATION,
                f"version {seen} was already accepted with different content",
            )

    def accept(self, directory: Directory) -> None:
        """Check, then remember ``directory`` as the newest accepted version."""
        self.check(directory)
        feds = self._read()
        feds[directory.federation_id] = {
            "version": directory.version,
            "sha256": P.sha256(directory.canonical_bytes()).hex(),
        }
        data = json.dumps({"federations": feds}, indent=2, sort_keys=True) + "\n"
        try:
            atomic_write(self.path, data.encode("utf-8"))
        except OSError as exc:
            raise KeystoreError(f"{self.path}: cannot write trust store: {exc.strerror}") from exc


def load_directory(path: Path, *, root: VerifyKey, trust_store: TrustStore | None) -> Directory:
    """Read, verify (:func:`verify_directory`) and, with a trust store, refuse rollback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DirectoryError(DirectoryReason.MALFORMED, f"{path}: {exc.strerror}") from exc
    directory = verify_directory(data, root=root)
    if trust_store is not None:
        trust_store.accept(directory)
    return directory


# --- edits (pure; each returns version + 1) -------------------------------------


def _next(directory: Directory, participants: list[Participant], now: datetime) -> Directory:
    data = directory.model_dump()
    data.update(
        version=directory.version + 1,
        issued_at=now,
        participants=[p.model_dump() for p in participants],
    )
    return Directory.model_validate(data)


def _replace(directory: Directory, participant: Participant) -> list[Participant]:
    return [
        participant if p.participant_id == participant.participant_id else p
        for p in directory.participants
    ]


def _require(directory: Directory, participant_id: str) -> Participant:
    p = directory.participant(participant_id)
    if p is None:
        raise DirectoryError(DirectoryReason.INVALID, f"no participant {participant_id!r}")
    return p


def add_participant(directory: Directory, participant: Participant, *, now: datetime) -> Directory:
    """The next directory version with ``participant`` added (its id must be new)."""
    if directory.participant(participant.participant_id) is not None:
        raise DirectoryError(
            DirectoryReason.INVALID, f"participant {participant.participant_id!r} already exists"
        )
    return _next(directory, [*directory.participants, participant], now)


def rotate(
    directory: Directory,
    participant_id: str,
    *,
    new_keys: tuple[VerifyKey | SealingKey, ...],
    now: datetime,
    validity: timedelta = DEFAULT_KEY_VALIDITY,
    grace: timedelta = DEFAULT_ROTATION_GRACE,
) -> Directory:
    """Publish ``new_keys`` from ``now``; older keys of the same kinds end at ``now + grace``."""
    p = _require(directory, participant_id)
    kinds = {KeyKind.SIGNING if isinstance(k, VerifyKey) else KeyKind.ENCRYPTION for k in new_keys}
    cut = now + grace
    kept = [
        r.model_copy(update={"not_after": cut})
        if r.kind in kinds and r.not_after > cut and r.not_before < cut
        else r
        for r in p.keys
    ]
    added = [record_for(k, not_before=now, not_after=now + validity) for k in new_keys]
    # Drop long-dead keys so the participant stays under its key limit.
    kept = [r for r in kept if r.not_after > now - validity]
    updated = p.model_copy(update={"keys": (*kept, *added)})
    return _next(
        directory, _replace(directory, Participant.model_validate(updated.model_dump())), now
    )


def revoke(
    directory: Directory, participant_id: str, *, key_id: KeyId | None, now: datetime
) -> Directory:
    """Revoke one key (or, with ``key_id=None``, every key) of a participant at ``now``."""
    p = _require(directory, participant_id)
    if key_id is not None and p.key(key_id) is None:
        raise DirectoryError(DirectoryReason.INVALID, f"{participant_id} has no key {key_id!r}")
    keys = tuple(
        r.model_copy(update={"revoked_at": now})
        if (key_id is None or r.key_id == key_id) and r.revoked_at is None
        else r
        for r in p.keys
    )
    updated = Participant.model_validate(p.model_copy(update={"keys": keys}).model_dump())
    return _next(directory, _replace(directory, updated), now)


def set_status(
    directory: Directory, participant_id: str, status: ParticipantStatus, *, now: datetime
) -> Directory:
    """The next directory version with the participant active or suspended."""
    p = _require(directory, participant_id)
    updated = Participant.model_validate(p.model_copy(update={"status": status}).model_dump())
    return _next(directory, _replace(directory, updated), now)
