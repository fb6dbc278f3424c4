"""``crb federation|participant|directory|seal|open`` end to end, in a temporary $CRB_HOME.

Most cases call ``broker.cli.main`` in-process (fast, same code path as the
console script); one runs the real ``crb`` executable through stdin/stdout.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests._cli import (
    DE_HOTLINE,
    EXAMPLE,
    NL_HOTLINE,
    NL_POLICE_HYBRID,
    crb,
    federation_home,
    one_line_error,
)


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    return federation_home(
        tmp_path, monkeypatch, capsys, [DE_HOTLINE, NL_HOTLINE, NL_POLICE_HYBRID]
    )


def _seal_example(capsys: pytest.CaptureFixture[str], out: Path) -> None:
    code, _, err = crb(
        capsys, "seal", "--as", "de.hotline", "--jurisdiction", "NL",
        "-i", str(EXAMPLE), "-o", str(out),
    )  # fmt: skip
    assert code == 0, err


def test_seal_then_open_by_each_recipient(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A referral sealed by de.hotline opens for both NL recipients, byte-equal as JSON."""
    env = home / "env.bin"
    code, _, err = crb(
        capsys, "seal", "--as", "de.hotline", "--jurisdiction", "NL", "-i", str(EXAMPLE),
        "-o", str(env),
    )  # fmt: skip
    assert code == 0, err
    for recipient in ("nl.hotline", "nl.police"):
        code, out, err = crb(capsys, "open", "--as", recipient, "-i", str(env))
        assert code == 0, err
        assert json.loads(out) == json.loads(EXAMPLE.read_text())


def test_directory_show_and_verify(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show lists participants and keys; verify reports the version."""
    code, out, _ = crb(capsys, "directory", "show")
    assert code == 0
    assert "nl.police" in out
    assert "mlkem768-x25519-" in out
    code, out, _ = crb(capsys, "directory", "verify")
    assert (code, out.strip()) == (0, "ok: test version 4, 4 participants")


def test_wrong_recipient_is_one_line_with_reason(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused envelopes end with exit 1 and the reason code, no traceback."""
    env = home / "env.bin"
    _seal_example(capsys, env)
    code, _, err = crb(capsys, "open", "--as", "int.coordinator", "-i", str(env))
    assert code == 1
    assert one_line_error(err) == "crb: error: envelope refused (not_a_recipient)"


def test_rotation_keeps_old_mail_readable_and_revocation_refuses(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rotate the old envelope still opens; after revoking the sender's signing
    key it is refused as key_revoked; revoking the whole participant suspends it."""
    env = home / "env.bin"
    _seal_example(capsys, env)
    signing = json.loads(crb(capsys, "directory", "show", "--json")[1])
    (old_key,) = [
        k["key_id"]
        for p in signing["participants"]
        if p["participant_id"] == "de.hotline"
        for k in p["keys"]
        if k["kind"] == "signing"
    ]
    assert crb(capsys, "participant", "rotate", "nl.hotline")[0] == 0
    assert crb(capsys, "participant", "rotate", "de.hotline")[0] == 0
    assert crb(capsys, "open", "--as", "nl.hotline", "-i", str(env))[0] == 0
    assert crb(capsys, "participant", "revoke", "de.hotline", "--key-id", old_key)[0] == 0
    code, _, err = crb(capsys, "open", "--as", "nl.hotline", "-i", str(env))
    assert (code, one_line_error(err)) == (1, "crb: error: envelope refused (key_revoked)")
    assert crb(capsys, "participant", "revoke", "de.hotline")[0] == 0
    code, _, err = crb(capsys, "open", "--as", "nl.hotline", "-i", str(env))
    assert (code, one_line_error(err)) == (1, "crb: error: envelope refused (sender_suspended)")


def test_rotation_never_reinstates_a_revoked_participant(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """rotate after revoke is refused (it would give a revoked participant valid keys);
    reinstate does it explicitly, with new keys and password, and logs the decision."""
    assert crb(capsys, "participant", "revoke", "nl.hotline")[0] == 0
    code, _, err = crb(capsys, "participant", "rotate", "nl.hotline")
    assert 2 == code
    assert "participant reinstate nl.hotline" in one_line_error(err)
    before = (home / "credentials" / "nl.hotline.json").read_bytes()
    code, out, _ = crb(capsys, "participant", "reinstate", "nl.hotline")
    assert 0 == code
    assert "reinstated" in out
    assert before != (home / "credentials" / "nl.hotline.json").read_bytes()
    shown = json.loads(crb(capsys, "directory", "show", "--json")[1])
    (nl,) = [p for p in shown["participants"] if p["participant_id"] == "nl.hotline"]
    assert "active" == nl["status"]
    actions = [json.loads(line) for line in (home / "operator.log").read_text().splitlines()]
    assert ["revoke", "reinstate"] == [a["action"] for a in actions]
    assert {"nl.hotline"} == {a["participant"] for a in actions}


def test_credentials_are_made_with_the_keys(home: Path) -> None:
    """Every participant and both services have a Kafka credential, 0600 each."""
    folder = home / "credentials"
    names = {p.stem for p in folder.glob("*.json")}
    assert {"crb-router", "crb-tracker", "int.coordinator", "de.hotline", "nl.hotline"} <= names
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.glob("*.json"))


def test_rolled_back_directory_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Replacing the directory file by an older signed version is refused."""
    old = (home / "directory.json").read_bytes()
    crb(capsys, "participant", "add", "fr.hotline", "--role", "hotline", "--jurisdiction", "FR")
    (home / "directory.json").write_bytes(old)
    code, _, err = crb(capsys, "directory", "verify")
    assert code == 1
    assert "rollback" in one_line_error(err)


def test_passphrase_protected_keystore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With CRB_PASSPHRASE set keys are encrypted; without it, a one-line error."""
    monkeypatch.setenv("CRB_HOME", str(tmp_path))
    monkeypatch.setenv("CRB_PASSPHRASE", "s3cret")
    assert crb(capsys, "federation", "init", "--federation-id", "p")[0] == 0
    pems = [p for p in (tmp_path / "keys" / "federation").glob("*.pem") if ".pub." not in p.name]
    assert len(pems) == 1
    assert pems[0].read_bytes().startswith(b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----")
    monkeypatch.delenv("CRB_PASSPHRASE")
    code, _, err = crb(
        capsys, "participant", "add", "nl.hotline", "--role", "hotline", "--jurisdiction", "NL"
    )
    assert code == 1
    assert "cannot load private key" in one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("seal", "--as", "de.hotline", "--jurisdiction", "NL", "-i", "missing.json"), 2),
        (("seal", "--as", "xx.nobody", "--jurisdiction", "NL", "-i", str(EXAMPLE)), 2),
        (("participant", "add", "nl.hotline", "--role", "hotline", "--jurisdiction", "NL"), 2),
        (("participant", "add", "nl.x", "--role", "hotline", "--jurisdiction", "DE"), 2),
        (("participant", "rotate", "nl.nobody"), 2),
        (("participant", "revoke", "nl.hotline", "--key-id", "nope"), 1),
        (("directory", "verify", "--root-key", "missing.pem"), 2),
        (("federation", "init", "--federation-id", "again"), 2),
    ],
)
def test_bad_inputs_end_in_one_line(
    home: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int
) -> None:
    """Every bad input: one line on stderr, a non-zero exit code, never a traceback."""
    got, _, err = crb(capsys, *argv)
    assert got == code, err
    one_line_error(err)


def test_schema_invalid_referral_is_refused_by_seal(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """seal validates the referral before anything is encrypted."""
    bad = home / "bad.json"
    bad.write_text('{"reporter": {}}')
    code, _, err = crb(capsys, "seal", "--as", "de.hotline", "--jurisdiction", "NL", "-i", str(bad))
    assert code == 2
    assert "invalid input" in one_line_error(err)


def test_real_executable_pipes_through_stdin_and_stdout(home: Path) -> None:
    """`crb seal | crb open` through pipes, as an operator would use it."""
    crb_bin = Path(sys.executable).with_name("crb")
    env = {**os.environ, "CRB_HOME": str(home)}
    sealed = subprocess.run(
        [str(crb_bin), "seal", "--as", "de.hotline", "--jurisdiction", "NL"],
        input=EXAMPLE.read_bytes(), capture_output=True, env=env, check=True, timeout=60,
    )  # fmt: skip
    opened = subprocess.run(
        [str(crb_bin), "open", "--as", "nl.hotline"],
        input=sealed.stdout, capture_output=True, env=env, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(opened.stdout) == json.loads(EXAMPLE.read_text())
    garbage = subprocess.run(
        [str(crb_bin), "open", "--as", "nl.hotline"],
        input=b"not an envelope", capture_output=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert garbage.returncode == 1
    assert garbage.stderr.decode().strip() == "crb: error: envelope refused (malformed)"


def test_api_tokens_issue_list_revoke(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``crb token issue`` prints only the token on stdout (shown once, stored
    hashed, 0600); participant tokens need an active participant; ``list`` shows
    scope and status without the hash; ``revoke`` takes an id; all logged."""
    code, token, err = crb(capsys, "token", "issue", "--participant", "nl.hotline")
    assert 0 == code, err
    token = token.strip()
    assert token.startswith("crb_")
    assert "shown once" in err
    store = home / "tokens.json"
    assert 0o600 == stat.S_IMODE(store.stat().st_mode)
    assert token not in store.read_text()
    code, listed, _ = crb(capsys, "token", "list", "--json")
    (row,) = json.loads(listed)["tokens"]
    assert ("participant:nl.hotline", "active") == (row["scope"], row["status"])
    assert "sha256" not in row
    assert token.split("_")[1] == row["id"]
    code, out, _ = crb(capsys, "token", "revoke", row["id"])
    assert (0, f"token {row['id']} (participant:nl.hotline) revoked\n") == (code, out)
    assert "revoked" in crb(capsys, "token", "list")[1]
    actions = [json.loads(line) for line in (home / "operator.log").read_text().splitlines()]
    assert [("token_issue", row["id"]), ("token_revoke", row["id"])] == [
        (a["action"], a["token_id"]) for a in actions
    ]
    assert crb(capsys, "participant", "revoke", "de.hotline")[0] == 0
    refused = {
        "unknown": crb(capsys, "token", "issue", "--participant", "fr.hotline"),
        "suspended": crb(capsys, "token", "issue", "--participant", "de.hotline"),
        "neither": crb(capsys, "token", "issue"),
        "both": crb(capsys, "token", "issue", "--operator", "--participant", "nl.hotline"),
        "expiry": crb(capsys, "token", "issue", "--operator", "--expires-in", "0d"),
        "no such id": crb(capsys, "token", "revoke", "ffffffffffff"),
    }
    assert dict.fromkeys(refused, 2) == {k: v[0] for k, v in refused.items()}
    assert all("" == v[1] for v in refused.values())
    assert "unknown participant 'fr.hotline'" in one_line_error(refused["unknown"][2])
    assert "participant de.hotline is suspended" in one_line_error(refused["suspended"][2])
    assert "no token with id 'ffffffffffff'" in one_line_error(refused["no such id"][2])
