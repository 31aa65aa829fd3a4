from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deidentify.cli import app
from deidentify.engine import PseudonymKeys, apply
from deidentify.profile import Action, Option, Profile
from deidentify.recipe import RecipeError, parse_recipe
from deidentify.verify import verify
from tests.deidentify.factories import SECRET, ct_dataset, with_private_tags
from tests.factories.dicom import make_ct_study

BASIC = Profile.basic()

GOOD = """\
description = "Site A research export"

[attributes]
PatientAge = "keep"
StudyDescription = { replace = "RESEARCH CT" }
"(0008,103E)" = "empty"
Manufacturer = "remove"
InstitutionName = { action = "keep", allow_identifying = true }

[private]
keep = [
  { creator = "ACME LEAKY 1.0", group = "0033", element = "01" },
  { creator = "ACME WHOLE", group = "0035" },
]

[dates]
policy = "shift"
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text)
    return [str(p) for p in info.value.problems]


def test_good_recipe_parses() -> None:
    recipe = parse_recipe(GOOD)
    actions = {a.keyword: (a.action, a.value) for a in recipe.attributes}
    assert actions == {
        "PatientAge": (Action.K, None),
        "StudyDescription": (Action.D, "RESEARCH CT"),
        "SeriesDescription": (Action.Z, None),
        "Manufacturer": (Action.X, None),
        "InstitutionName": (Action.K, None),
    }
    assert {(p.creator, p.group, p.element) for p in recipe.private_keep} == {
        ("ACME LEAKY 1.0", 0x0033, 0x01),
        ("ACME WHOLE", 0x0035, None),
    }
    assert recipe.date_policy == "shift" and len(recipe.sha256) == 64
    profile = recipe.apply_to(Profile.from_names(["retain-long-full-dates"]))
    assert profile.options == {Option.RETAIN_LONG_MODIFIED_DATES}
    assert profile.action_for(0x00101010, vr="AS") is Action.K
    assert profile.action_for(0x00080070, vr="LO") is Action.X
    assert profile.action_for(0x00331001, vr="LO", private_creator="ACME LEAKY 1.0") is Action.K
    assert profile.action_for(0x00331002, vr="LO", private_creator="ACME LEAKY 1.0") is Action.X
    assert profile.action_for(0x003510FF, vr="LO", private_creator="ACME WHOLE") is Action.K
    assert any(v.startswith("site recipe sha256:") for v in profile.method_values())


def test_unknown_keyword_names_line_and_suggests() -> None:
    problems = _problems('[attributes]\nPatientAge = "keep"\nPatientsName = "keep"\n')
    assert len(problems) == 1
    assert problems[0].startswith("line 3: unknown attribute 'PatientsName'")
    assert "did you mean 'PatientName'" in problems[0]


def test_every_problem_reported_with_its_line() -> None:
    text = """\
[attributes]
StudyDescrption = "remove"
SeriesDescription = "delete"
PatientName = "keep"
StudyDate = { replace = "2020-01-01" }
SOPInstanceUID = "keep"
"(0019,1010)" = "keep"

[private]
keep = [{ creator = "ACME", group = "0018", element = "10" }]

[dates]
policy = "shfit"
"""
    problems = _problems(text)
    joined = "\n".join(problems)
    assert "line 2: unknown attribute 'StudyDescrption'" in joined
    assert "did you mean 'StudyDescription'" in joined
    assert "line 3: SeriesDescription: unknown action 'delete'" in joined
    assert "line 4: PatientName identifies" in joined and "allow_identifying = true" in joined
    assert "line 5: StudyDate: the replacement is not a valid DA value" in joined
    assert "2020-01-01" not in joined  # values are never echoed
    assert "line 6: SOPInstanceUID is a UID" in joined and "retain-uids" in joined
    assert "line 7:" in joined and "[private]" in joined
    assert "line 10: private.keep entry 1: group must be an odd group" in joined
    assert "line 13: unknown date policy 'shfit'" in joined and "'shift'" in joined
    assert all("fix:" in p for p in problems)


def test_toml_syntax_error_names_line() -> None:
    problems = _problems('[attributes]\nPatientAge = "keep\n')
    assert problems[0].startswith("line 2: not valid TOML")


def test_unknown_section_and_setting() -> None:
    problems = _problems('[attribute]\nPatientAge = "keep"\n[dates]\npolcy = "keep"\n')
    joined = "\n".join(problems)
    assert "line 1: unknown section or key 'attribute'" in joined
    assert "did you mean 'attributes'" in joined
    assert "line 4: unknown setting 'polcy'" in joined
    assert "in [dates]" in joined and "did you mean 'policy'" in joined
    private = "\n".join(_problems("[private]\nkeeps = []\n"))
    assert "line 2: unknown setting 'keeps' in [private]" in private
    assert "did you mean 'keep'" in private
    not_table = "\n".join(_problems('dates = "shift"\n'))
    assert "dates must be a table" in not_table and "write [dates]" in not_table


def test_apply_and_verify_respect_recipe() -> None:
    keys = PseudonymKeys(SECRET)
    ds = with_private_tags(ct_dataset(), leak="harmless note")
    ds.PatientAge = "095Y"
    recipe = parse_recipe(GOOD)
    out = apply(ds, BASIC, keys, recipe=recipe).dataset
    assert out.PatientAge == "090Y"  # kept, still capped
    assert out.StudyDescription == "RESEARCH CT"
    assert out.SeriesDescription == ""
    assert "Manufacturer" not in out
    assert out.InstitutionName == "Rural Clinic A"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.StudyDate != ds.StudyDate and out.StudyDate != "19000101"
    block = out.private_block(0x0033, "ACME LEAKY 1.0")
    assert block[0x01].value == "harmless note"
    assert verify(ds, out, BASIC, recipe) == []
    # without the recipe, the same output fails: kept attributes are removed/identifying
    codes = {(f.code, f.keyword) for f in verify(ds, out, BASIC)}
    assert ("identifying-value-present", "InstitutionName") in codes
    assert ("removed-attribute-present", "PatientAge") in codes


def test_recipe_replace_of_patient_name_wins_over_pseudonym() -> None:
    recipe = parse_recipe('[attributes]\nPatientName = { replace = "SUBJECT^01" }\n')
    ds = ct_dataset()
    out = apply(ds, BASIC, PseudonymKeys(SECRET), recipe=recipe).dataset
    assert out.PatientName == "SUBJECT^01"
    assert verify(ds, out, BASIC, recipe) == []


def test_date_policies() -> None:
    keys = PseudonymKeys(SECRET)
    ds = ct_dataset(study_date="20200110")
    for policy, expected in (("keep", "20200110"), ("remove", "")):
        recipe = parse_recipe(f'[dates]\npolicy = "{policy}"\n')
        out = apply(ds, Profile.from_names(["retain-long-modified-dates"]), keys, recipe).dataset
        assert out.StudyDate == expected, policy


def test_cli_recipe(tmp_path: Path) -> None:
    make_ct_study(tmp_path / "in", instances=1)
    key = tmp_path / "key"
    key.write_bytes(SECRET)
    bad = tmp_path / "bad.toml"
    bad.write_text('[attributes]\nPatientsName = "keep"\n', encoding="utf-8")
    runner = CliRunner()
    args = [str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key)]
    result = runner.invoke(app, [*args, "--recipe", str(bad)])
    assert result.exit_code == 2
    assert "line 2" in result.output and "PatientName" in result.output
    good = tmp_path / "site.toml"
    good.write_text(GOOD, encoding="utf-8")
    report = tmp_path / "report.json"
    result = runner.invoke(
        app, [*args, "--recipe", str(good), "--workers", "1", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "site recipe sha256:" in report.read_text(encoding="utf-8")


def test_documents_policy() -> None:
    assert parse_recipe('[documents]\npolicy = "send-if-clean"\n').apply_to(BASIC).send_documents
    assert not parse_recipe('[documents]\npolicy = "hold"\n').apply_to(BASIC).send_documents
    assert not parse_recipe("").apply_to(BASIC).send_documents  # held back by default
    problems = _problems('[documents]\npolicy = "send"\n')
    assert any("unknown document policy 'send'" in p for p in problems)
    assert any("send-if-clean" in p for p in problems)
