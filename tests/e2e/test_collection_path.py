"""A study goes from a modality (dcmtk storescu) through a real agent's de-identification into
a research collection at a real hub (`hexchange-hub serve`, `hexchange-agent run`): the agent
seals to the collection key, the hub opens the bundle, verifies and indexes each instance."""

from __future__ import annotations

import secrets
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.factories.dicom import make_ct_study
from tests.federation import Federation, storescu

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk storescu not installed"),
]


def test_agent_sends_a_deidentified_study_into_a_collection(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", quiet_period=1.0)
    try:
        fed.start_hub()
        key = fed.hub_dir / "collection.key"
        key.touch(mode=0o600)
        key.write_bytes(secrets.token_bytes(32))
        clinic = fed.add_agent("org-a", "clinic-a", start=False)
        fed.hub_cli("collection", "create", "lungs", "--org", "org-a", "--option",
                    "retain-long-modified-dates")  # fmt: skip
        fed.hub_cli("policy", "add", "--org", "org-a", "--site", "clinic-a", "--to",
                    "collection--lungs", "--mode", "deidentified",
                    "--option=retain-long-modified-dates")  # fmt: skip
        fed.start_agent(clinic)
        study = make_ct_study(tmp_path / "modality", instances=3)
        assert storescu(clinic.dicom_port, clinic.ae_title, study.files).returncode == 0

        def indexed() -> list[tuple[str, str]]:
            with sqlite3.connect(fed.hub_dir / "hub.db") as db:
                return db.execute("SELECT sop_uid, digest FROM collection_instance").fetchall()

        fed.wait_for(lambda: len(indexed()) == 3, 90, "three instances in the collection")
        stored = [
            (fed.hub_dir / "collections" / digest[:2] / f"{digest}.dcm").read_bytes()
            for _, digest in indexed()
        ]
        for data in stored:
            for needle in study.identifying_strings:
                assert needle.encode() not in data
            assert study.study_instance_uid.encode() not in data
        assert not {uid for uid, _ in indexed()} & set(study.sop_instance_uids)
        with sqlite3.connect(fed.hub_dir / "hub.db") as db:
            assert db.execute("SELECT count(*) FROM collection_quarantine").fetchone() == (0,)
    finally:
        fed.stop()
