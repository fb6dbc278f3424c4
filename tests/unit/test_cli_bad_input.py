"""Every command, given bad input: the documented exit code (1 the operation failed,
2 bad usage or input), nothing on stdout, and exactly one ``crb: error:`` line on
stderr — never a traceback, a usage box or a pydantic dump.

Commands that need Kafka get ``--bootstrap 127.0.0.1:1`` (nothing listens there):
they must answer at once that Kafka is unreachable, with the hint to check it.
The table this test walks is printed (``pytest -s``) for the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._cli import DE_HOTLINE, EXAMPLE, NL_HOTLINE, crb, federation_home

DOWN = ("--bootstrap", "127.0.0.1:1")
UUID = "01a2190a-0000-7000-8000-000000000000"
KAFKA_HINT = "is Kafka running?"

# (argv, expected exit code, a phrase the one line must contain)
CASES: list[tuple[tuple[str, ...], int, str]] = [
    (("nosuch",), 2, "No such command"),
    (("send", "--as", "de.hotline"), 2, "name referral files"),
    (("send", "missing.json", "--as", "de.hotline"), 2, "missing.json"),
    (("send", "{ex}", "--as", "xx.nobody", "--jurisdiction", "NL"), 2, "no such participant"),
    (("send", "{ex}", "--as", "de.hotline", "--jurisdiction", "XX"), 2, "not an ISO 3166-1"),
    (("send", "{ex}", "--as", "de.hotline"), 2, "--jurisdiction XX"),
    (("send", "{bad}", "--as", "de.hotline", "--jurisdiction", "NL"), 2, "bad.json"),
    (("send", "{ex}", "--as", "de.hotline", "--jurisdiction", "NL", *DOWN), 1, KAFKA_HINT),
    (("send", "--retry-pending", "--as", "de.hotline", *DOWN), 1, KAFKA_HINT),
    (("send", "{ex}", "--as", "de.hotline", "--timeout", "0"), 2, "--timeout"),
    (("dropfolder", "--as", "de.hotline", "--once", "--jurisdiction", "EU"), 2, "EU"),
    (("dropfolder", "--as", "xx.nobody", "--once"), 2, "no such participant"),
    (("inbox", "--as", "nl.hotline", "--http", "ftp://192.0.2.1/"), 2, "not an http(s) URL"),
    (("inbox", "--as", "xx.nobody", "--once"), 2, "no such participant"),
    (("inbox", "--as", "nl.hotline", "--once", *DOWN), 1, KAFKA_HINT),
    (("ack", "accept", "not-a-uuid", "--as", "nl.hotline"), 2, "message_id"),
    (("ack", "accept", UUID, "--as", "nl.hotline"), 2, "needs --reference"),
    (("ack", "maybe", UUID, "--as", "nl.hotline"), 2, "'maybe' is not one of"),
    (("ack", "move", UUID, "--as", "nl.hotline", "--to", "XX"), 2, "--to XX: not an ISO"),
    (("ack", "accept", UUID, "--as", "nl.hotline", "--reference", "R-1"), 2, "never received"),
    (("status", "not-a-uuid"), 2, "not a case or message id"),
    (("status", UUID, *DOWN), 1, KAFKA_HINT),
    (("status", UUID, "--wait", "lost"), 2, "'lost' is not one of"),
    (("status", "NL-2026-0042"), 2, "give --as PARTICIPANT"),
    (("status", "NL-2026-0042", "--as", "fr.nobody"), 2, "no adapter state"),
    (("handovers", "--jurisdiction", "EU"), 2, "not an ISO 3166-1"),
    (("handovers", "--state", "lost"), 2, "'lost' is not one of"),
    (("handovers", *DOWN), 1, KAFKA_HINT),
    (("seal", "--as", "de.hotline", "--jurisdiction", "NL", "-i", "missing.json"), 2, "missing"),
    (("seal", "--as", "xx.nobody", "--jurisdiction", "NL", "-i", "{ex}"), 2, "no such"),
    (("open", "--as", "nl.hotline", "-i", "{bad}"), 1, "envelope refused"),
    (("federation", "init", "--federation-id", "again"), 2, "already"),
    (("participant", "add", *NL_HOTLINE), 2, "already exists"),
    (("participant", "add", "NOT-AN-ID", "--role", "hotline"), 2, "not a participant id"),
    (("participant", "add", "fr.hotline", "--role", "chief"), 2, "'chief' is not one of"),
    (("participant", "revoke", "fr.nobody"), 2, "fr.nobody"),
    (("participant", "rotate", "fr.nobody"), 2, "fr.nobody"),
    (("service", "rotate", "janitor"), 2, "'janitor' is not one of"),
    (("directory", "show", "--directory", "missing.json"), 2, "missing.json"),
    (("directory", "verify", "--root-key", "missing.pem"), 2, "missing.pem"),
    (("topics", "apply", *DOWN), 1, KAFKA_HINT),
    (("acl", "plan", *DOWN), 1, KAFKA_HINT),
    (("audit", "verify", *DOWN), 1, KAFKA_HINT),
    (("router", "run", "--log-level", "loud"), 2, "--log-level"),
    (("tracker", "run", "--http-port", "x"), 2, "--http-port"),
    (("token", "issue"), 2, "exactly one of"),
    (("token", "issue", "--participant", "fr.nobody"), 2, "unknown participant"),
    (("token", "issue", "--operator", "--expires-in", "soon"), 2, "--expires-in"),
    (("token", "revoke", "ffffffffffff"), 2, "no token with id"),
    (("kafka", "up", "--nodes", "2"), 2, "--nodes must be 1 or 3"),
    (("kafka", "logs", "--state-dir", "{tmp}/nokafka"), 1, "no local Kafka"),
    (("demo", "--referrals", "0"), 2, "--referrals"),
]


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    monkeypatch.delenv("CRB_DEBUG", raising=False)
    monkeypatch.delenv("CRB_KAFKA__BOOTSTRAP", raising=False)
    return federation_home(tmp_path, monkeypatch, capsys, [DE_HOTLINE, NL_HOTLINE])


def test_every_command_answers_bad_input_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole table: exit code, empty stdout, one stderr line with the phrase."""
    bad = home / "bad.json"
    bad.write_text("{not json")
    table: list[str] = []
    wrong: list[str] = []
    for argv, want, phrase in CASES:
        args = [
            a.replace("{ex}", str(EXAMPLE)).replace("{bad}", str(bad)).replace("{tmp}", str(home))
            for a in argv
        ]
        code, out, err = crb(capsys, *args)
        lines = err.strip().splitlines()
        line = lines[-1] if lines else ""
        shown = " ".join(argv)
        table.append(f"| crb {shown} | {code} | {line} |")
        problems = []
        if code != want:
            problems.append(f"exit {code}, want {want}")
        if out:
            problems.append(f"stdout {out!r}")
        if len(lines) != 1 or not line.startswith("crb: error: "):
            problems.append(f"stderr {err!r}")
        if phrase not in line:
            problems.append(f"no {phrase!r} in {line!r}")
        if "Traceback" in err or "pydantic.dev" in err:
            problems.append("traceback or pydantic dump")
        if problems:
            wrong.append(f"crb {shown}: " + "; ".join(problems))
    print("\n| command | exit | stderr |\n|---|---|---|\n" + "\n".join(table))
    assert [] == wrong


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """``crb`` alone: the help on stdout, one error line, exit 2."""
    code, out, err = crb(capsys)
    assert 2 == code
    assert "Usage: crb" in out
    assert "crb: error: no command given (see: crb --help)\n" == err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = crb(capsys, "--version")
    assert 0 == code
    assert out.startswith("crb 0.")
    assert "Apache Kafka 4." in out
