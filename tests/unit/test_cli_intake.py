"""``crb intake-key`` and the guards of ``crb serve`` (served for real in
tests/integration/test_intake_flow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters import TokenStore
from tests._cli import DE_HOTLINE, NL_HOTLINE, crb, federation_home


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    return federation_home(tmp_path, monkeypatch, capsys, [DE_HOTLINE, NL_HOTLINE])


def test_intake_keys_are_issued_once_listed_and_revoked(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, key, err = crb(capsys, "intake-key", "issue", "--as", "de.hotline", "--label", "cms")
    assert code == 0, err
    key = key.strip()
    assert key.startswith("crb_")
    path = home / "adapters" / "de.hotline" / "intake-keys.json"
    assert key not in path.read_text()  # only its hash is kept
    (record,) = TokenStore(path).tokens().values()
    assert record.scope == "participant:de.hotline"
    code, out, _ = crb(capsys, "intake-key", "list", "--as", "de.hotline", "--json")
    assert [k["status"] for k in json.loads(out)["keys"]] == ["active"]
    code, _, err = crb(capsys, "intake-key", "revoke", record.id, "--as", "de.hotline")
    assert code == 0, err
    code, out, _ = crb(capsys, "intake-key", "list", "--as", "de.hotline", "--json")
    assert [k["status"] for k in json.loads(out)["keys"]] == ["revoked"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host", "0.0.0.0"), "needs TLS"),  # noqa: S104 - refused, that is the point
        (("--host", "192.0.2.5"), "needs TLS"),
        (("--tls-cert", "x.pem"), "go together"),
        (("--tls-cert", "x.pem", "--tls-key", "y.pem"), "no such file"),
    ],
)
def test_serve_off_loopback_needs_tls(
    home: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = crb(capsys, "serve", "--as", "de.hotline", *args)
    assert code == 2
    assert message in err
