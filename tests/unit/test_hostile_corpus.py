"""The hostile-record corpus itself (``tests/hostile``), without Kafka: enough distinct
classes, builders whose records have a fixed shape, ``CORPUS.md`` in step with the
table, and the router's pure core deciding each dead-letter class as the table says
(the integration test then shows the same against a running router on real Kafka)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.kafka import OutRecord, Record, traceparent_of, with_traceparent
from broker.router import RoutingDecision, SeenMessage, decide
from broker.router._core import DEAD_LETTER_HEAD
from keys import Limits, parse
from schemas import DEAD_LETTER_REASONS, MessageType, TopicNames
from tests.hostile.corpus import (
    CORPUS,
    MAX_ENVELOPE,
    REDELIVERY_MIN,
    Attempt,
    DeadLetter,
    DroppedUncommitted,
    KafkaRefused,
    Kit,
)

NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
NAMES = TopicNames("hostile")
CORPUS_MD = Path(__file__).resolve().parent.parent / "hostile" / "CORPUS.md"


def _decide(kit: Kit, attempt: Attempt, offset: int) -> RoutingDecision:
    """What the router's core decides for ``attempt``, the primer forwarded just now."""
    primer = parse(kit.primer).header
    seen = {
        primer.message_id: SeenMessage(
            sender=primer.sender,
            recipients=primer.recipients,
            message_type=MessageType.REFERRAL,
            forwarded_at=kit.now,
            digests=(hashlib.sha256(kit.primer).hexdigest(),),
        )
    }
    assert attempt.target.owner is not None
    record = Record(
        topic=NAMES.outbox(attempt.target.owner),
        partition=0,
        offset=offset,
        key=attempt.key,
        value=attempt.value,
        headers=tuple((n, v if v is not None else b"") for n, v in attempt.headers),
    )
    return decide(
        record,
        now=kit.now + timedelta(seconds=5),
        directory=kit.directory,
        names=NAMES,
        seen=seen,
        limits=Limits(max_size=MAX_ENVELOPE),
        redelivery_min=REDELIVERY_MIN,
    )


def test_the_corpus_has_at_least_thirty_distinct_classes() -> None:
    """At least 30 classes, unique names and attacks, every kind of outcome present,
    and every expected dead-letter reason one the router may give."""
    names = [c.name for c in CORPUS]
    assert len(CORPUS) >= 30
    assert len(names) == len(set(names))
    assert len(CORPUS) == len({c.attack for c in CORPUS})
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    kinds = {type(c.expected) for c in CORPUS}
    assert {DeadLetter, KafkaRefused, DroppedUncommitted} == kinds
    reasons = {c.expected.reason for c in CORPUS if isinstance(c.expected, DeadLetter)}
    assert reasons <= DEAD_LETTER_REASONS
    assert len(reasons) >= 15, "the dead letters cover most of the router's reasons"


def test_every_builder_makes_a_record_of_a_fixed_shape() -> None:
    """Two kits with keys of their own (and a builder run twice on one kit) give each
    class a record of the same shape — principal, topic, sizes of key and value,
    header names and sizes, CreateTime offset, compression, transaction — while the
    envelopes themselves are fresh each time."""
    one, two = Kit(NOW), Kit(NOW)
    fresh = 0
    for c in CORPUS:
        a, b, again = c.build(one), c.build(two), c.build(one)
        assert a.shape(NOW) == b.shape(NOW) == again.shape(NOW), c.name
        fresh += a.value != b.value
    assert fresh >= len(CORPUS) // 2, "most records are built from freshly sealed envelopes"
    assert one.fed.signing("de.hotline").key_id != two.fed.signing("de.hotline").key_id


def test_the_router_core_decides_each_dead_letter_class_as_the_table_says() -> None:
    """Every dead-letter class that reaches an outbox is refused by ``decide`` with
    exactly its reason, its dead letter within the dead-letter limits (the key cut
    where the table says so); the aborted transaction's record is a valid referral
    that ``decide`` would forward — only Kafka's transactions keep it out."""
    kit = Kit(NOW)
    wrong: list[str] = []
    for offset, c in enumerate(CORPUS):
        attempt = c.build(kit)
        if isinstance(c.expected, KafkaRefused):
            continue
        decision = _decide(kit, attempt, offset)
        if isinstance(c.expected, DroppedUncommitted):
            assert decision.reason is None, c.name
            assert decision.forwards, c.name
            continue
        dead = decision.dead_letter
        if decision.reason is not c.expected.reason or dead is None:
            wrong.append(f"{c.name}: {decision.reason}")
            continue
        key_cut = attempt.key is not None and dead.key != attempt.key
        if key_cut != c.expected.key_truncated or len(dead.key or b"") > DEAD_LETTER_HEAD:
            wrong.append(f"{c.name}: dead-letter key of {len(dead.key or b'')} bytes")
        if (dict(dead.headers).get("crb-truncated") == b"1") != c.expected.truncated:
            wrong.append(f"{c.name}: truncation")
    assert [] == wrong


def test_corpus_md_lists_the_table() -> None:
    """``CORPUS.md`` has one row per class, in order: name, attack, expected outcome."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in CORPUS_MD.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    ]
    expected = [[f"`{c.name}`", c.attack, c.expected.describe()] for c in CORPUS]
    assert expected == rows


def test_a_header_without_a_value_is_no_traceparent() -> None:
    """Regression: Kafka lets a producer send a header with no value (aiokafka gives
    ``None``); a ``traceparent`` like that crashed the router's batch loop. It is now
    no trace at all, and nothing is continued from it."""
    headers: tuple[tuple[str, bytes | None], ...] = (("traceparent", None),)
    assert traceparent_of(headers) is None
    assert traceparent_of((("traceparent", b"00-\xff"),)) is None
    out = OutRecord("t", b"k", b"v")
    assert out == with_traceparent(out, traceparent_of(headers))


def test_a_huge_key_is_cut_in_the_dead_letter() -> None:
    """Regression: a gzip-compressed record can carry a key of many MiB (the broker
    checks the compressed size). The dead letter used to copy it whole — larger than
    the router's producer and the dead-letter topic take — so the partition's
    transaction failed, was retried and failed for ever, and nothing behind the
    record in that outbox was routed again. The key is now cut to its first bytes."""
    kit = Kit(NOW)
    key = bytes(range(256)) * (12 << 10)  # 3 MiB
    decision = _decide(kit, kit.outbox(b"not an envelope", key=key), 0)
    assert decision.dead_letter is not None
    assert key[:DEAD_LETTER_HEAD] == decision.dead_letter.key
    small = _decide(kit, kit.outbox(b"not an envelope", key=b"k" * DEAD_LETTER_HEAD), 1)
    assert small.dead_letter is not None
    assert b"k" * DEAD_LETTER_HEAD == small.dead_letter.key
