"""Cross-country deconfliction without revealing content: keyed tags and notices.

Two hotlines often refer the same URL or the same image. ICCAM and NCMEC notice
that by comparing plain URLs and hashes on one trusted platform; here nobody in
the middle may see them. So the *sending adapter* computes keyed tags::

    tag = HMAC-SHA256(K_epoch, "crb/deconfliction/v1" || 0x00 || kind || 0x00 || value)[:16]

over each normalised URL (``kind = "url"``, :func:`normalise_url`) and each exact
content hash (``kind`` = ``md5`` / ``sha1`` / ``sha256``, value = lowercase hex;
perceptual PDQ hashes match by distance, not equality, and are left out). ``K`` is
the federation's deconfliction key of ``epoch``: 32 random bytes held by the
participants, never by the broker operator, replaced by a new epoch when a holder
leaves. The tags go in the signed clear header (:class:`Deconfliction`) — the
router and the tracker compare them without learning anything else.

The tracker indexes the tags; when a referral shares a tag with an earlier
referral of another participant (same epoch, another case), it puts a signed
:class:`DeconflictionNotice` into the inbox of each: ``already_referred`` to the
new reporter (who referred it first, when, to whom, in what state) and
``referred_again`` to the earlier one.

What the tags leak (also in ENVELOPE.md): to the operator and anyone reading the
topics, *equality and frequency* — that two referrals share a URL or an item, and
how often a tag recurs — never the URL or hash. To anyone holding ``K`` (every
participant), *guessable values*: a key holder can test whether a URL or known
hash it can name was referred. Truncation to 128 bits keeps accidental collisions
out of reach (2^-64 at 2^32 tags).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StringConstraints

from ._common import FrozenModel, unique_sorted

MAX_TAGS: Final = 256
"""Tags per message at most. A referral with more URLs and hashes keeps the 256
smallest tags (a keyed, hence unbiased, sample); its header stays under 10 kB."""
TAG_LABEL: Final = b"crb/deconfliction/v1\x00"
TAGGED_HASHES: Final = ("md5", "sha1", "sha256")

DeconflictionTag = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
"""16 bytes of HMAC-SHA256, lowercase hex."""


class Deconfliction(FrozenModel):
    """The keyed tags of a referral, in its signed header."""

    epoch: Annotated[int, Field(ge=1, le=2_147_483_647)]
    """Which federation deconfliction key made them."""
    tags: Annotated[
        tuple[DeconflictionTag, ...],
        Field(min_length=1, max_length=MAX_TAGS),
        AfterValidator(unique_sorted),
    ]


# ----------------------------------------------------------------- normalisation

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ftp": 21, "ftps": 990}
_SAME_AS: Final = {"https": "http", "ftps": "ftp"}
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _escapes(text: str) -> str:
    """Decode escaped unreserved characters; uppercase every other escape."""

    def one(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return char if char in _UNRESERVED else "%" + m.group(1).upper()

    return _ESCAPE.sub(one, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def normalise_url(url: str) -> str:
    """The form a URL is tagged in, so that trivially different spellings of one
    location match (the URL in the referral itself stays as reported):

    1. scheme lowercased; ``https`` counts as ``http`` and ``ftps`` as ``ftp``;
    2. user information and ``#fragment`` dropped;
    3. host lowercased, one trailing dot dropped, Unicode NFC (``xn--`` labels
       are not decoded: an IDN spelled both ways does not match);
    4. the port dropped when it is the default of the original scheme;
    5. in path and query, escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``)
       decoded and every other escape's hex uppercased;
    6. dot segments removed from the path (RFC 3986, 5.2.4); an empty path is
       ``/``; an empty query (a bare ``?``) dropped. Case of path and query kept.

    Raises ``ValueError`` for a URL without a host.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname  # lowercased by urlsplit, brackets removed
    if not host:
        raise ValueError("a URL to tag needs a host")
    host = unicodedata.normalize("NFC", host.removesuffix("."))
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = _remove_dot_segments(_escapes(parts.path)) if parts.path else "/"
    query = _escapes(parts.query)
    return f"{_SAME_AS.get(scheme, scheme)}://{netloc}{path}" + (f"?{query}" if query else "")


__all__ = [
    "MAX_TAGS",
    "TAGGED_HASHES",
    "TAG_LABEL",
    "Deconfliction",
    "DeconflictionTag",
    "normalise_url",
]
