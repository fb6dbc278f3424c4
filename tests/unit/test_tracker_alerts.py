"""Alerts fire once when their condition holds and resolve once when it no longer
does — never repeated while they stand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from broker.tracker._alerts import Alerting, AlertKind, Observation

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _kinds(notices: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return sorted((n.alert.kind.value, n.alert.subject, n.status) for n in notices)


def test_each_alert_fires_once_and_resolves_once() -> None:
    a = Alerting(dead_letter_threshold=5, silent_after=timedelta(minutes=10))
    quiet = Observation(now=T0)
    assert [] == a.evaluate(quiet)
    busy = Observation(
        now=T0 + timedelta(minutes=1),
        urgent_overdue=(("m1/nl.police24", "de.hotline", "nl.police24"),),
        keys_not_after=(
            ("nl.hotline", "k-soon", T0 + timedelta(days=12)),
            ("de.hotline", "k-late", T0 + timedelta(days=300)),
        ),
        dead_letters_last_hour=6,
        inbox_backlog=(("fr.police24", 3, 900.0), ("be.hotline", 2, 30.0), ("nl.hotline", 0, 0)),
        degraded="Kafka has not answered for 45 s",
    )
    assert [
        ("dead_letters_growing", "dlq", "firing"),
        ("key_expiring", "k-soon", "firing"),
        ("participant_silent", "fr.police24", "firing"),
        ("tracker_degraded", "tracker", "firing"),
        ("urgent_overdue", "m1/nl.police24", "firing"),
    ] == _kinds(a.evaluate(busy))
    still = Observation(**{**vars(busy), "now": T0 + timedelta(minutes=2),
                           "dead_letters_last_hour": 9})  # fmt: skip
    assert [] == a.evaluate(still), "standing alerts are not repeated"
    assert "6 dead letters" in a.standing[(AlertKind.DEAD_LETTERS_GROWING, "dlq")].summary
    better = Observation(
        now=T0 + timedelta(minutes=3),
        keys_not_after=(("nl.hotline", "k-soon", T0 + timedelta(days=12)),),
        dead_letters_last_hour=5,
    )
    assert [
        ("dead_letters_growing", "dlq", "resolved"),
        ("participant_silent", "fr.police24", "resolved"),
        ("tracker_degraded", "tracker", "resolved"),
        ("urgent_overdue", "m1/nl.police24", "resolved"),
    ] == _kinds(a.evaluate(better))
    assert [("key_expiring", "k-soon")] == [(k.value, s) for k, s in a.standing]


def test_a_notice_carries_header_facts_only() -> None:
    a = Alerting()
    (notice,) = a.evaluate(
        Observation(now=T0, urgent_overdue=(("m9/nl.hotline", "de.hotline", "nl.hotline"),))
    )
    body = notice.to_json()
    assert {"kind", "subject", "summary", "status", "at"} == set(body)
    assert "de.hotline -> nl.hotline" in body["summary"]
    assert T0.isoformat() == body["at"]
