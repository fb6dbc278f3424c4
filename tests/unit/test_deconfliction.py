"""Deconfliction: URL normalisation, keyed tags, the tracker's matching, the notices
a receiver takes. Against Kafka: tests/integration/test_deconfliction_flow.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from adapters import FolderSink, Outcome, Receiver, StateStore
from adapters.kafka import OutRecord, Record, sign
from broker.tracker._deconflict import MAX_MATCHES, find_notices, notice_id
from broker.tracker._machine import Handover, HandoverStore, InMemoryHandovers
from broker.tracker._store import SqliteHandovers
from keys import NOTICE_CONTEXT, STATUS_CONTEXT, DeconflictionKey, deconfliction_tags, tag_inputs
from schemas import (
    MAX_TAGS,
    Deconfliction,
    DeconflictionNotice,
    EnvelopeHeader,
    HandoverState,
    NoticeKind,
    Referral,
    ServiceRole,
    normalise_url,
    uuid7,
)
from tests._fed import LiveFederation, now
from tests.unit._adapter_kit import NAMES, FakeKafka, sender, settings
from tests.unit._schema_fixtures import header_data, referral_data

# --- normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.org/a", "http://example.org/a"),
        ("HTTP://EXAMPLE.ORG/a", "http://example.org/a"),
        ("http://example.org", "http://example.org/"),
        ("http://example.org:80/a", "http://example.org/a"),
        ("https://example.org:443/a", "http://example.org/a"),
        ("http://user:pw@example.org/a", "http://example.org/a"),
        ("http://example.org/a#gallery", "http://example.org/a"),
        ("http://example.org./a", "http://example.org/a"),
        ("http://example.org/a/./b/../c", "http://example.org/a/c"),
        ("http://example.org/%7Euser/%41", "http://example.org/~user/A"),
        ("http://example.org/a%2fb", "http://example.org/a%2Fb"),
        ("http://example.org/a?", "http://example.org/a"),
        ("ftps://files.example.org/x", "ftp://files.example.org/x"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
    ],
)
def test_spellings_of_one_location_normalise_alike(a: str, b: str) -> None:
    assert normalise_url(a) == normalise_url(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.org/A", "http://example.org/a"),  # paths are case-sensitive
        ("http://example.org/a?x=1&y=2", "http://example.org/a?y=2&x=1"),  # query order
        ("http://example.org:8080/a", "http://example.org/a"),
        ("http://www.example.org/a", "http://example.org/a"),  # another host
        ("ftp://example.org/a", "http://example.org/a"),
    ],
)
def test_different_locations_stay_different(a: str, b: str) -> None:
    assert normalise_url(a) != normalise_url(b)


def test_the_normal_form_is_documented_exactly() -> None:
    got = normalise_url("HTTPS://U@WWW.Example.ORG.:443/a/./b/../%7eu/%2f?x=%41#f")
    assert got == "http://www.example.org/a/~u/%2F?x=A"


# --- tags ------------------------------------------------------------------------------

KEY = DeconflictionKey(1, bytes(range(32)))


def _ref(*urls: str, hashes: tuple[tuple[str, str], ...] = ()) -> Referral:
    data = referral_data()
    data["urls"] = [{"url": u, "hosting": {"country": "NL"}} for u in urls]
    data["items"] = [
        {
            "media_type": "image",
            "hashes": [{"algorithm": a, "value": v} for a, v in hashes],
            "classification": "baseline",
        }
    ] if hashes else []  # fmt: skip
    return Referral.model_validate(data)


def test_tag_is_the_documented_hmac() -> None:
    """A fixed vector: HMAC-SHA256(K, label || kind || 0 || value)[:16]."""
    import hashlib
    import hmac

    expected = hmac.new(
        bytes(range(32)),
        b"crb/deconfliction/v1\x00url\x00http://example.org/a",
        hashlib.sha256,
    ).hexdigest()[:32]
    assert KEY.tag("url", "http://example.org/a") == expected


def test_the_same_url_spelled_differently_gives_the_same_tag() -> None:
    a = deconfliction_tags(_ref("https://example.org/a#x"), KEY)
    b = deconfliction_tags(_ref("http://EXAMPLE.org:80/a"), KEY)
    assert a is not None
    assert a == b


def test_other_key_or_epoch_other_tags() -> None:
    other = DeconflictionKey(2, bytes(32))
    a = deconfliction_tags(_ref("https://example.org/a"), KEY)
    b = deconfliction_tags(_ref("https://example.org/a"), other)
    assert a is not None
    assert b is not None
    assert not set(a.tags) & set(b.tags)
    assert (a.epoch, b.epoch) == (1, 2)


def test_exact_hashes_are_tagged_perceptual_ones_are_not() -> None:
    r = _ref(
        "https://example.org/a",
        hashes=(("sha256", "0f" * 32), ("md5", "ab" * 16), ("pdq", "cd" * 32)),
    )
    kinds = sorted(k for k, _ in tag_inputs(r))
    assert kinds == ["md5", "sha256", "url"]
    tags = deconfliction_tags(r, KEY)
    assert tags is not None
    assert len(tags.tags) == 3


def test_no_more_than_max_tags_the_smallest_kept() -> None:
    urls = [f"https://example.org/{i}" for i in range(300)]
    r = _ref(*urls[:300])
    tags = deconfliction_tags(r, KEY)
    assert tags is not None
    every = sorted(KEY.tag("url", normalise_url(u)) for u in urls)
    assert list(tags.tags) == every[:MAX_TAGS]


def test_only_a_referral_header_carries_tags() -> None:
    tags = {"epoch": 1, "tags": ["ab" * 16]}
    assert EnvelopeHeader.model_validate(header_data(deconfliction=tags)).deconfliction
    reply = header_data(
        message_type="receipt", recipients=["nl.hotline"], in_reply_to=str(uuid7(now()))
    )
    with pytest.raises(ValidationError, match="only a referral"):
        EnvelopeHeader.model_validate({**reply, "deconfliction": tags})


@pytest.mark.parametrize(
    "bad",
    [
        {"epoch": 0, "tags": ["ab" * 16]},
        {"epoch": 1, "tags": []},
        {"epoch": 1, "tags": ["AB" * 16]},
        {"epoch": 1, "tags": ["ab" * 15]},
        {"epoch": 1, "tags": ["ab" * 16, "ab" * 16]},
    ],
)
def test_malformed_tags_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Deconfliction.model_validate(bad)


# --- matching ----------------------------------------------------------------------


def _handovers(
    sender: str,
    tags: tuple[str, ...],
    *,
    recipients: tuple[str, ...] = ("nl.hotline",),
    case: UUID | None = None,
    epoch: int = 1,
    minutes: int = 0,
) -> list[Handover]:
    at = now() + timedelta(minutes=minutes)
    mid = uuid7(at)
    return [
        Handover(
            message_id=mid,
            recipient=r,
            case_id=case or mid,
            sender=sender,
            jurisdiction="NL",
            deconfliction=Deconfliction(epoch=epoch, tags=tags) if tags else None,
            state=HandoverState.ROUTED,
            routed_at=at,
            updated_at=at,
        )
        for r in recipients
    ]


T1, T2, T3 = "11" * 16, "22" * 16, "33" * 16


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HandoverStore]:
    if request.param == "memory":
        yield InMemoryHandovers()
        return
    opened = SqliteHandovers.open(tmp_path / "s.sqlite", "t", "p")
    assert opened is not None
    yield opened
    opened.release()


def test_a_match_notifies_both_sides(store: HandoverStore) -> None:
    earlier = _handovers("de.hotline", (T1, T2), recipients=("nl.hotline", "nl.police"))
    store.put(earlier)
    new = _handovers("be.hotline", (T2, T3), minutes=5)
    notices = find_notices(new, store, now())
    assert [(n.kind, n.to) for n in notices] == [
        (NoticeKind.ALREADY_REFERRED, "be.hotline"),
        (NoticeKind.REFERRED_AGAIN, "de.hotline"),
    ]
    first, second = notices
    assert first.message_id == new[0].message_id
    assert first.matched.message_id == earlier[0].message_id
    assert first.matched.sender == "de.hotline"
    assert first.matched.states == {"nl.hotline": "routed", "nl.police": "routed"}
    assert first.matched_tags == 1
    assert second.matched.message_id == new[0].message_id
    assert first.notice_id == notice_id(
        NoticeKind.ALREADY_REFERRED, new[0].message_id, earlier[0].message_id
    )


@pytest.mark.parametrize(
    "case",
    ["other_tags", "same_sender", "same_case", "other_epoch", "no_tags", "known_message"],
)
def test_no_notice_without_news(store: HandoverStore, case: str) -> None:
    earlier = _handovers("de.hotline", (T1,))
    store.put(earlier)
    new = {
        "other_tags": _handovers("be.hotline", (T3,)),
        "same_sender": _handovers("de.hotline", (T1,)),
        "same_case": _handovers("be.hotline", (T1,), case=earlier[0].case_id),
        "other_epoch": _handovers("be.hotline", (T1,), epoch=2),
        "no_tags": _handovers("be.hotline", ()),
        "known_message": earlier,
    }[case]
    assert find_notices(new, store, now()) == []


def test_an_industry_reporter_is_told_nothing(store: HandoverStore) -> None:
    """Industry reporters (``silent``) get no notice either way; the hotline still
    learns that an industry reporter referred it too."""
    store.put(_handovers("ie.exampleapp", (T1,)))
    new = _handovers("be.hotline", (T1,), minutes=5)
    notices = find_notices(new, store, now(), silent={"ie.exampleapp"})
    assert [(n.kind, n.to) for n in notices] == [(NoticeKind.ALREADY_REFERRED, "be.hotline")]


def test_matches_within_one_batch(store: HandoverStore) -> None:
    a = _handovers("de.hotline", (T1,))
    b = _handovers("be.hotline", (T1,), minutes=1)
    kinds = [(n.kind, n.to) for n in find_notices([*a, *b], store, now())]
    assert kinds == [
        (NoticeKind.ALREADY_REFERRED, "be.hotline"),
        (NoticeKind.REFERRED_AGAIN, "de.hotline"),
    ]


def test_at_most_max_matches_earliest_first(store: HandoverStore) -> None:
    senders = ["at.hotline", "be.hotline", "cz.hotline", "dk.hotline", "ee.hotline"]
    senders += ["fi.hotline", "fr.hotline"]
    for i, s in enumerate(senders):
        store.put(_handovers(s, (T1,), minutes=i))
    new = _handovers("de.hotline", (T1,), minutes=60)
    told = [n.matched.sender for n in find_notices(new, store, now()) if n.to == "de.hotline"]
    assert told == senders[:MAX_MATCHES]


def test_forgotten_handovers_leave_the_index(tmp_path: Path) -> None:
    store = SqliteHandovers.open(tmp_path / "s.sqlite", "t", "p")
    assert store is not None
    earlier = _handovers("de.hotline", (T1,), recipients=("nl.hotline", "nl.police"))
    store.put(earlier)
    store.delete([earlier[0].key])
    assert [m for m, _ in store.tagged(1, [T1], limit=5)] == [earlier[0].message_id]
    store.delete([earlier[1].key])
    assert store.tagged(1, [T1], limit=5) == []
    store.release()


# --- the receiver takes signed notices only ------------------------------------------


def _notice(to: str = "nl.hotline") -> DeconflictionNotice:
    mine = _handovers(to, (T1,))
    other = _handovers("de.hotline", (T1,))
    store = InMemoryHandovers.of(other)
    (n,) = [x for x in find_notices(mine, store, now()) if x.to == to]
    return n


def _record(out: OutRecord, offset: int = 0) -> Record:
    ts = int(now().timestamp() * 1000)
    return Record(out.topic, 0, offset, out.key, out.value, tuple(out.headers), ts)


def _notice_record(
    fed: LiveFederation, n: DeconflictionNotice, *, role: ServiceRole, context: bytes
) -> Record:
    out = OutRecord(
        NAMES.inbox(n.to),
        str(n.case_id).encode(),
        n.model_dump_json().encode(),
        (("crb-record", b"notice"),),
    )
    return _record(sign(out, fed.signer(role), context))


async def test_a_signed_notice_reaches_the_sink_and_forgeries_are_quarantined(
    tmp_path: Path,
) -> None:
    fed, kafka = LiveFederation(), FakeKafka()
    store = StateStore(tmp_path / "state")
    sink = FolderSink(tmp_path / "inbox")
    receiver = Receiver(kafka, NAMES, settings(), sender(fed, "nl.hotline", kafka), sink, store)
    good = _notice()
    record = _notice_record(fed, good, role=ServiceRole.TRACKER, context=NOTICE_CONTEXT)
    assert await receiver.handle(record) is Outcome.NOTICE
    written = DeconflictionNotice.model_validate_json(sink.notice_path(good.notice_id).read_bytes())
    assert written == good
    forged = [
        _notice_record(fed, good, role=ServiceRole.ROUTER, context=NOTICE_CONTEXT),
        _notice_record(fed, good, role=ServiceRole.TRACKER, context=STATUS_CONTEXT),
        _notice_record(
            fed, _notice("be.hotline"), role=ServiceRole.TRACKER, context=NOTICE_CONTEXT
        ),
        _record(OutRecord(NAMES.inbox("nl.hotline"), None, b"{}", (("crb-record", b"notice"),))),
    ]
    for i, r in enumerate(forged, start=1):
        moved = Record(r.topic, 0, i, r.key, r.value, r.headers, r.timestamp_ms)
        assert await receiver.handle(moved) is Outcome.QUARANTINED
    reasons = [q["reason"] for q in store.quarantined()]
    assert sorted(str(r) for r in reasons) == [
        "bad_signature",
        "bad_signature",
        "malformed",
        "not_a_recipient",
    ]
    assert receiver.stats.notices == 1
    assert [] == kafka.sent  # a notice is never answered
    store.close()
