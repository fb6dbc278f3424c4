"""The hash-chained, router-signed audit trail: building chains, finding the first
broken link, and refusing records no router key signed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from broker.audit import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    Verdict,
    authentic,
    chain_next,
    verify_chains,
)
from keys import RecordSigner
from schemas import ServiceRole
from tests.unit._federation import federation

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FED = federation()
DIRECTORY = FED.directory()
ROUTER = FED.signer(ServiceRole.ROUTER)


def _authentic(record: AuditRecord) -> bool:
    return authentic(record, DIRECTORY)


def _entry(offset: int, topic: str = "crb.outbox.de.hotline", partition: int = 0) -> AuditEntry:
    return AuditEntry(
        verdict=Verdict.FORWARDED,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        envelope_sha256="0" * 64,
        message_id=f"m-{offset}",
        sender="de.hotline",
        recipients=("nl.hotline",),
        decided_at=T0,
    )


def _chain(n: int, **kw: object) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = None
    for i in range(n):
        prev = chain_next(prev, _entry(i, **kw)).signed(ROUTER)  # type: ignore[arg-type]
        out.append(prev)
    return out


def _rows(records: list[AuditRecord]) -> list[tuple[str, bytes]]:
    return [(f"crb.audit/0@{i}", r.to_bytes()) for i, r in enumerate(records)]


def test_a_fresh_chain_verifies() -> None:
    """A chain starts at GENESIS, counts seq from 0 and verifies with no break."""
    records = _chain(5)
    assert records[0].prev == GENESIS
    assert [r.seq for r in records] == [0, 1, 2, 3, 4]
    counts, breaks = verify_chains(_rows(records), authentic=_authentic)
    assert counts == {"crb.outbox.de.hotline/0": 5}
    assert breaks == []
    assert all(r.signer == ROUTER.key_id for r in records)


def test_altered_record_is_named() -> None:
    """Changing a field of record 2 (keeping hash and signature) is reported at
    position 2, and the chain breaks at the record that followed it."""
    rows = _rows(_chain(5))
    data = json.loads(rows[2][1])
    data["recipients"] = ["xx.police"]
    rows[2] = (rows[2][0], json.dumps(data).encode())
    _, breaks = verify_chains(rows, authentic=_authentic)
    assert [(b.position, b.where) for b in breaks] == [(2, "crb.audit/0@2"), (2, "crb.audit/0@3")]
    assert "altered" in breaks[0].problem
    assert "missing" in breaks[1].problem


def test_removed_record_is_named() -> None:
    """Deleting record 1 breaks the link at the record that followed it."""
    rows = _rows(_chain(4))
    del rows[1]
    _, breaks = verify_chains(rows, authentic=_authentic)
    assert [(b.position, b.where) for b in breaks] == [(1, "crb.audit/0@2")]


def test_rehashed_forgery_is_refused_and_caught_by_the_next_link() -> None:
    """Rewriting record 1 and recomputing its hash: its signature no longer verifies,
    and record 2's prev link names the genuine record 1."""
    records = _chain(3)
    forged = records[1].model_copy(update={"recipients": ("xx.police",)})
    forged = forged.model_copy(update={"hash": forged.computed_hash()})
    rows = _rows([records[0], forged, records[2]])
    _, breaks = verify_chains(rows, authentic=_authentic)
    assert [b.where for b in breaks] == ["crb.audit/0@1", "crb.audit/0@2"]
    assert "not signed" in breaks[0].problem


def test_a_well_formed_unsigned_link_is_reported_and_left_out() -> None:
    """The forgery the hash chain alone cannot see: right seq, right prev, valid hash,
    unsigned or signed by a key that is not the router's. Each is reported; the
    genuine chain, which continues from the last authentic record, has no break."""
    records = _chain(2)
    unsigned = chain_next(records[1], _entry(99))
    stranger = RecordSigner(ServiceRole.ROUTER, FED.signing("de.hotline"))
    tracker = FED.signer(ServiceRole.TRACKER)
    genuine_next = chain_next(records[1], _entry(2)).signed(ROUTER)
    rows = _rows(
        [*records, unsigned, unsigned.signed(stranger), unsigned.signed(tracker), genuine_next]
    )
    counts, breaks = verify_chains(rows, authentic=_authentic)
    assert counts == {"crb.outbox.de.hotline/0": 3}
    assert [b.where for b in breaks] == ["crb.audit/0@2", "crb.audit/0@3", "crb.audit/0@4"]
    assert all("not signed by a router key" in b.problem for b in breaks)
    assert authentic(genuine_next, DIRECTORY)
    assert not authentic(unsigned, DIRECTORY)


def test_a_signature_from_a_key_not_yet_valid_is_refused() -> None:
    """The record's own time must fall in the signing key's validity."""
    early = _entry(0).model_copy(update={"decided_at": datetime(2020, 1, 1, tzinfo=UTC)})
    record = chain_next(None, early).signed(ROUTER)
    assert not authentic(record, DIRECTORY)


def test_chains_are_independent() -> None:
    """Two input partitions interleaved in one audit partition verify separately."""
    a, b = _chain(3), _chain(3, partition=1)
    rows = _rows([a[0], b[0], a[1], b[1], a[2], b[2]])
    counts, breaks = verify_chains(rows, authentic=_authentic)
    assert counts == {"crb.outbox.de.hotline/0": 3, "crb.outbox.de.hotline/1": 3}
    assert breaks == []


def test_unparsable_record_is_reported() -> None:
    """A record that is not an audit record at all is reported, not skipped silently."""
    rows = [*_rows(_chain(2)), ("crb.audit/0@9", b"not json")]
    _, breaks = verify_chains(rows, authentic=_authentic)
    assert len(breaks) == 1
    assert breaks[0].where == "crb.audit/0@9"
