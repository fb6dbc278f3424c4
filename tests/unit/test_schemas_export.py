"""Committed JSON Schema files and examples stay in sync with the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import schemas as s
from schemas import export


def test_committed_json_schemas_match_models() -> None:
    """Regenerating the JSON Schemas in memory gives exactly the committed files
    (run ``python -m schemas.export`` after changing a model)."""
    committed = {p.name: p.read_text(encoding="utf-8") for p in export.SCHEMA_DIR.glob("*.json")}
    assert export.documents() == committed


def test_export_writes_every_document(tmp_path: Path) -> None:
    """``main`` writes one schema file per top-level message type."""
    assert export.main(tmp_path) == 0
    assert {f"{name}.schema.json" for name in export.TOP_LEVEL} == {
        p.name for p in tmp_path.iterdir()
    }


@pytest.mark.parametrize("name", sorted(export.TOP_LEVEL))
def test_example_is_valid(name: str) -> None:
    """Each top-level message type has an example that validates and re-serialises
    to the same JSON value."""
    text = (export.EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8")
    model = export.TOP_LEVEL[name].model_validate_json(text)
    assert json.loads(text) == json.loads(model.model_dump_json())


def test_schemas_forbid_unknown_properties() -> None:
    """Every exported object schema closes its properties (extra="forbid"), so
    adapters in other languages refuse what we refuse."""
    for name in export.TOP_LEVEL:
        document = json.loads(export.render(name))
        objects = [document, *document.get("$defs", {}).values()]
        for obj in objects:
            if obj.get("type") == "object":
                assert obj.get("additionalProperties") is False, (name, obj.get("title"))


def test_examples_route_consistently() -> None:
    """The example header's recipients are what resolve() computes from the example
    directory: sender and router agree on the committed data."""
    header = s.EnvelopeHeader.model_validate_json(
        (export.EXAMPLES_DIR / "envelope_header.json").read_bytes()
    )
    directory = s.Directory.model_validate_json(
        (export.EXAMPLES_DIR / "directory.json").read_bytes()
    )
    assert header.recipients == s.check_routing(header, directory).recipients


def test_examples_use_only_synthetic_network_data() -> None:
    """Examples use documentation IP ranges and reserved domains only."""
    text = (export.EXAMPLES_DIR / "referral.json").read_text(encoding="utf-8")
    referral = s.Referral.model_validate_json(text)
    hosts = [u.url.split("/")[2] for u in referral.urls]
    assert all(h.endswith((".example.org", ".test")) for h in hosts)
    ips = [str(u.hosting.ip) for u in referral.urls if u.hosting and u.hosting.ip]
    ips += [str(e.ip) for p in referral.persons for e in p.ip_events]
    prefixes = ("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:")
    assert ips
    assert all(ip.startswith(prefixes) for ip in ips)
