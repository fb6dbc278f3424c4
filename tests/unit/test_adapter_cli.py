"""``crb send|inbox|ack``: every bad input ends in one line and a non-zero exit, no
traceback and no Kafka needed (the happy path runs in test_adapter_cli_flow.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._cli import DE_HOTLINE, NL_HOTLINE, crb, federation_home, one_line_error
from tests._fed import make_referral


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    home = federation_home(tmp_path, monkeypatch, capsys, [DE_HOTLINE, NL_HOTLINE])
    monkeypatch.setenv("CRB_KAFKA__BOOTSTRAP", "127.0.0.1:1")  # never reached in these tests
    return home


def test_send_refuses_missing_and_invalid_files_before_anything_else(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file, invalid JSON, a CSV with a bad row, an unknown file type: exit 2,
    one line naming the problem, and nothing placed in the drop folder."""
    bad_csv = home / "bulk.csv"
    bad_csv.write_text(
        "reporter_reference,incident_type,summary,url,handling_code,tlp,delete_after\n"
        "R-1,csam,s,https://a.example.org/x,H0,AMBER,2027-12-31\n"
    )
    (home / "bad.json").write_text("{")
    (home / "x.txt").write_text("x")
    cases = [
        (str(home / "missing.json"), "missing.json"),
        (str(home / "bad.json"), "bad.json: not JSON"),
        (str(bad_csv), "row 2: no hosting or assigned country"),
        (str(home / "x.txt"), "unsupported file type"),
    ]
    for path, expected in cases:
        code, _, err = crb(capsys, "send", path, "--as", "de.hotline")
        assert 2 == code
        assert expected in one_line_error(err)
    assert not (home / "adapters" / "de.hotline" / "dropfolder").exists()


def test_send_as_an_unknown_participant_is_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A participant that is not in the directory is refused in one line."""
    f = home / "r.json"
    f.write_bytes(make_referral().model_dump_json().encode())
    code, _, err = crb(capsys, "send", str(f), "--as", "fr.nobody")
    assert 2 == code  # bad input, not a failed operation
    assert "--as fr.nobody: no such participant" in one_line_error(err)


def test_inbox_options_are_checked(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--folder and --http exclude each other; --http must be an http(s) URL."""
    code, _, err = crb(
        capsys, "inbox", "--as", "nl.hotline", "--folder", str(home), "--http", "http://x"
    )
    assert 2 == code
    assert "exclude each other" in one_line_error(err)
    code, _, err = crb(capsys, "inbox", "--as", "nl.hotline", "--http", "ftp://x")
    assert 2 == code
    assert "not an http(s) URL" in one_line_error(err)


def test_ack_needs_its_options_and_a_received_message(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """accept without --reference and reject without --reason are usage errors (2); an
    ack for a message this adapter never received is refused in one line (2)."""
    mid = "01a2096b-95d3-72d2-8804-e9f7843a87a0"
    code, _, err = crb(capsys, "ack", "accept", mid, "--as", "nl.hotline")
    assert (2, True) == (code, "needs --reference" in one_line_error(err))
    code, _, err = crb(capsys, "ack", "reject", mid, "--as", "nl.hotline")
    assert (2, True) == (code, "needs --reason" in one_line_error(err))
    code, _, err = crb(capsys, "ack", "accept", mid, "--as", "nl.hotline", "--reference", "bad ref")
    assert 2 == code
    assert "receiver_reference" in one_line_error(err)
    code, _, err = crb(capsys, "ack", "close", mid, "--as", "nl.hotline")
    assert 2 == code  # an id this participant never received is bad input
    assert f"nl.hotline never received message {mid}" in one_line_error(err)


def test_readme_csv_table_lists_every_column() -> None:
    """The README's "Bulk CSV" table names exactly the columns the parser takes,
    and marks the required ones."""
    import re

    from adapters import CSV_COLUMNS, REQUIRED_COLUMNS
    from tests.conftest import repo_root

    text = (repo_root() / "README.md").read_text()
    section = text[text.index("### Bulk CSV") :]
    section = section[: section.index("\n### ")]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.M)
    assert sorted(CSV_COLUMNS) == sorted(name for name, _ in rows)
    assert len(CSV_COLUMNS) == len(rows)
    assert set(REQUIRED_COLUMNS) == {name for name, req in rows if req.strip() == "yes"}
