"""The AsyncAPI document: in sync with the models, complete, and valid for the
official AsyncAPI parser (``tests/asyncapi/``, installed by ``make test``)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from broker.asyncapi import ASYNCAPI_PATH, document, render

VALIDATOR = Path(__file__).resolve().parents[1] / "asyncapi"


def test_the_committed_document_is_current() -> None:
    """``python -m broker.asyncapi`` regenerates docs/asyncapi.json after a model change."""
    assert ASYNCAPI_PATH.read_text("utf-8") == render()


def test_every_topic_has_a_channel_and_every_message_a_sender_and_a_receiver() -> None:
    doc = document()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "{prefix}.outbox.{participant}", "{prefix}.inbox.{participant}", "{prefix}.dlq",
        "{prefix}.audit", "{prefix}.status", "{prefix}.tracker", "{prefix}.actions",
        "{prefix}.directory",
    }  # fmt: skip
    for name, channel in doc["channels"].items():
        for message in channel["messages"]:
            ref = f"#/channels/{name}/messages/{message}"
            actions = {
                op["action"] for op in doc["operations"].values() if {"$ref": ref} in op["messages"]
            }
            assert actions == {"send", "receive"}, f"{name}/{message}: {actions}"


def _validate(doc: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc), "utf-8")
    node = shutil.which("node")
    assert node is not None
    run = subprocess.run(
        [node, str(VALIDATOR / "validate.mjs"), str(path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=VALIDATOR,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(run.stdout)
    return run.returncode, result


@pytest.mark.skipif(
    shutil.which("node") is None or not (VALIDATOR / "node_modules").is_dir(),
    reason="the official AsyncAPI parser is not installed (needs Node.js; `make test` "
    "installs it into tests/asyncapi/node_modules)",
)
def test_the_official_asyncapi_parser_accepts_it_and_catches_a_broken_one(
    tmp_path: Path,
) -> None:
    code, result = _validate(document(), tmp_path)
    assert code == 0, result["diagnostics"]
    assert result["valid"]
    assert (result["channels"], result["operations"], result["messages"]) == (8, 19, 8)
    assert [d for d in result["diagnostics"] if d["severity"] in ("error", "warning")] == []
    broken = copy.deepcopy(document())
    del broken["channels"]["status"]  # operations still point at it
    code, result = _validate(broken, tmp_path)
    assert code == 1
    assert any(d["severity"] == "error" for d in result["diagnostics"])
