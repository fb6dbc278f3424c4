"""Industry reporters (electronic service providers): what they may submit, and
that they receive nothing but answers about their own referrals."""

from __future__ import annotations

from typing import Any

import pytest

import schemas as s
from broker.router import REFERRAL_SENDER_ROLES
from tests.unit._schema_fixtures import directory, participant

ESP = "ie.exampleapp"


def _directory(**rules: Any) -> s.Directory:
    return directory(
        participant("nl.hotline", ["hotline"]),
        participant("nl.police", ["police"]),
        participant("nl.police24", ["police_24x7"]),
        participant("de.hotline", ["hotline"]),
        participant(ESP, ["electronic_service_provider"]),
        participant("eu.centre", ["regional_body"]),
        delivery=[{"roles": ["hotline", "police"]}],
        standing_copies=[{"recipient": "eu.centre"}],
        **rules,
    )


def _resolve(sender: str, priority: str = "urgent", jurisdiction: str = "NL") -> s.Resolution:
    request = s.RoutingRequest.model_validate(
        {"sender": sender, "jurisdiction": jurisdiction, "category": "csam",
         "priority": priority}
    )  # fmt: skip
    return s.resolve(request, _directory())


def test_an_industry_referral_reaches_the_hotlines_only() -> None:
    assert _resolve(ESP).recipients == ("nl.hotline",)
    hotline = _resolve("de.hotline")  # the same case from a hotline reaches everyone
    assert set(hotline.recipients) == {"nl.hotline", "nl.police", "nl.police24", "eu.centre"}


def test_an_industry_referral_without_a_hotline_goes_to_the_coordinator() -> None:
    found = _resolve(ESP, jurisdiction="FR")
    assert found.recipients == ("int.coordinator",)
    assert found.orphan


@pytest.mark.parametrize("sender", ["de.hotline", "nl.police"])
def test_an_industry_reporter_never_receives_a_referral(sender: str) -> None:
    for jurisdiction in ("IE", "NL"):
        for priority in ("routine", "urgent"):
            found = _resolve(sender, priority, jurisdiction).recipients
            assert ESP not in found


def test_an_industry_reporter_may_send_referrals() -> None:
    assert s.Role.ELECTRONIC_SERVICE_PROVIDER in REFERRAL_SENDER_ROLES


def test_replies_go_back_to_an_industry_reporter() -> None:
    reply = s.RoutingRequest.model_validate(
        {"message_type": "receipt", "sender": "nl.hotline", "jurisdiction": "NL",
         "category": "csam", "priority": "routine", "recipients": [ESP]}
    )  # fmt: skip
    assert s.resolve(reply, _directory()).recipients == (ESP,)
