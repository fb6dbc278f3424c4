"""Canonical JSON: orjson's bytes are the standard library's, and no signed model
can carry a floating-point number (orjson would not write it as JCS does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import canonical_json_of

JSON_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"

keys = st.text(st.characters(codec="utf-8"), max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
    | st.text(st.characters(codec="utf-8"), max_size=40)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def _stdlib(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@given(documents)
def test_the_same_bytes_as_the_standard_library(data: object) -> None:
    """Every control character, U+2028/U+2029, astral characters, nesting, key order."""
    assert _stdlib(data) == canonical_json_of(data)


def test_every_control_character_and_line_separator() -> None:
    text = "".join(chr(i) for i in range(0x20)) + '"\\\u007f\u2028\u2029é😀'
    assert _stdlib({"k": text}) == canonical_json_of({"k": text})


@pytest.mark.parametrize("too_big", [2**53, -(2**53), 2**64])
def test_integers_jcs_cannot_carry_exactly_are_refused(too_big: int) -> None:
    with pytest.raises(ValueError, match="not canonical JSON"):
        canonical_json_of({"n": too_big})


def _types(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        if schema.get("type") == "number" or (
            isinstance(schema.get("type"), list) and "number" in schema["type"]
        ):
            found.append(json.dumps(schema))
        for value in schema.values():
            found += _types(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _types(value)
    return found


@pytest.mark.parametrize("path", sorted(JSON_SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_no_signed_model_has_a_floating_point_field(path: Path) -> None:
    schema = json.loads(path.read_text("utf-8"))
    assert [] == _types(schema)
