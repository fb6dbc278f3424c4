"""Write the JSON Schema of every top-level contract to ``schemas/json/``.

Run ``python -m schemas.export`` after changing a model; a unit test fails while
the committed files differ from what this generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from ._acks import CaseAck, Receipt
from ._common import SCHEMA_VERSION
from ._directory import Directory
from ._envelope import EnvelopeHeader
from ._notice import DeconflictionNotice, EscalationNotice
from ._referral import Referral
from ._status import StatusEvent

TOP_LEVEL: Final[dict[str, type[BaseModel]]] = {
    "envelope_header": EnvelopeHeader,
    "referral": Referral,
    "receipt": Receipt,
    "case_ack": CaseAck,
    "status_event": StatusEvent,
    "directory": Directory,
    "deconfliction_notice": DeconflictionNotice,
    "escalation_notice": EscalationNotice,
}
"""File stem → model: one schema (and one example) per top-level message."""

SCHEMA_DIR: Final = Path(__file__).parent / "json"
EXAMPLES_DIR: Final = Path(__file__).parent / "examples"
ID_BASE: Final = f"https://crb.example.org/schemas/v{SCHEMA_VERSION}/"


def render(name: str) -> str:
    """The JSON Schema document for ``TOP_LEVEL[name]`` as committed text."""
    schema = TOP_LEVEL[name].model_json_schema(mode="validation")
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{ID_BASE}{name}.schema.json",
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """File name → content, for every top-level contract."""
    return {f"{name}.schema.json": render(name) for name in TOP_LEVEL}


def main(out: Path = SCHEMA_DIR) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for filename, text in documents().items():
        (out / filename).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
