from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from certs.cli import app
from certs.keys import build_csr, load_certificate, new_site_key, verify_issued_by
from certs.registry import CADirectory
from certs.tokens import verify_token


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _init(runner: CliRunner, ca_dir: Path) -> None:
    result = runner.invoke(app, ["init", "--ca-dir", str(ca_dir), "--name", "CLI CA"])
    assert result.exit_code == 0, result.output


def test_init_then_refuses_second_init(runner: CliRunner, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    _init(runner, ca_dir)
    assert CADirectory(ca_dir).exists()
    again = runner.invoke(app, ["init", "--ca-dir", str(ca_dir), "--name", "Other"])
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.output


def test_token_prints_only_the_token_on_stdout(runner: CliRunner, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    _init(runner, ca_dir)
    result = runner.invoke(
        app,
        ["token", "--org", "acme", "--site", "clinic-a", "--ttl", "30m"],
        env={"HEXCHANGE_CA_DIR": str(ca_dir)},
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    claims = verify_token(token, CADirectory(ca_dir).load().public_key)
    assert (claims.org, claims.site) == ("acme", "clinic-a")
    assert token not in result.stderr


def test_list_shows_serial_and_revoke_marks_it(runner: CliRunner, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    _init(runner, ca_dir)
    token = runner.invoke(
        app, ["token", "--ca-dir", str(ca_dir), "--org", "acme", "--site", "clinic-a"]
    ).stdout.strip()
    cert = CADirectory(ca_dir).enroll(token, build_csr(new_site_key(), org="acme", site="s"))
    serial_hex = format(cert.serial_number, "x")

    listed = runner.invoke(app, ["list", "--ca-dir", str(ca_dir)])
    assert listed.exit_code == 0, listed.output
    assert serial_hex in listed.stdout and "clinic-a" in listed.stdout
    assert "valid" in listed.stdout

    revoked = runner.invoke(
        app, ["revoke", "--ca-dir", str(ca_dir), serial_hex, "--reason", "decommissioned"]
    )
    assert revoked.exit_code == 0, revoked.output
    assert CADirectory(ca_dir).is_revoked(cert.serial_number)
    assert "revoked" in runner.invoke(app, ["list", "--ca-dir", str(ca_dir)]).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list"], "hexchange-certs init"),
        (["revoke", "abc"], "hexchange-certs init"),
        (["token", "--org", "Acme!", "--site", "s"], "invalid org"),
    ],
)
def test_user_errors_are_clear_without_traceback(
    runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, [*args, "--ca-dir", str(tmp_path / "nowhere")])
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_revoke_unknown_and_bad_ttl(runner: CliRunner, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    _init(runner, ca_dir)
    unknown = runner.invoke(app, ["revoke", "--ca-dir", str(ca_dir), "deadbeef"])
    assert unknown.exit_code == 1 and "no certificate with serial deadbeef" in unknown.stderr
    bad_ttl = runner.invoke(
        app, ["token", "--ca-dir", str(ca_dir), "--org", "a", "--site", "b", "--ttl", "soon"]
    )
    assert bad_ttl.exit_code == 1 and "invalid duration" in bad_ttl.stderr
    assert bad_ttl.stdout == ""


def test_server_cert_writes_private_key(runner: CliRunner, tmp_path: Path) -> None:
    ca_dir, out = tmp_path / "ca", tmp_path / "hub"
    _init(runner, ca_dir)
    result = runner.invoke(
        app,
        [
            "server-cert",
            "--ca-dir",
            str(ca_dir),
            "--host",
            "hub.example",
            "--host",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--out-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((out / "hub.key").stat().st_mode) == 0o600
    cert = load_certificate((out / "hub.pem").read_bytes())
    verify_issued_by(cert, CADirectory(ca_dir).load().certificate)
