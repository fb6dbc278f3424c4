"""The router's local snapshot file: what it saves comes back, and only for its topic."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from broker.audit import AuditEntry, Verdict, chain_next
from broker.router import RouterMemory, SeenMessage
from broker.router._store import RouterSnapshot
from schemas import MessageType, uuid7
from tests.unit._federation import NOW

AUDIT = "crb.audit"


def _open(path: Path, topic: str = AUDIT) -> RouterSnapshot:
    snapshot = RouterSnapshot.open(path, topic)
    assert snapshot is not None
    return snapshot


def _forwarded(seq: int, chain_partition: int = 0) -> AuditEntry:
    return AuditEntry(
        verdict=Verdict.FORWARDED,
        source_topic="crb.outbox.de.hotline",
        source_partition=chain_partition,
        source_offset=seq,
        envelope_sha256="0" * 64,
        message_id=str(uuid7(NOW)),
        message_type="referral",
        sender="de.hotline",
        recipients=("nl.hotline", "nl.police24"),
        decided_at=NOW + timedelta(microseconds=123_457 + seq),
    )


def test_what_a_checkpoint_saves_comes_back_after_reopening(tmp_path: Path) -> None:
    """Heads, positions and forwarded messages survive closing the file — exactly
    (microseconds, recipient order, message type)."""
    path = tmp_path / "memory.sqlite"
    snapshot = _open(path)
    memory = RouterMemory(timedelta(days=90), snapshot.seen)
    first = chain_next(None, _forwarded(0))
    second = chain_next(first, _forwarded(1))
    other = chain_next(None, _forwarded(0, chain_partition=1))
    memory.apply_all([first, second, other])
    snapshot.checkpoint(memory.heads, {0: 17, 1: 4})
    remembered = {mid: memory.seen[mid] for mid in memory.seen}
    snapshot.close()

    again = _open(path)
    heads, positions = again.load()
    assert {0: 17, 1: 4} == positions
    assert {second.chain: second, other.chain: other} == heads
    assert remembered == {mid: again.seen[mid] for mid in again.seen}
    assert 3 == len(again.seen)
    assert uuid7(NOW) not in again.seen
    again.close()


def test_a_snapshot_of_another_audit_topic_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    snapshot = _open(path)
    record = chain_next(None, _forwarded(0))
    RouterMemory(timedelta(days=1), snapshot.seen).apply(record)
    snapshot.checkpoint({record.chain: record}, {0: 1})
    snapshot.close()

    other = _open(path, topic="other.audit")
    assert ({}, None) == other.load()
    assert 0 == len(other.seen)
    other.close()


def test_one_router_process_per_snapshot(tmp_path: Path) -> None:
    """A second router pointed at a file in use gets none (it runs from RAM)."""
    path = tmp_path / "memory.sqlite"
    first = _open(path)
    assert RouterSnapshot.open(path, AUDIT) is None
    first.close()
    second = _open(path)
    second.close()


def test_forgetting_deletes_by_forwarding_time(tmp_path: Path) -> None:
    snapshot = _open(tmp_path / "memory.sqlite")
    seen = snapshot.seen
    old, new = uuid7(NOW), uuid7(NOW)
    later = NOW + timedelta(hours=1)
    seen.put(
        [
            (old, SeenMessage("de.hotline", ("nl.hotline",), MessageType.REFERRAL, NOW)),
            (new, SeenMessage("nl.hotline", ("de.hotline",), MessageType.RECEIPT, later)),
        ]
    )
    assert 0 == seen.forget_before(NOW)
    assert 1 == seen.forget_before(NOW + timedelta(minutes=1))
    assert old not in seen
    assert new in seen
    assert MessageType.RECEIPT == seen[new].message_type
    assert snapshot.size_bytes() > 0
    snapshot.close()


def test_the_page_cache_is_capped_as_configured(tmp_path: Path) -> None:
    """The router's memory for what it forwarded is bounded by this cache
    (``router.snapshot_cache_mib``; ``bench/router_memory.py`` shows the plateau)."""
    for cache_mib, path in ((32, tmp_path / "default.sqlite"), (4, tmp_path / "small.sqlite")):
        snapshot = (
            RouterSnapshot.open(path, AUDIT)
            if cache_mib == 32
            else RouterSnapshot.open(path, AUDIT, cache_mib=cache_mib)
        )
        assert snapshot is not None
        try:
            (kib,) = snapshot._db.execute("PRAGMA cache_size").fetchone()
        finally:
            snapshot.close()
        assert kib == -cache_mib * 1024  # negative: KiB, not pages
