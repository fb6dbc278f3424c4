"""Dead letters as the tracker lists them, and which may be redriven — pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from adapters.kafka import Record
from broker.tracker._deadletters import dead_letter_of, redrive_refusal
from schemas import DEAD_LETTER_REASONS, REDRIVE_REASONS, Reason, TopicNames
from tests.unit._federation import NOW, federation, referral

NAMES = TopicNames("crb")
FED = federation()
AT = datetime(2026, 11, 23, 17, 0, 5, tzinfo=UTC)


def _dead(value: bytes, reason: str, **extra: bytes) -> Record:
    headers = {
        "crb-reason": reason.encode(),
        "crb-source-topic": NAMES.outbox("de.hotline").encode(),
        "crb-source-partition": b"0",
        "crb-source-offset": b"41",
        "crb-rejected-at": AT.isoformat().encode(),
        **extra,
    }
    return Record(NAMES.dlq, 2, 7, b"case", value, tuple(headers.items()))


def test_redrive_reasons_are_dead_letter_reasons() -> None:
    assert REDRIVE_REASONS < DEAD_LETTER_REASONS


def test_a_dead_letter_shows_its_clear_header_and_where_it_came_from() -> None:
    envelope = FED.seal_referral("de.hotline", referral(), jurisdiction="NL", now=NOW)
    d = dead_letter_of(_dead(envelope, "sender_suspended"), NAMES)
    assert (2, 7, "2/7") == (d.partition, d.offset, d.where)
    assert ("de.hotline", NAMES.outbox("de.hotline"), 0, 41) == (
        d.sender, d.source_topic, d.source_partition, d.source_offset,
    )  # fmt: skip
    assert AT == d.rejected_at
    assert ("referral", "NL") == (d.message_type, d.jurisdiction)
    assert len(envelope) == d.size
    assert None is redrive_refusal(d)


@pytest.mark.parametrize(
    ("reason", "redrivable"),
    [(r.value, r in REDRIVE_REASONS) for r in sorted(DEAD_LETTER_REASONS)],
)
def test_only_reasons_a_fix_can_lift_are_redrivable(reason: str, redrivable: bool) -> None:
    d = dead_letter_of(_dead(b"\x00garbage", reason), NAMES)
    refusal = redrive_refusal(d)
    assert redrivable == (refusal is None), refusal
    if not redrivable:
        assert "can never succeed" in (refusal or "")


def test_truncated_garbage_and_already_redriven_are_refused() -> None:
    truncated = dead_letter_of(
        _dead(
            b'{"truncated":true}',
            "too_large",
            **{"crb-truncated": b"1", "crb-original-size": b"2000000"},
        ),
        NAMES,
    )
    assert (True, 2_000_000) == (truncated.truncated, truncated.size)
    assert "truncated" in (redrive_refusal(truncated) or "")
    stray = dead_letter_of(Record(NAMES.dlq, 0, 1, None, b"?", ()), NAMES)
    assert ("unknown", None) == (stray.reason, stray.sender)
    assert "no participant's outbox" in (redrive_refusal(stray) or "")
    done = replace(
        dead_letter_of(_dead(b"x", Reason.UNKNOWN_KEY.value), NAMES),
        redriven_at=AT, redriven_by="abc123",
    )  # fmt: skip
    assert "already redriven" in (redrive_refusal(done) or "")
