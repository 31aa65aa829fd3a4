"""`hexchange-hub policy`: rules are validated, versioned, and enforced at ingest."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hub.bootstrap import init_hub
from hub.cli import app
from hub.settings import HubSettings


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _add_rule(data: str, *args: str) -> tuple[int, str]:
    """`policy add` for org-a/clinic-a with `args`."""
    return _run("policy", "add", "--data-dir", data, "--org", "org-a", "--site", "clinic-a", *args)


def test_policy_rules_are_validated_and_versioned(tmp_path: Path) -> None:
    data = str(tmp_path / "hub")
    init_hub(HubSettings(data_dir=tmp_path / "hub"))
    for org, site in (("org-a", "clinic-a"), ("org-b", "archive")):
        code, _ = _run("site", "add", "--data-dir", data, "--org", org, "--site", site)
        assert code == 0
    code, out = _add_rule(data, "--to", "org-b", "--modality", "ct", "--json")
    assert code == 0, out
    policy = json.loads(out)
    assert policy["version"] == 1 and policy["rules"][0]["match"]["modalities"] == ["CT"]

    code, out = _add_rule(data, "--to", "org-nowhere")
    assert code == 2 and "not part of this network" in out
    code, out = _add_rule(data, "--to", "org-b", "--mode", "deidentified", "--option", "bogus")
    assert code == 2 and "bogus" in out
    code, out = _run("policy", "clear", "--data-dir", data, "--org", "org-x", "--site", "nope")
    assert code == 2 and "not registered" in out
    code, out = _run("site", "add", "--data-dir", data, "--org", "Org A", "--site", "x")
    assert code == 2 and "not a valid id" in out

    code, out = _run("policy", "clear", "--data-dir", data, "--org", "org-a", "--site", "clinic-a")
    assert code == 0
    code, out = _run(
        "policy", "show", "--data-dir", data, "--org", "org-a", "--site", "clinic-a", "--json"
    )
    assert json.loads(out)["version"] == 2 and json.loads(out)["rules"] == []
    code, out = _run("audit", "verify", "--data-dir", data)
    assert code == 0 and "intact" in out
