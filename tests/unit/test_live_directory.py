"""The live directory (pure): which offered versions a running service takes.

Newer and validly signed: taken. The same version again: nothing changes. Older,
equivocating, badly signed, of another federation, malformed, or with no pinned
root: refused, reported, and the current version stays.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import keys
from keys import DirectoryReason, LiveDirectory, OfferOutcome, answerable
from keys.testing import Federation
from schemas import Directory, ParticipantStatus
from tests.unit._federation import MEMBERS, NOW, federation, signed_bytes

FED = federation()
V1 = FED.directory()


def _bumped(directory: Directory, steps: int = 1) -> Directory:
    for _ in range(steps):
        directory = keys.set_status(
            directory, "nl.police", ParticipantStatus.ACTIVE, now=NOW + timedelta(minutes=1)
        )
    return directory


def _live() -> LiveDirectory:
    return LiveDirectory(V1, root=FED.root.verify_key)


def test_a_newer_version_is_taken_and_listeners_hear_of_it() -> None:
    live = _live()
    heard: list[int] = []
    live.listen(lambda d: heard.append(d.version))
    v2 = _bumped(V1)
    offer = live.offer(signed_bytes(FED, v2))
    assert offer.outcome is OfferOutcome.ACCEPTED
    assert (live.version, heard, live.refused) == (2, [2], 0)
    assert live.current == v2


def test_a_version_can_skip_ahead() -> None:
    live = _live()
    assert live.offer(signed_bytes(FED, _bumped(V1, 3))).outcome is OfferOutcome.ACCEPTED
    assert live.version == 4


def test_the_same_version_again_changes_nothing() -> None:
    live = _live()
    heard: list[int] = []
    live.listen(lambda d: heard.append(d.version))
    offer = live.offer(signed_bytes(FED, V1))
    assert (offer.outcome, offer.version, heard, live.refused) == (OfferOutcome.SAME, 1, [], 0)


def _refused(live: LiveDirectory, data: bytes) -> DirectoryReason | None:
    before = live.current
    offer = live.offer(data)
    assert offer.outcome is OfferOutcome.REFUSED
    assert live.current is before, "a refused offer must not change the current version"
    assert offer.detail
    return offer.reason


def test_rollback_is_refused() -> None:
    live = _live()
    live.offer(signed_bytes(FED, _bumped(V1, 2)))
    assert _refused(live, signed_bytes(FED, _bumped(V1))) is DirectoryReason.ROLLBACK
    assert _refused(live, signed_bytes(FED, V1)) is DirectoryReason.ROLLBACK
    assert (live.version, live.refused) == (3, 2)


def test_equivocation_is_refused() -> None:
    """Version 1 again, validly signed, but with other content."""
    live = _live()
    other = FED.directory(without=["nl.police"])
    assert other.version == V1.version
    assert _refused(live, signed_bytes(FED, other)) is DirectoryReason.EQUIVOCATION


def test_a_foreign_root_is_refused() -> None:
    """Signed by another root key (an attacker's federation with our id)."""
    live = _live()
    impostor = Federation(
        MEMBERS, not_before=NOW, not_after=NOW + timedelta(days=1), federation_id=V1.federation_id
    )
    forged = impostor.directory(version=9)
    assert _refused(live, signed_bytes(impostor, forged)) is DirectoryReason.UNKNOWN_ROOT_KEY


def test_a_bad_signature_is_refused() -> None:
    live = _live()
    data = bytearray(signed_bytes(FED, _bumped(V1)))
    at = data.index(b'"version": 2')
    data[at + len(b'"version": ')] = ord("7")  # version 7, signature of version 2
    assert _refused(live, bytes(data)) is DirectoryReason.BAD_SIGNATURE


@pytest.mark.parametrize("data", [b"", b"{", b'{"directory": {}}', b"\xff" * 64])
def test_malformed_records_are_refused(data: bytes) -> None:
    assert _refused(_live(), data) is DirectoryReason.MALFORMED


def test_another_federation_is_refused() -> None:
    """Same root key, other federation id: not the federation being followed."""
    other = Federation(
        MEMBERS, not_before=NOW, not_after=NOW + timedelta(days=1), root=FED.root, federation_id="x"
    )
    data = signed_bytes(other, other.directory(version=5))
    assert _refused(_live(), data) is DirectoryReason.OTHER_FEDERATION


def test_without_a_pinned_root_every_offer_is_refused() -> None:
    live = LiveDirectory(V1)
    assert _refused(live, signed_bytes(FED, _bumped(V1))) is DirectoryReason.UNKNOWN_ROOT_KEY


def test_answerable_follows_status_and_keys() -> None:
    assert answerable(V1, "de.hotline", NOW)
    assert not answerable(V1, "xx.unknown", NOW)
    suspended = keys.set_status(V1, "de.hotline", ParticipantStatus.SUSPENDED, now=NOW)
    assert not answerable(suspended, "de.hotline", NOW)
    revoked = keys.revoke(V1, "de.hotline", key_id=None, now=NOW)
    assert not answerable(revoked, "de.hotline", NOW)
    # Only the signing key revoked: encryption still works, so a reply can be sealed.
    signing = FED.signing("de.hotline").key_id
    one = keys.revoke(V1, "de.hotline", key_id=signing, now=NOW)
    assert answerable(one, "de.hotline", NOW)
