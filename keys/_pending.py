"""Sealed for oneself: what a sender keeps of a referral until it is answered.

A sender must be able to re-seal a referral after it sent it — to the escalation
recipient when the first recipients stay silent, or again (the same message id)
when a message went unanswered. It never keeps that plaintext on disk: it keeps
the referral sealed to **its own** current encryption key (HPKE, as an envelope
wraps a content key), bound to a context (the message id), and opens it only when
it must re-seal. The copy is deleted once every recipient answered.

Format: ``lp16(key id) || lp16(enc) || lp16(ct) || ChaCha20-Poly1305(K, 0^12,
plaintext, aad = label || context)`` where ``(enc, ct)`` is HPKE ``SealBase`` of the
32-byte ``K`` with ``info = label || context``. :func:`open_for_self` raises
:class:`PendingCopyError` when it cannot open a copy.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from keys import _primitives as P
from keys._errors import KeysError
from keys._keys import OpeningKey, SealingKey

__all__ = ["PendingCopyError", "open_for_self", "seal_for_self"]

_LABEL = b"crb/pending-copy/v1\x00"


class PendingCopyError(KeysError):
    """A kept copy cannot be opened (no key with its id, or it was altered)."""


def _lp16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def seal_for_self(plaintext: bytes, key: SealingKey, *, context: bytes) -> bytes:
    """``plaintext`` sealed to ``key`` (one's own), bound to ``context``."""
    content_key = os.urandom(32)
    enc, ct = key.wrap(content_key, info=_LABEL + context, ikm_e=None)
    body = P.aead_seal(content_key, bytes(12), plaintext, _LABEL + context)
    return _lp16(key.key_id.encode()) + _lp16(enc) + _lp16(ct) + body


def open_for_self(blob: bytes, keys: Sequence[OpeningKey], *, context: bytes) -> bytes:
    """The plaintext of :func:`seal_for_self`, with whichever of ``keys`` it names."""
    try:
        parts: list[bytes] = []
        pos = 0
        for _ in range(3):
            (n,) = struct.unpack_from(">H", blob, pos)
            parts.append(blob[pos + 2 : pos + 2 + n])
            pos += 2 + n
        key_id, enc, ct = parts[0].decode("ascii"), parts[1], parts[2]
        key = next((k for k in keys if k.key_id == key_id), None)
        if key is None:
            raise PendingCopyError(f"no opening key {key_id}")
        content_key = key.unwrap(enc, ct, info=_LABEL + context)
        return P.aead_open(content_key, bytes(12), blob[pos:], _LABEL + context)
    except (struct.error, UnicodeDecodeError, P.CryptoFailure) as exc:
        raise PendingCopyError("the kept copy cannot be opened") from exc
