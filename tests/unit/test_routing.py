"""resolve(): the pure routing decision shared by sender and router."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas as s

from ._schema_fixtures import CASE, directory, header_data, participant

HOTLINE = participant("nl.hotline", ["hotline"])
POLICE = participant("nl.police", ["police"])
POLICE_24 = participant("nl.police_24x7", ["police_24x7"])
DE_HOTLINE = participant("de.hotline", ["hotline"])
EUROPOL = participant("eu.europol", ["regional_body"], categories=["trafficking"])
WITH_COPY = directory(
    DE_HOTLINE,
    HOTLINE,
    EUROPOL,
    standing_copies=[{"recipient": "eu.europol", "categories": ["trafficking"]}],
)
"""Europol has a standing copy of every trafficking case."""


def req(**kw: Any) -> s.RoutingRequest:
    data: dict[str, Any] = {
        "sender": "de.hotline",
        "jurisdiction": "NL",
        "category": "csam",
        "priority": "routine",
    }
    data.update(kw)
    return s.RoutingRequest.model_validate(data)


def test_single_recipient() -> None:
    """A jurisdiction with one hotline: the case goes to that hotline only."""
    d = directory(DE_HOTLINE, HOTLINE)
    assert s.Resolution(recipients=("nl.hotline",)) == s.resolve(req(), d)


def test_fan_out_to_every_matching_receiver() -> None:
    """Default rules: every active hotline and police force of the jurisdiction
    receives, sorted; other jurisdictions do not."""
    d = directory(DE_HOTLINE, HOTLINE, POLICE, participant("fr.hotline", ["hotline"]))
    assert s.recipients_for(req(), d) == ("nl.hotline", "nl.police")


def test_urgent_also_goes_to_police_24x7() -> None:
    """Urgent cases add the jurisdiction's 24/7 police contact, and the resolution
    says so; routine cases do not reach it."""
    d = directory(DE_HOTLINE, HOTLINE, POLICE_24)
    assert s.recipients_for(req(), d) == ("nl.hotline",)
    urgent = s.resolve(req(priority="urgent"), d)
    assert urgent.recipients == ("nl.hotline", "nl.police_24x7")
    assert urgent.urgent == ("nl.police_24x7",)
    assert not urgent.orphan


def test_delivery_rules_filter_by_priority_and_category() -> None:
    """Rules are data: here police receive only high/urgent cases and a grooming
    rule adds police for every priority."""
    d = directory(
        DE_HOTLINE,
        HOTLINE,
        POLICE,
        delivery=[
            {"roles": ["hotline"]},
            {"roles": ["police"], "priorities": ["high", "urgent"]},
            {"jurisdiction": "NL", "roles": ["police"], "categories": ["grooming"]},
        ],
    )
    assert s.recipients_for(req(), d) == ("nl.hotline",)
    assert s.recipients_for(req(priority="high"), d) == ("nl.hotline", "nl.police")
    assert s.recipients_for(req(category="grooming"), d) == ("nl.hotline", "nl.police")


def test_participant_categories_are_respected() -> None:
    """A participant never receives a category it does not accept."""
    d = directory(DE_HOTLINE, HOTLINE, participant("nl.police", ["police"], categories=["csam"]))
    assert s.recipients_for(req(), d) == ("nl.hotline", "nl.police")
    assert s.recipients_for(req(category="sextortion"), d) == ("nl.hotline",)


def test_standing_copy() -> None:
    """A standing copy adds its recipient for matching cases, wherever they go, and
    is reported in ``copies``."""
    d = WITH_COPY
    traffic = s.resolve(req(category="trafficking"), d)
    assert traffic.recipients == ("eu.europol", "nl.hotline")
    assert traffic.copies == ("eu.europol",)
    assert s.recipients_for(req(), d) == ("nl.hotline",)


def test_orphan_goes_to_coordinator_visibly() -> None:
    """A jurisdiction with no receiver routes to the coordinator with orphan=True;
    a standing copy does not hide the orphan path."""
    d = WITH_COPY
    orphan = s.resolve(req(jurisdiction="FR"), d)
    assert s.Resolution(recipients=("int.coordinator",), orphan=True) == orphan
    with_copy = s.resolve(req(jurisdiction="FR", category="trafficking"), d)
    assert with_copy.recipients == ("eu.europol", "int.coordinator")
    assert with_copy.orphan


def test_suspended_participants_are_skipped() -> None:
    """Suspended receivers get nothing; if none is left the case is an orphan."""
    d = directory(DE_HOTLINE, HOTLINE, participant("nl.police", ["police"], status="suspended"))
    assert s.recipients_for(req(), d) == ("nl.hotline",)
    d2 = directory(DE_HOTLINE, participant("nl.hotline", ["hotline"], status="suspended"))
    assert s.resolve(req(), d2).orphan
    d3 = directory(
        DE_HOTLINE,
        HOTLINE,
        participant("eu.europol", ["regional_body"], status="suspended"),
        standing_copies=[{"recipient": "eu.europol"}],
    )
    assert s.recipients_for(req(), d3) == ("nl.hotline",)


def test_sender_is_never_a_recipient() -> None:
    """The sender is excluded even when it matches; when it is the jurisdiction's only
    receiver, the case is an orphan."""
    d = directory(HOTLINE, POLICE)
    assert s.recipients_for(req(sender="nl.hotline"), d) == ("nl.police",)
    d2 = directory(HOTLINE)
    assert s.Resolution(recipients=("int.coordinator",), orphan=True) == s.resolve(
        req(sender="nl.hotline"), d2
    )


def test_no_recipient_at_all_is_an_error() -> None:
    """When even the coordinator cannot take it (it is suspended, or is the sender),
    resolve raises RoutingError(no_recipient)."""
    d = directory(DE_HOTLINE, participant("int.coordinator", ["coordinator"], status="suspended"))
    with pytest.raises(s.RoutingError) as err:
        s.resolve(req(jurisdiction="FR"), d)
    assert err.value.reason == s.Reason.NO_RECIPIENT
    with pytest.raises(s.RoutingError):
        s.resolve(req(sender="int.coordinator", jurisdiction="FR"), directory())


@pytest.mark.parametrize(
    ("sender", "reason"),
    [("nl.ghost", "unknown_sender"), ("de.hotline", "sender_suspended")],
)
def test_unknown_or_suspended_sender(sender: str, reason: str) -> None:
    """Only known, active participants can send."""
    d = directory(participant("de.hotline", ["hotline"], status="suspended"), HOTLINE)
    with pytest.raises(s.RoutingError) as err:
        s.resolve(req(sender=sender), d)
    assert reason == err.value.reason
    assert sender == err.value.participant


def reply(recipients: list[str], sender: str = "nl.hotline") -> s.RoutingRequest:
    return req(message_type="receipt", sender=sender, recipients=recipients)


def test_reply_goes_to_named_original_sender() -> None:
    """A receipt/case_ack goes to the single recipient it names (the original
    sender), whatever the delivery rules say."""
    d = directory(DE_HOTLINE, HOTLINE, POLICE)
    assert s.Resolution(recipients=("de.hotline",)) == s.resolve(reply(["de.hotline"]), d)
    ack = req(message_type="case_ack", sender="nl.police", recipients=["de.hotline"])
    assert s.recipients_for(ack, d) == ("de.hotline",)


@pytest.mark.parametrize(
    ("recipients", "reason"),
    [
        ([], "reply_needs_one_recipient"),
        (["de.hotline", "nl.police"], "reply_needs_one_recipient"),
        (["fr.ghost"], "unknown_recipient"),
        (["be.hotline"], "recipient_suspended"),
        (["nl.hotline"], "reply_to_self"),
    ],
)
def test_bad_replies_are_refused(recipients: list[str], reason: str) -> None:
    """Replies must name exactly one known, active participant other than the sender."""
    d = directory(
        DE_HOTLINE, HOTLINE, POLICE, participant("be.hotline", ["hotline"], status="suspended")
    )
    with pytest.raises(s.RoutingError) as err:
        s.resolve(reply(recipients), d)
    assert reason == err.value.reason


def test_header_satisfies_routing_input_and_router_check() -> None:
    """An EnvelopeHeader is routed like the request it was built from; check_routing
    accepts the right recipient set and refuses any other (recipient_mismatch)."""
    d = directory(DE_HOTLINE, HOTLINE, POLICE, POLICE_24)
    header = s.EnvelopeHeader.model_validate(header_data())
    assert s.resolve(req(), d) == s.check_routing(header, d)
    for wrong in (["nl.hotline"], ["nl.hotline", "nl.police", "nl.police_24x7"]):
        bad = s.EnvelopeHeader.model_validate(header_data(recipients=wrong))
        with pytest.raises(s.RoutingError) as err:
            s.check_routing(bad, d)
        assert err.value.reason == s.Reason.RECIPIENT_MISMATCH
    receipt = s.EnvelopeHeader.model_validate(
        header_data(
            message_type="receipt",
            sender="nl.hotline",
            recipients=["de.hotline"],
            in_reply_to=str(CASE),
        )
    )
    assert s.check_routing(receipt, d).recipients == ("de.hotline",)


PEOPLE = [
    DE_HOTLINE,
    HOTLINE,
    POLICE,
    POLICE_24,
    EUROPOL,
    participant("nl.police2", ["police"], status="suspended"),
    participant("fr.hotline", ["hotline"], categories=["csam"]),
]


@settings(deadline=None)
@given(
    people=st.lists(st.sampled_from(PEOPLE), unique=True),
    sender=st.sampled_from([p.participant_id for p in PEOPLE]),
    jurisdiction=st.sampled_from(["NL", "FR", "DE", "BE"]),
    category=st.sampled_from(s.Category),
    priority=st.sampled_from(s.Priority),
)
def test_resolution_invariants(
    people: list[s.Participant],
    sender: str,
    jurisdiction: str,
    category: s.Category,
    priority: s.Priority,
) -> None:
    """For any directory drawn from a pool and any referral: recipients are sorted,
    unique, active, accept the category, exclude the sender; orphan iff no
    recipient is in the jurisdiction; a header built from them passes the router."""
    d = directory(
        *people, standing_copies=[{"recipient": "eu.europol"}] if EUROPOL in people else []
    )
    request = req(sender=sender, jurisdiction=jurisdiction, category=category, priority=priority)
    sender_record = d.participant(sender)
    if sender_record is None or not sender_record.active:
        with pytest.raises(s.RoutingError, match=r"unknown_sender|sender_suspended"):
            s.resolve(request, d)
        return
    result = s.resolve(request, d)  # the coordinator is active: never no_recipient
    assert tuple(sorted(set(result.recipients))) == result.recipients
    assert sender not in result.recipients
    for pid in result.recipients:
        p = d.participant(pid)
        assert p is not None
        assert p.active
        assert category in p.categories
    local = [pid for pid in result.recipients if d.participant(pid).jurisdiction == jurisdiction]  # type: ignore[union-attr]
    assert result.orphan == (not local)
    header = s.EnvelopeHeader.model_validate(
        header_data(
            sender=sender,
            jurisdiction=jurisdiction,
            category=category,
            priority=priority,
            recipients=list(result.recipients),
        )
    )
    assert result == s.check_routing(header, d)
