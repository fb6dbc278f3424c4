"""The adapter's pure parts: submissions, derived ids, receipts, case acks, CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from adapters import (
    InputError,
    ReceivedMessage,
    case_ack_for,
    derived_message_id,
    jurisdiction_of,
    moved_referral_draft,
    opening_time,
    parse_csv,
    parse_submission,
    receipt_for,
)
from schemas import (
    Accepted,
    Actioned,
    ActionType,
    Category,
    Classification,
    DecisionKind,
    HandlingCode,
    MessageType,
    Priority,
    Rejected,
    RejectReason,
    uuid7,
)
from tests._fed import make_referral

EXAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "referral.json"
T0 = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


def _received(**kw: object) -> ReceivedMessage:
    base: dict[str, object] = {
        "message_id": uuid7(T0),
        "message_type": MessageType.REFERRAL,
        "sender": "de.hotline",
        "recipient": "nl.hotline",
        "case_id": uuid7(T0),
        "jurisdiction": "NL",
        "category": Category.CSAM,
        "priority": Priority.HIGH,
        "handling_code": HandlingCode.H1,
        "envelope_sha256": "ab" * 32,
    }
    base.update(kw)
    return ReceivedMessage(**base)  # type: ignore[arg-type]


# --- submissions ----------------------------------------------------------------------


def test_bare_referral_takes_its_jurisdiction_from_the_hosting_country() -> None:
    """A bare Referral JSON is a submission for its URLs' single hosting country."""
    ref = make_referral()
    sub = parse_submission(ref.model_dump_json().encode())
    assert "NL" == sub.jurisdiction
    assert ref == sub.referral
    assert sub.case_id is None


def test_wrapper_names_jurisdiction_and_case_and_the_cli_option_wins() -> None:
    """The wrapper's jurisdiction and case id are used; an explicit argument overrides."""
    case = uuid7(T0)
    doc = {"referral": json.loads(make_referral().model_dump_json()), "jurisdiction": "de"}
    doc["case_id"] = str(case)
    sub = parse_submission(json.dumps(doc).encode())
    assert ("DE", case) == (sub.jurisdiction, sub.case_id)
    assert "FR" == parse_submission(json.dumps(doc).encode(), jurisdiction="fr").jurisdiction


def test_several_hosting_countries_must_name_the_jurisdiction() -> None:
    """The example referral points at NL and FR: refused unless a jurisdiction is named."""
    with pytest.raises(InputError, match=r"several jurisdictions \(FR, NL\)") as info:
        parse_submission(EXAMPLE.read_bytes(), where="example.json")
    assert "example.json" == info.value.where
    assert "NL" == parse_submission(EXAMPLE.read_bytes(), jurisdiction="NL").jurisdiction


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"referral": {}, "extra": 1}', "unknown wrapper keys: extra"),
        (b'{"reporter": {"reference": "x"}}', "invalid referral: incident: Field required"),
        (b'{"referral": {}, "case_id": "nope"}', "invalid"),
    ],
)
def test_invalid_files_are_refused_with_a_reason(data: bytes, message: str) -> None:
    """Each malformed input raises InputError naming the problem (never a pydantic error)."""
    with pytest.raises(InputError, match=message):
        parse_submission(data, where="f.json")


def test_assigned_country_wins_over_hosting_country() -> None:
    """ICCAM's assigned country decides where a URL's hosting country does not."""
    doc = json.loads(make_referral().model_dump_json())
    doc["urls"][0]["assigned_country"] = "DE"
    from schemas import Referral

    assert "DE" == jurisdiction_of(Referral.model_validate(doc))


# --- derived ids, receipts, case acks ---------------------------------------------------


def test_derived_ids_are_stable_uuid7_and_differ_by_part() -> None:
    """Same inputs -> same UUIDv7 with the original's timestamp; other inputs -> other id."""
    original = uuid7(T0)
    a = derived_message_id(original, "receipt", "nl.hotline")
    assert a == derived_message_id(original, "receipt", "nl.hotline")
    assert 7 == a.version
    assert original.int >> 80 == a.int >> 80
    assert a != derived_message_id(original, "receipt", "nl.police")
    assert a != derived_message_id(uuid7(T0), "receipt", "nl.hotline")
    # Length-prefixed parts: ("ab", "c") and ("a", "bc") must not collide.
    assert derived_message_id(original, "ab", "c") != derived_message_id(original, "a", "bc")


def test_receipt_answers_the_original_sender_with_the_envelope_digest() -> None:
    """The receipt's header copies the case facts and names only the original sender."""
    m = _received()
    draft, receipt = receipt_for(m, received_at=T0)
    assert MessageType.RECEIPT == draft.message_type
    assert ("nl.hotline", ("de.hotline",), m.message_id) == (
        draft.sender,
        draft.recipients,
        draft.in_reply_to,
    )
    assert (m.case_id, "NL", Priority.HIGH, HandlingCode.H1) == (
        draft.case_id,
        draft.jurisdiction,
        draft.priority,
        draft.handling_code,
    )
    assert m.envelope_sha256 == receipt.envelope_sha256
    assert draft.message_id == receipt_for(m, received_at=T0 + timedelta(hours=1))[0].message_id


def test_case_ack_id_depends_on_the_decision_not_on_the_time() -> None:
    """Sending the same decision again reuses its id; a different decision gets a new id."""
    m = _received()
    accept = Accepted(receiver_reference="NL-42")
    d1, ack = case_ack_for(m, accept, now=T0)
    d2, _ = case_ack_for(m, accept, now=T0 + timedelta(days=3))
    d3, _ = case_ack_for(m, Accepted(receiver_reference="NL-43"), now=T0)
    d4, _ = case_ack_for(m, Rejected(reason=RejectReason.DUPLICATE), now=T0)
    assert d1.message_id == d2.message_id
    assert len({d1.message_id, d3.message_id, d4.message_id}) == 3
    assert (DecisionKind.ACCEPTED, DecisionKind.REJECTED) == (d1.decision, d4.decision)
    assert (MessageType.CASE_ACK, m.message_id, accept) == (
        d1.message_type,
        ack.original_message_id,
        ack.decision,
    )
    actioned = Actioned(action=ActionType.CONTENT_REMOVED, url_indexes=(0,))
    assert case_ack_for(m, actioned, now=T0)[0].message_id not in {d1.message_id, d4.message_id}


def test_case_ack_answers_referrals_only() -> None:
    """A receipt or a case ack cannot be answered with a case decision."""
    with pytest.raises(InputError, match="not a referral"):
        case_ack_for(
            _received(message_type=MessageType.RECEIPT), Accepted(receiver_reference="x"), now=T0
        )


def test_move_forwards_the_same_case_to_the_new_jurisdiction() -> None:
    """The moved referral keeps the case id, targets the new country, and the Moved
    decision names the new referral's (derived) id."""
    m = _received()
    draft, moved = moved_referral_draft(m, make_referral(), to_jurisdiction="de")
    assert (m.case_id, "DE", "nl.hotline") == (draft.case_id, draft.jurisdiction, draft.sender)
    assert draft.message_id == moved.forwarded_message_id
    assert "DE" == moved.to_jurisdiction
    again, _ = moved_referral_draft(m, make_referral(), to_jurisdiction="DE")
    assert draft.message_id == again.message_id
    with pytest.raises(InputError, match="already in NL"):
        moved_referral_draft(m, make_referral(), to_jurisdiction="NL")


def test_opening_time_is_the_record_time_clamped() -> None:
    """Inbox records are verified when the router forwarded them, within max_lag of now."""
    lag = timedelta(days=7)
    assert T0 == opening_time(T0, None, lag)
    assert T0 - timedelta(days=2) == opening_time(T0, T0 - timedelta(days=2), lag)
    assert T0 - lag == opening_time(T0, T0 - timedelta(days=30), lag)
    assert T0 == opening_time(T0, T0 + timedelta(hours=1), lag)


# --- CSV --------------------------------------------------------------------------------

HEADER = (
    "reporter_reference,incident_type,summary,url,hosting_country,hosting_ip,hash_type,"
    "hash_value,classification,priority,urgency_reason,handling_code,tlp,delete_after\n"
)


def test_csv_rows_become_referrals() -> None:
    """A valid row maps to a referral with its URL, hosting, hashed item and handling."""
    data = (
        HEADER
        + "R-1,csam,Synthetic,https://a.example.org/x,NL,192.0.2.1,sha256,"
        + "ab" * 32
        + ",baseline,urgent,Ongoing abuse,H0,AMBER,2027-12-31\n"
        + "R-2,grooming,Synthetic two,https://b.example.org/y,DE,,,,,,,H1,GREEN,2027-06-30\n"
    ).encode()
    batch = parse_csv(b"\xef\xbb\xbf" + data)  # with a BOM
    assert () == batch.errors
    (row1, s1), (row2, s2) = batch.rows
    assert (2, 3) == (row1, row2)
    assert ("NL", "DE") == (s1.jurisdiction, s2.jurisdiction)
    r = s1.referral
    assert "https://a.example.org/x" == r.urls[0].url
    assert r.urls[0].hosting is not None
    assert "192.0.2.1" == str(r.urls[0].hosting.ip)
    assert Classification.BASELINE == r.items[0].classification
    assert (Priority.URGENT, "Ongoing abuse") == (r.urgency.priority, r.urgency.reason)
    assert ("X", "4") == (
        r.handling.source_reliability.value,
        r.handling.information_accuracy.value,
    )
    assert () == s2.referral.items


def test_csv_reports_each_bad_row_with_its_number() -> None:
    """Malformed rows are reported by row number, with the first problem of each."""
    data = (
        HEADER
        + "R-1,csam,ok,https://a.example.org/x,NL,,,,,,,H0,AMBER,2027-12-31\n"
        + "R-2,csam,no url,not-a-url,NL,,,,,,,H0,AMBER,2027-12-31\n"
        + "R-3,csam,urgent,https://a.example.org/x,NL,,,,,urgent,,H0,AMBER,2027-12-31\n"
        + "R-4,csam,hash,https://a.example.org/x,NL,,md5,abc,baseline,,,H0,AMBER,2027-12-31\n"
        + "R-5,csam,half,https://a.example.org/x,NL,,md5,,,,,H0,AMBER,2027-12-31\n"
        + "R-6,csam,short row\n"
        + "R-7,csam,no country,https://a.example.org/x,,,,,,,,H0,AMBER,2027-12-31\n"
    ).encode()
    batch = parse_csv(data)
    assert [2] == [row for row, _ in batch.rows]
    by_row = {e.row: e.message for e in batch.errors}
    assert [3, 4, 5, 6, 7, 8] == sorted(by_row)
    assert by_row[3].startswith("urls.0.url")
    assert "urgent" in by_row[4]
    assert by_row[5].startswith("items.0.hashes.0")
    assert "go together" in by_row[6]
    assert "3 cells, the header has 14" == by_row[7]
    assert "no hosting or assigned country" in by_row[8]
    assert "row 3: urls.0.url" in str(batch.errors[0])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"reporter_reference,bogus\n", "unknown columns bogus"),
        (b"reporter_reference,summary\n", "missing columns incident_type"),
        (HEADER.encode(), "no data rows"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_csv_header_problems_refuse_the_whole_file(data: bytes, message: str) -> None:
    """An unusable header (or no rows) is one InputError for the file."""
    with pytest.raises(InputError, match=message):
        parse_csv(data)


def test_received_message_is_built_from_an_opened_envelope() -> None:
    """ReceivedMessage keeps the header facts an ack needs (checked via a real open)."""
    from keys import open as open_envelope
    from tests._fed import LiveFederation, now

    fed = LiveFederation()
    env = fed.referral()
    opened = open_envelope(
        env,
        recipient="nl.hotline",
        opening_keys=[fed.opening["nl.hotline"]],
        directory=fed.directory(),
        now=now(),
    )
    m = ReceivedMessage.from_opened(opened)
    assert (opened.header.message_id, "de.hotline", "nl.hotline") == (
        m.message_id,
        m.sender,
        m.recipient,
    )
    assert isinstance(m.case_id, UUID)
    assert opened.digest == m.envelope_sha256
