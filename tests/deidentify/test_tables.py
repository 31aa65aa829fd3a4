from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from deidentify.tables import e1_1, iod_types, safe_private_signatures

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "dicom-standard"
E11_SOURCE = SHARED / "ps3.15-table-E.1-1.json"
TCIA_SOURCE = SHARED / "tcia-private-tag-kb-2024-02-01.csv"
HAVE_HIGHDICOM = importlib.util.find_spec("highdicom") is not None


def _packaged(name: str) -> dict[str, Any]:
    text = resources.files("deidentify.data").joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_e1_1_header_and_rows() -> None:
    data = _packaged("ps3_15_e1_1.json")
    assert data["edition"] == "2024b"
    assert data["generated_by"] == "tools/gen_deid_tables.py"
    assert str(data["source"]).endswith("ps3.15-table-E.1-1.json")
    assert len(str(data["source_sha256"])) == 64
    rows = data["rows"]
    assert isinstance(rows, list)
    assert len(rows) == data["row_count"] == 621
    table = e1_1()
    assert len(table) == 621
    patterns = {r["tag"]: r["pattern"] for r in rows}
    assert patterns["(50XX,XXXX)"] == {"kind": "mask", "mask": 0xFF000000, "value": 0x50000000}
    assert patterns["(60XX,3000)"] == {"kind": "mask", "mask": 0xFF00FFFF, "value": 0x60003000}
    assert table.private is not None and table.private.options == {"retain-safe-private": "C"}
    assert table.lookup(0x60023000) is not None and table.lookup(0x60023001) is None
    assert table.lookup(0x501E0010) is not None


@pytest.mark.skipif(not E11_SOURCE.exists(), reason="../shared/dicom-standard not present")
def test_e1_1_matches_source_checksum_and_count() -> None:
    data = _packaged("ps3_15_e1_1.json")
    assert data["source_sha256"] == hashlib.sha256(E11_SOURCE.read_bytes()).hexdigest()
    source_rows = json.loads(E11_SOURCE.read_text(encoding="utf-8"))
    assert data["row_count"] == len(source_rows)
    packaged = {r["tag"]: r for r in data["rows"]}
    for row in source_rows:
        assert packaged[row["tag"]]["basic"] == row["basicProfile"]


@pytest.mark.skipif(not TCIA_SOURCE.exists(), reason="../shared/dicom-standard not present")
def test_tcia_matches_source_checksum() -> None:
    data = _packaged("tcia_private_tags.json")
    assert data["source_sha256"] == hashlib.sha256(TCIA_SOURCE.read_bytes()).hexdigest()
    assert data["source_row_count"] == 8787


def test_tcia_safe_signatures() -> None:
    safe = safe_private_signatures()
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in safe
    assert ("SIEMENS CSA REPORT", 0x0029, 0x08) not in safe  # 'd' in the KB
    assert all(group % 2 for _, group, _ in safe)


@pytest.mark.skipif(not E11_SOURCE.exists(), reason="../shared/dicom-standard not present")
def test_generator_is_reproducible(tmp_path: Path) -> None:
    args = [sys.executable, str(REPO / "tools" / "gen_deid_tables.py"), "--out-dir", str(tmp_path)]
    names = ["ps3_15_e1_1.json", "tcia_private_tags.json"]
    if HAVE_HIGHDICOM:  # build-time input only; compared when installed
        names.append("iod_types.json")
    else:
        args.append("--no-iod-types")
    subprocess.run(args, check=True, capture_output=True)
    for name in names:
        committed = resources.files("deidentify.data").joinpath(name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"{name} is stale: rerun the generator"


def test_iod_types_header_and_content() -> None:
    data = _packaged("iod_types.json")
    assert data["source_package"] == "highdicom" and data["source_version"]
    assert set(data["source_sha256"]) == {
        "sop_class_iod_map.json",
        "iod_module_map.json",
        "module_attribute_map.json",
    }
    assert all(len(h) == 64 for h in data["source_sha256"].values())
    # only the attributes with combined actions in Table E.1-1
    combined = {
        f"{r['pattern']['tag']:08X}"
        for r in _packaged("ps3_15_e1_1.json")["rows"]
        if "/" in r["basic"] or any("/" in a for a in r["options"].values())
    }
    assert set(data["tags"]) == combined
    for types in data["iods"].values():
        assert set(types) <= combined
        assert set(types.values()) <= {"1", "1C", "2", "2C"}
    ct = iod_types().types_for("1.2.840.10008.5.1.4.1.1.2")
    assert ct is not None and ct[0x00100020] == "2" and 0x00080080 not in ct
    assert iod_types().types_for("1.2.3.4") is None
