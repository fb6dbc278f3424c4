"""Small builders of valid contract objects for the schema and routing tests."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import schemas as s

NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
MSG = s.uuid7(NOW, lambda n: bytes(range(n)))
CASE = s.uuid7(NOW - timedelta(days=1), lambda n: bytes(range(1, n + 1)))
KEY32 = base64.b64encode(bytes(32)).decode()


def key(key_id: str, kind: str = "signing", algorithm: str = "ed25519") -> s.PublicKeyRecord:
    return s.PublicKeyRecord.model_validate(
        {
            "key_id": key_id,
            "kind": kind,
            "algorithm": algorithm,
            "encoding": "raw",
            "public_key": KEY32,
            "not_before": NOW - timedelta(days=30),
            "not_after": NOW + timedelta(days=335),
        }
    )


def participant(
    pid: str,
    roles: Iterable[str],
    *,
    jurisdiction: str | None = "",
    categories: Iterable[str] | None = None,
    status: str = "active",
) -> s.Participant:
    if jurisdiction == "":
        prefix = pid.split(".", maxsplit=1)[0]
        jurisdiction = None if prefix in {"int", "eu"} else prefix.upper()
    return s.Participant.model_validate(
        {
            "participant_id": pid,
            "display_name": pid,
            "jurisdiction": jurisdiction,
            "roles": list(roles),
            "categories": list(categories) if categories is not None else list(s.Category),
            "status": status,
            "keys": [key(f"{pid}/sig/1"), key(f"{pid}/enc/1", "encryption", "x25519")],
        }
    )


def directory(*participants: s.Participant, **rules: Any) -> s.Directory:
    everyone = list(participants)
    if not any(p.participant_id == "int.coordinator" for p in everyone):
        everyone.append(participant("int.coordinator", ["coordinator"]))
    rules.setdefault("coordinator", "int.coordinator")
    rules.setdefault("escalation_recipient", "int.coordinator")
    return s.Directory.model_validate(
        {
            "federation_id": "crb-test",
            "version": 1,
            "issued_at": NOW,
            "root_key_id": "root/1",
            "participants": everyone,
            "rules": rules,
        }
    )


def header_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": str(MSG),
        "message_type": "referral",
        "sender": "de.hotline",
        "sender_key_id": "de.hotline/sig/1",
        "created_at": "2026-11-23T17:00:00.000000Z",
        "case_id": str(CASE),
        "jurisdiction": "NL",
        "category": "csam",
        "priority": "routine",
        "handling_code": "H0",
        "recipients": ["nl.hotline", "nl.police"],
        "key_commitment": "ab" * 32,
    }
    data.update(overrides)
    return data


def referral_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reporter": {"reference": "DE-HL-1"},
        "incident": {"type": "csam", "summary": "Synthetic summary."},
        "urls": [
            {
                "url": "https://imagehost.example.org/g/1",
                "site_type": "image_host",
                "hosting": {"country": "NL", "ip": "192.0.2.10", "asn": 64500},
            }
        ],
        "items": [
            {
                "media_type": "image",
                "hashes": [{"algorithm": "sha256", "value": "0f" * 32}],
                "classification": "baseline",
                "url_index": 0,
            }
        ],
        "handling": {
            "code": "H0",
            "source_reliability": "A",
            "information_accuracy": "1",
            "tlp": "AMBER",
        },
        "delete_after": "2028-01-01",
    }
    data.update(overrides)
    return data
