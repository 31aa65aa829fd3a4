"""Agent-side renewal timing and crash recovery of the key/certificate swap."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from node_agent.renewal import complete_pending, needs_renewal
from tests.factories.pki import make_network


def test_renewal_is_due_at_two_thirds_of_the_lifetime(tmp_path: Path) -> None:
    site = make_network(tmp_path).site("org-a", "clinic-a", lifetime=dt.timedelta(days=9))
    start = site.cert.not_valid_before_utc
    span = site.cert.not_valid_after_utc - start
    assert not needs_renewal(site.cert, start + span * 0.6)
    assert needs_renewal(site.cert, start + span * 0.7)


def test_an_interrupted_swap_is_completed_on_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "identity"
    folder.mkdir()
    (folder / "site.key").write_text("old key")
    (folder / "site.pem").write_text("old cert")
    # crash after the key was renamed, before the certificate was
    (folder / "site.key").write_text("new key")
    (folder / "next-site.pem").write_text("new cert")
    complete_pending(folder)
    assert (folder / "site.pem").read_text() == "new cert"
    assert (folder / "site.key").read_text() == "new key"
    assert not (folder / "next-site.pem").exists()


def test_a_renewal_whose_certificate_was_never_written_is_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "identity"
    folder.mkdir()
    (folder / "site.key").write_text("old key")
    (folder / "site.pem").write_text("old cert")
    (folder / "next-site.key").write_text("new key")  # crash before next-site.pem
    complete_pending(folder)
    assert (folder / "site.key").read_text() == "old key"
    assert (folder / "site.pem").read_text() == "old cert"
    assert not (folder / "next-site.key").exists()
