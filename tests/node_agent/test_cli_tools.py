"""Commands a new user runs first: `synth-study` makes a study the agent accepts, without the
repository's tests; `queue --help` says what `queue` prints."""

from __future__ import annotations

import json
from pathlib import Path

from pydicom import dcmread
from typer.testing import CliRunner

from node_agent.cli import app
from node_agent.spool import Spool
from node_agent.state import AgentState


def test_synth_study_writes_a_study_the_spool_accepts(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = CliRunner().invoke(
        app, ["synth-study", "--out", str(out), "--instances", "3", "--rows", "32"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 3
    datasets = [dcmread(f) for f in files]
    study_uids = {str(ds.StudyInstanceUID) for ds in datasets}
    assert len(study_uids) == 1 and study_uids.pop() in result.stdout
    assert len({str(ds.SOPInstanceUID) for ds in datasets}) == 3
    assert datasets[0].pixel_array.shape == (32, 256)
    assert str(datasets[0].PatientName) == "SYNTHETIC^PATIENT"

    spool = Spool(tmp_path / "spool", AgentState(tmp_path / "state.db"))
    stored = [spool.store(f.read_bytes()) for f in files]
    assert not any(s.duplicate for s in stored)


def test_synth_study_refuses_an_unknown_modality(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth-study", "--out", str(tmp_path), "--modality", "XX"])
    assert result.exit_code == 1 and "modality must be one of CT, MR" in result.output


def test_queue_help_and_json_agree(tmp_path: Path) -> None:
    help_text = CliRunner().invoke(app, ["queue", "--help"]).stdout
    assert "one JSON array" in " ".join(help_text.split())
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "agent"}"\n'
        '[hub]\npublic_url = "https://x"\nnode_url = "https://y"\n'
        f'ca_file = "{tmp_path / "ca.pem"}"\n'
    )
    (tmp_path / "ca.pem").write_text("")
    listed = CliRunner().invoke(app, ["queue", "--config", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
