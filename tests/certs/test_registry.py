from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs.errors import CertsError, RevokedError
from certs.keys import build_csr, new_site_key, verify_issued_by
from certs.registry import CADirectory
from tests.factories.pki import TestNetwork, foreign_ca_site


def test_init_creates_private_files_and_refuses_overwrite(tmp_path: Path) -> None:
    directory = CADirectory(tmp_path / "ca")
    assert not directory.exists()
    ca = directory.init("Net CA")
    assert directory.exists()
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.key_file.stat().st_mode) == 0o600
    with pytest.raises(CertsError, match="already exists"):
        CADirectory(tmp_path / "ca").init("Other")
    assert CADirectory(tmp_path / "ca").load().certificate == ca.certificate


def test_load_missing_ca_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CertsError, match=r"no CA found in .*missing.*hexchange-certs init"):
        CADirectory(tmp_path / "missing").load()


def test_revocation_is_seen_at_once_by_another_instance(network: TestNetwork) -> None:
    clinic = network.site("acme", "clinic-a")
    other = network.site("acme", "clinic-b")
    retired = network.site("acme", "clinic-old")
    network.ca_dir.revoke(retired.cert.serial_number)
    hub_view = CADirectory(network.ca_dir.path)  # e.g. the hub process
    assert hub_view.is_revoked(retired.cert.serial_number)
    assert not hub_view.is_revoked(clinic.cert.serial_number)  # its cache is now primed
    CADirectory(network.ca_dir.path).revoke(clinic.cert.serial_number, "laptop stolen")
    assert hub_view.is_revoked(clinic.cert.serial_number)
    assert not hub_view.is_revoked(other.cert.serial_number)
    records = {r.serial: r for r in hub_view.list_issued()}
    assert records[clinic.cert.serial_number].revoked
    assert records[clinic.cert.serial_number].revocation_reason == "laptop stolen"
    assert records[clinic.cert.serial_number].revoked_at is not None
    assert not records[other.cert.serial_number].revoked


def test_revoke_unknown_serial_refused(network: TestNetwork) -> None:
    with pytest.raises(RevokedError, match="no certificate with serial"):
        network.ca_dir.revoke(12345)


def test_renew_keeps_identity_and_is_refused_after_revoke(network: TestNetwork) -> None:
    clinic = network.site("acme", "clinic-a")
    renewed = network.ca_dir.renew(
        clinic.cert, build_csr(new_site_key(), org="other", site="other")
    )
    verify_issued_by(renewed, network.ca.certificate)
    assert renewed.subject == clinic.cert.subject
    assert renewed.serial_number != clinic.cert.serial_number
    network.ca_dir.revoke(renewed.serial_number)
    with pytest.raises(RevokedError, match="revoked"):
        network.ca_dir.renew(renewed, build_csr(new_site_key(), org="acme", site="clinic-a"))


def test_renew_refused_for_expired_or_foreign_certificate(
    network: TestNetwork, tmp_path: Path
) -> None:
    clinic = network.site("acme", "clinic-a", lifetime=timedelta(hours=1))
    csr = build_csr(new_site_key(), org="acme", site="clinic-a")
    with pytest.raises(CertsError, match="expired"):
        network.ca_dir.renew(clinic.cert, csr, now=datetime.now(UTC) + timedelta(hours=2))
    stranger = foreign_ca_site(tmp_path, "acme", "clinic-a")
    with pytest.raises(CertsError, match="not issued by the network CA"):
        network.ca_dir.renew(stranger.cert, csr)


def test_torn_journal_line_is_ignored_and_fenced(network: TestNetwork) -> None:
    first = network.site("acme", "clinic-a")
    with (network.ca_dir.path / "issued.jsonl").open("ab") as handle:
        handle.write(b'{"serial": "ab')  # a crash mid-append
    second = network.site("acme", "clinic-b")
    serials = {r.serial for r in network.ca_dir.list_issued()}
    assert serials == {first.cert.serial_number, second.cert.serial_number}
