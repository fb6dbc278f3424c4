"""The drop folder's state machine and file handling, and the outbox's retry logic,
with a recording stand-in producer (the real-Kafka path: test_adapter_flow.py)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from adapters import (
    TRANSITIONS,
    DropFolder,
    FileEvent,
    FileState,
    IllegalTransition,
    SendError,
    Submission,
    advance,
    parse_submission,
    recovered_state,
)
from adapters.kafka import RecordTooLarge, Unavailable
from keys import parse
from tests._fed import LiveFederation, make_referral, now
from tests.unit._adapter_kit import FakeKafka, sender

CSV_HEADER = (
    "reporter_reference,incident_type,summary,url,hosting_country,handling_code,tlp,delete_after\n"
)


def test_transition_table_is_the_documented_one() -> None:
    """Exactly the documented edges exist; everything else is an illegal transition."""
    assert {
        ("incoming", "claim", "claimed"),
        ("claimed", "seal", "sealed"),
        ("claimed", "refuse", "failed"),
        ("sealed", "seal", "sealed"),
        ("sealed", "ack", "sent"),
        ("sealed", "refuse", "failed"),
    } == {(s.value, e.value, t.value) for (s, e), t in TRANSITIONS.items()}
    assert FileState.SENT == advance(FileState.SEALED, FileEvent.ACK)
    for state in (FileState.SENT, FileState.FAILED):
        for event in FileEvent:
            with pytest.raises(IllegalTransition):
                advance(state, event)
    with pytest.raises(IllegalTransition):
        advance(FileState.CLAIMED, FileEvent.ACK)  # never acknowledged before sealed


def test_recovery_state_depends_on_the_sidecar() -> None:
    """After a restart a file with a sidecar is SEALED (re-send), without it CLAIMED."""
    assert FileState.SEALED == recovered_state(in_processing=True, has_sidecar=True)
    assert FileState.CLAIMED == recovered_state(in_processing=True, has_sidecar=False)
    assert FileState.INCOMING == recovered_state(in_processing=False, has_sidecar=False)


def _drop(root: Path, name: str, data: bytes) -> None:
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    (root / "incoming" / name).write_bytes(data)


async def test_json_file_is_sent_once_and_moved_to_sent_with_its_id(tmp_path: Path) -> None:
    """incoming/x.json -> one envelope on de.hotline's outbox -> a note in sent/ naming
    the message id that is in the produced header; no plaintext copy is kept."""
    fed, kafka = LiveFederation(), FakeKafka()
    folder = DropFolder(tmp_path, sender(fed, "de.hotline", kafka))
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    (result,) = await folder.run_once()
    assert FileState.SENT == result.state
    (sent,) = kafka.sent
    header = parse(sent.value).header
    assert "unit.outbox.de.hotline" == sent.topic
    assert (header.message_id,) == result.message_ids
    assert str(header.case_id).encode() == sent.key
    assert ("nl.hotline",) == header.recipients
    note = json.loads((tmp_path / "sent" / "x.json.sent.json").read_bytes())
    assert str(header.message_id) == note["messages"][0]["message_id"]
    assert not (tmp_path / "sent" / "x.json").exists(), "no plaintext kept by default"
    assert [] == list((tmp_path / "processing").iterdir())
    assert [] == await folder.run_once()  # nothing left: not sent again


async def test_sent_plaintext_is_kept_only_as_long_as_configured(tmp_path: Path) -> None:
    """With keep_sent, sent/ keeps the plaintext until keep_sent after it was sent
    (by the note's sent_at), then deletes it; the note with the ids stays until
    record_retention (90 days)."""
    fed, kafka = LiveFederation(), FakeKafka()
    clock = {"now": now()}
    folder = DropFolder(
        tmp_path,
        sender(fed, "de.hotline", kafka, clock=lambda: clock["now"]),
        keep_sent=timedelta(days=7),
    )
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    await folder.run_once()
    assert (tmp_path / "sent" / "x.json").exists()
    clock["now"] += timedelta(days=6, hours=23)
    assert 0 == folder.purge_sent()
    clock["now"] += timedelta(hours=1)
    assert 1 == folder.purge_sent()
    assert not (tmp_path / "sent" / "x.json").exists()
    assert (tmp_path / "sent" / "x.json.sent.json").exists()
    clock["now"] += timedelta(days=83)  # 90 days after it was sent: the ids go too
    folder.purge_sent()
    assert not (tmp_path / "sent" / "x.json.sent.json").exists()


async def test_invalid_files_fail_with_an_error_file_and_send_nothing(tmp_path: Path) -> None:
    """A bad JSON, a CSV with bad rows and an unknown type each end in failed/ with why."""
    fed, kafka = LiveFederation(), FakeKafka()
    folder = DropFolder(tmp_path, sender(fed, "de.hotline", kafka))
    _drop(tmp_path, "bad.json", b"{nope")
    good_row = "R-1,csam,ok,https://a.example.org/x,NL,H0,AMBER,2027-12-31\n"
    bad_row = "R-2,csam,bad,https://a.example.org/x,NL,H9,AMBER,2027-12-31\n"
    _drop(tmp_path, "bulk.csv", (CSV_HEADER + good_row + bad_row).encode())
    _drop(tmp_path, "notes.txt", b"hello")
    results = {r.name: r for r in await folder.run_once()}
    assert {FileState.FAILED} == {r.state for r in results.values()}
    assert [] == kafka.sent
    errors = {p.name: p.read_text() for p in (tmp_path / "failed").iterdir() if p.suffix == ".txt"}
    assert "not JSON" in errors["bad.json.error.txt"]
    assert "row 3: handling.code" in errors["bulk.csv.error.txt"]
    assert "unsupported file type" in errors["notes.txt.error.txt"]


async def test_csv_file_sends_one_referral_per_row(tmp_path: Path) -> None:
    """Every row of a valid CSV becomes its own envelope; the note lists rows and ids."""
    fed, kafka = LiveFederation(), FakeKafka()
    folder = DropFolder(tmp_path, sender(fed, "de.hotline", kafka))
    rows = "".join(
        f"R-{i},csam,row {i},https://{i}.example.org/x,NL,H0,AMBER,2027-12-31\n" for i in range(3)
    )
    _drop(tmp_path, "bulk.csv", (CSV_HEADER + rows).encode())
    (result,) = await folder.run_once()
    assert FileState.SENT == result.state
    assert 3 == len(set(result.message_ids)) == len(kafka.sent)
    note = json.loads((tmp_path / "sent" / "bulk.csv.sent.json").read_bytes())
    assert [2, 3, 4] == [m["row"] for m in note["messages"]]


async def test_crash_before_the_ack_resends_the_same_bytes(tmp_path: Path) -> None:
    """A crash while producing leaves the file in processing/ with its sealed envelope;
    the next run produces the SAME bytes (same message id), then moves it to sent/."""
    fed = LiveFederation()
    crashing = FakeKafka(failures=[RuntimeError("killed")])
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    with pytest.raises(RuntimeError):
        await DropFolder(tmp_path, sender(fed, "de.hotline", crashing)).run_once()
    assert {"x.json", "x.json.pending.json"} == {
        p.name for p in (tmp_path / "processing").iterdir()
    }
    pending = json.loads((tmp_path / "processing" / "x.json.pending.json").read_bytes())
    kafka = FakeKafka()
    (result,) = await DropFolder(tmp_path, sender(fed, "de.hotline", kafka)).run_once()
    assert FileState.SENT == result.state
    (sent,) = kafka.sent
    assert pending["items"][0]["message_id"] == str(parse(sent.value).header.message_id)
    assert base64.b64decode(pending["items"][0]["envelope"]) == sent.value


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b'{"items": [{"row": null}]}', b'{"items": [{"row": null, '
     b'"message_id": "x", "case_id": "y", "sealed_at": "z", "envelope": "!"}]}'],
)  # fmt: skip
async def test_corrupt_sidecar_is_quarantined_not_a_crash_loop(
    tmp_path: Path, damage: bytes
) -> None:
    """An unreadable pending sidecar fails its file with a reason (the sidecar kept
    beside it for the operator: it may name messages that reached Kafka); the
    scanner goes on with the next file, and nothing is produced from it."""
    fed = LiveFederation()
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    with pytest.raises(RuntimeError):
        await DropFolder(
            tmp_path, sender(fed, "de.hotline", FakeKafka(failures=[RuntimeError()]))
        ).run_once()
    (tmp_path / "processing" / "x.json.pending.json").write_bytes(damage)
    _drop(tmp_path, "y.json", make_referral().model_dump_json().encode())
    kafka = FakeKafka()
    folder = DropFolder(tmp_path, sender(fed, "de.hotline", kafka))
    results = {r.name: r for r in await folder.run_once()}
    assert FileState.FAILED == results["x.json"].state
    assert FileState.SENT == results["y.json"].state
    assert 1 == len(kafka.sent)
    error = (tmp_path / "failed" / "x.json.error.txt").read_text()
    assert "pending sidecar unreadable" in error
    assert damage == (tmp_path / "failed" / "x.json.pending.json.corrupt").read_bytes()
    assert [] == await folder.run_once()  # no crash loop: nothing left to retry


async def test_stale_pending_envelope_is_resealed_under_the_same_ids(tmp_path: Path) -> None:
    """A sidecar older than reseal_after is sealed again, fresh, with the same message
    and case ids (a copy the router already forwarded stays a duplicate)."""
    fed = LiveFederation()
    t0 = now()
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    with pytest.raises(RuntimeError):
        await DropFolder(
            tmp_path,
            sender(fed, "de.hotline", FakeKafka(failures=[RuntimeError()]), clock=lambda: t0),
        ).run_once()
    later = t0 + timedelta(hours=21)
    kafka = FakeKafka()
    (result,) = await DropFolder(
        tmp_path, sender(fed, "de.hotline", kafka, clock=lambda: later)
    ).run_once()
    assert FileState.SENT == result.state
    header = parse(kafka.sent[0].value).header
    assert later == header.created_at
    pending_id = result.message_ids[0]
    assert pending_id == header.message_id


async def test_kafka_outage_leaves_the_file_pending_and_a_refusal_fails_it(
    tmp_path: Path,
) -> None:
    """Retriable errors past the deadline keep the file SEALED in processing/ (retried by
    the next run under the same id); a non-retriable refusal moves it to failed/."""
    fed = LiveFederation()
    clock = [0.0]

    def mono() -> float:
        clock[0] += 1.0
        return clock[0]

    outage = FakeKafka(failures=[Unavailable("KafkaConnectionError")] * 50)
    s = sender(fed, "de.hotline", outage)
    s.outbox._monotonic = mono
    _drop(tmp_path, "x.json", make_referral().model_dump_json().encode())
    with capture_logs() as logged:
        (result,) = await DropFolder(tmp_path, s).run_once()
    assert FileState.SEALED == result.state
    assert "within" in (result.error or "")
    assert (tmp_path / "processing" / "x.json.pending.json").exists()
    [deferred] = [e for e in logged if e["event"] == "send_deferred"]
    assert ("x.json", str(tmp_path / "processing")) == (deferred["file"], deferred["kept_in"])

    refusing = FakeKafka(failures=[RecordTooLarge("MessageSizeTooLargeError")])
    (result,) = await DropFolder(tmp_path, sender(fed, "de.hotline", refusing)).run_once()
    assert FileState.FAILED == result.state
    assert "MessageSizeTooLargeError" in (tmp_path / "failed" / "x.json.error.txt").read_text()


async def test_outbox_retries_retriable_errors_with_the_same_bytes() -> None:
    """Timeouts and connection errors are retried (producer restarted) until acknowledged."""
    fed = LiveFederation()
    kafka = FakeKafka(
        failures=[Unavailable("KafkaTimeoutError"), Unavailable("KafkaConnectionError")]
    )
    s = sender(fed, "de.hotline", kafka)
    sealed = s.seal_referral(parse_submission(make_referral().model_dump_json().encode()))
    assert sealed.message_id == await s.send(sealed)
    assert [sealed.envelope] == [x.value for x in kafka.sent]
    assert 3 == kafka.starts
    kafka.failures.append(RecordTooLarge("MessageSizeTooLargeError"))
    with pytest.raises(SendError) as info:
        await s.send(sealed)
    assert info.value.retriable is False


def test_unroutable_submission_is_a_send_error() -> None:
    """A jurisdiction that the directory cannot route to is refused when sealing."""
    fed = LiveFederation()
    s = sender(fed, "de.hotline", FakeKafka())
    with pytest.raises(SendError):
        s.seal_referral(Submission(make_referral(), "de"))  # lowercase: invalid header
