"""The live directory: the newest valid signed directory a running service has seen.

Pure — no I/O. Services start from the directory file and then *offer* every
record of the directory topic (``<prefix>.directory``) to :meth:`LiveDirectory.offer`;
the follower in ``adapters`` does the reading. An offer is taken only if, as a
whole:

- it verifies against the pinned root key (:func:`keys.verify_directory`: shape,
  signature, every key decodes to its id),
- it is of the same federation,
- its version is higher than the current one (``rollback`` otherwise), or equal
  with the same content (``same``: nothing changes; other content is an
  ``equivocation``).

A refused offer changes nothing: the service goes on with the version it had and
the caller reports the :class:`Offer`. Readers take :attr:`LiveDirectory.current`
once per unit of work (a batch, an envelope) and use that snapshot throughout, so
one decision never mixes two versions.

:func:`answerable` says whether a participant can still be sent a reply — the
question a recipient asks before it seals a receipt, and the tracker before it
waits for one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from keys import _primitives as P
from keys._directory import current_sealing_key, verify_directory
from keys._errors import DirectoryError, DirectoryReason
from keys._keys import VerifyKey
from schemas import Directory

__all__ = ["LiveDirectory", "Offer", "OfferOutcome", "answerable"]


class OfferOutcome(enum.StrEnum):
    """What :meth:`LiveDirectory.offer` did with one offered record."""

    ACCEPTED = "accepted"
    """A newer valid version: it is now :attr:`LiveDirectory.current`."""
    SAME = "same"
    """The version already current (a re-read, a re-publish): nothing changed."""
    REFUSED = "refused"
    """Not taken (see :attr:`Offer.reason`); the current version stays."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What one offered record did."""

    outcome: OfferOutcome
    version: int | None
    """The offered version, when it could be read."""
    reason: DirectoryReason | None = None
    detail: str | None = None


def _digest(directory: Directory) -> bytes:
    return P.sha256(directory.canonical_bytes())


class LiveDirectory:
    """Holds the current directory; see the module docstring.

    ``root`` is the pinned root key; without it (a fixed directory, as in tests)
    every offer is refused. ``listeners`` are called with each newly accepted
    version, in the caller's thread.
    """

    def __init__(self, initial: Directory, *, root: VerifyKey | None = None) -> None:
        self._current = initial
        self._digest = _digest(initial)
        self._root = root
        self._listeners: list[Callable[[Directory], None]] = []
        self.refused = 0
        """How many offers were refused (a counter for status and metrics)."""

    @property
    def current(self) -> Directory:
        return self._current

    @property
    def version(self) -> int:
        return self._current.version

    def listen(self, listener: Callable[[Directory], None]) -> None:
        """Call ``listener`` with every version accepted from now on."""
        self._listeners.append(listener)

    def offer(self, data: bytes) -> Offer:
        """Verify signed-directory bytes and take them if newer (module docstring)."""
        result = self._check(data)
        if isinstance(result, Offer):
            if result.outcome is OfferOutcome.REFUSED:
                self.refused += 1
            return result
        self._current, self._digest = result, _digest(result)
        for listener in self._listeners:
            listener(result)
        return Offer(OfferOutcome.ACCEPTED, result.version)

    def _check(self, data: bytes) -> Directory | Offer:
        if self._root is None:
            return Offer(
                OfferOutcome.REFUSED, None, DirectoryReason.UNKNOWN_ROOT_KEY, "no pinned root key"
            )
        try:
            directory = verify_directory(data, root=self._root)
        except DirectoryError as exc:
            return Offer(OfferOutcome.REFUSED, None, exc.reason, exc.detail)
        version, current = directory.version, self._current
        if directory.federation_id != current.federation_id:
            return Offer(
                OfferOutcome.REFUSED,
                version,
                DirectoryReason.OTHER_FEDERATION,
                f"federation {directory.federation_id!r}, not {current.federation_id!r}",
            )
        if version < current.version:
            return Offer(
                OfferOutcome.REFUSED,
                version,
                DirectoryReason.ROLLBACK,
                f"version {version} is older than the current version {current.version}",
            )
        if version == current.version:
            if _digest(directory) == self._digest:
                return Offer(OfferOutcome.SAME, version)
            return Offer(
                OfferOutcome.REFUSED,
                version,
                DirectoryReason.EQUIVOCATION,
                f"version {version} is already current with different content",
            )
        return directory


def answerable(directory: Directory, participant_id: str, now: datetime) -> bool:
    """Whether a reply can be sealed to ``participant_id`` at ``now``: it is listed,
    active, and has a valid encryption key. A revoked or suspended sender is not."""
    p = directory.participant(participant_id)
    return p is not None and p.active and current_sealing_key(p, now) is not None
