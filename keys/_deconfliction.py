"""The federation deconfliction key and the keyed tags a sender puts in a header.

See :mod:`schemas._deconfliction` for the design and what the tags leak. The key
is 32 random bytes per ``epoch``, shared by the participants (each keystore holds
a copy: ``participants/<id>/deconfliction-<epoch>.key``), never by the operator's
router or tracker. A sender tags with the highest epoch it holds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from schemas import (
    MAX_TAGS,
    TAG_LABEL,
    TAGGED_HASHES,
    Deconfliction,
    Referral,
    normalise_url,
)

__all__ = ["DECONFLICTION_KEY_LEN", "DeconflictionKey", "deconfliction_tags", "tag_inputs"]

DECONFLICTION_KEY_LEN = 32


@dataclass(frozen=True, slots=True)
class DeconflictionKey:
    """One epoch of the federation's deconfliction key."""

    epoch: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.epoch <= 2_147_483_647:
            raise ValueError("a deconfliction epoch is 1..2^31-1")
        if len(self.secret) != DECONFLICTION_KEY_LEN:
            raise ValueError(f"a deconfliction key is {DECONFLICTION_KEY_LEN} bytes")

    @classmethod
    def generate(cls, epoch: int) -> DeconflictionKey:
        return cls(epoch, os.urandom(DECONFLICTION_KEY_LEN))

    def tag(self, kind: str, value: str) -> str:
        """``HMAC-SHA256(K, label || kind || 0x00 || value)[:16]``, lowercase hex."""
        message = TAG_LABEL + kind.encode() + b"\x00" + value.encode()
        return hmac.new(self.secret, message, hashlib.sha256).digest()[:16].hex()


def tag_inputs(referral: Referral) -> set[tuple[str, str]]:
    """``(kind, value)`` of everything a referral is tagged over: each URL
    (normalised) and each md5/sha1/sha256 hash of its items."""
    inputs: set[tuple[str, str]] = set()
    for u in referral.urls:
        try:
            inputs.add(("url", normalise_url(u.url)))
        except ValueError:
            continue  # no host to normalise: nothing to match on
    for item in referral.items:
        for h in item.hashes:
            if h.algorithm.value in TAGGED_HASHES:
                inputs.add((h.algorithm.value, h.value.lower()))
    return inputs


def deconfliction_tags(referral: Referral, key: DeconflictionKey) -> Deconfliction | None:
    """The header's tags for ``referral`` (at most ``MAX_TAGS``: the smallest ones);
    ``None`` when there is nothing to tag."""
    tags = sorted({key.tag(kind, value) for kind, value in tag_inputs(referral)})[:MAX_TAGS]
    return Deconfliction(epoch=key.epoch, tags=tuple(tags)) if tags else None
