#!/usr/bin/env python3
"""Generate the de-identification tables that `deidentify` ships as package data.

Inputs (read at build time only; the runtime never reads them):

* PS3.15 Table E.1-1 as JSON (innolitics/dicom-standard format), default
  ``<repo>/../shared/dicom-standard/ps3.15-table-E.1-1.json``.
* The TCIA private tag knowledge base CSV, default
  ``<repo>/../shared/dicom-standard/tcia-private-tag-kb-2024-02-01.csv``.
* highdicom's copy of the standard's IOD/module/attribute tables
  (``highdicom/_standard/{sop_class_iod_map,iod_module_map,module_attribute_map}.json``), from
  the installed ``highdicom`` package (``pip install highdicom`` for the generator only) or
  ``--highdicom-dir``. highdicom is never imported, here or at runtime.

Outputs (committed):

* ``deidentify/data/ps3_15_e1_1.json`` - every row of Table E.1-1 with its tag pattern
  (exact tag, group/element mask, or "odd group = private"), keyword, basic profile action and
  the action of each option column, keyed by the option's kebab-case name.
* ``deidentify/data/tcia_private_tags.json`` - the private element signatures
  ``(creator, group, element-byte)`` that TCIA marks ``k`` (safe to keep) wherever they occur as
  the leaf of a signature; a signature marked ``k`` in one context and anything else in another
  is left out (not safe).
* ``deidentify/data/iod_types.json`` - for the attributes that have a combined action
  (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) in some column of Table E.1-1 only: their Type (1, 1C, 2,
  2C) at the top level of each IOD, and the IOD of each SOP class. When an attribute occurs in
  several modules of an IOD the strongest Type wins (1 > 1C > 2 > 2C > 3), whatever the
  module's usage (a module that is present must be complete). Type 3 attributes and those
  absent from an IOD are left out (the runtime treats both as Type 3).

Every file records its source (file names, package and version where it comes from a package),
their SHA-256 and the generator, so a reviewer can check which edition of which table the
runtime enforces.

Usage: ``python tools/gen_deid_tables.py [--source PATH] [--tcia-source PATH]
[--highdicom-dir DIR] [--out-dir DIR]``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "dicom-standard"
DEFAULT_SOURCE = DEFAULT_SHARED / "ps3.15-table-E.1-1.json"
DEFAULT_TCIA = DEFAULT_SHARED / "tcia-private-tag-kb-2024-02-01.csv"
DEFAULT_OUT = REPO_ROOT / "deidentify" / "data"
GENERATED_BY = "tools/gen_deid_tables.py"

# Source column -> Option value (kebab case, as in deidentify.profile.Option).
OPTION_COLUMNS: dict[str, str] = {
    "rtnSafePrivOpt": "retain-safe-private",
    "rtnUIDsOpt": "retain-uids",
    "rtnDevIdOpt": "retain-device-identity",
    "rtnInstIdOpt": "retain-institution-identity",
    "rtnPatCharsOpt": "retain-patient-characteristics",
    "rtnLongFullDatesOpt": "retain-long-full-dates",
    "rtnLongModifDatesOpt": "retain-long-modified-dates",
    "cleanDescOpt": "clean-descriptors",
    "cleanStructContOpt": "clean-structured-content",
    "cleanGraphOpt": "clean-graphics",
}
VALID_ACTIONS = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}

_EXACT = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
_MASKED = re.compile(r"^\(([0-9A-FX]{4}),([0-9A-FX]{4})\)$")
_PRIVATE = re.compile(r"^\(GGGG,EEEE\)\s+WHERE\s+GGGG\s+IS\s+ODD$")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_tag_pattern(text: str) -> dict[str, Any]:
    """Turn a Table E.1-1 tag cell into a matchable pattern.

    Returns ``{"kind": "exact", "tag": int}``, ``{"kind": "mask", "mask": int, "value": int}``
    (x digits are wildcards, e.g. (50xx,xxxx), (60xx,4000)) or ``{"kind": "private"}``.
    """
    cell = " ".join(text.upper().split())
    if _PRIVATE.match(cell):
        return {"kind": "private"}
    m = _EXACT.match(cell)
    if m:
        return {"kind": "exact", "tag": int(m.group(1) + m.group(2), 16)}
    m = _MASKED.match(cell)
    if m:
        digits = m.group(1) + m.group(2)
        mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
        value = int("".join("0" if c == "X" else c for c in digits), 16)
        return {"kind": "mask", "mask": mask, "value": value}
    raise ValueError(f"unrecognised tag pattern {text!r}")


def _keyword(pattern: dict[str, Any]) -> str:
    if pattern["kind"] != "exact":
        return ""
    try:
        from pydicom.datadict import keyword_for_tag
    except ImportError:  # pragma: no cover - pydicom is a project dependency
        return ""
    return str(keyword_for_tag(pattern["tag"]) or "")


def build_e1_1(source: Path, edition: str) -> dict[str, Any]:
    raw = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError("expected a JSON list of rows")
    rows: list[dict[str, Any]] = []
    for entry in raw:
        basic = str(entry["basicProfile"]).strip()
        if basic not in VALID_ACTIONS:
            raise ValueError(f"row {entry['tag']}: unknown basic action {basic!r}")
        pattern = parse_tag_pattern(str(entry["tag"]))
        options: dict[str, str] = {}
        for column, option in OPTION_COLUMNS.items():
            value = entry.get(column)
            if value:
                value = str(value).strip()
                if value not in VALID_ACTIONS:
                    raise ValueError(f"row {entry['tag']}: unknown {column} action {value!r}")
                options[option] = value
        row: dict[str, Any] = {
            "tag": str(entry["tag"]),
            "pattern": pattern,
            "name": str(entry["name"]),
            "keyword": _keyword(pattern),
            "in_std_comp_iod": entry.get("stdCompIOD") == "Y",
            "basic": basic,
            "options": options,
        }
        rows.append(row)
    exact = [r["pattern"]["tag"] for r in rows if r["pattern"]["kind"] == "exact"]
    if len(exact) != len(set(exact)):
        raise ValueError("duplicate exact tags in source")
    return {
        "source": f"dicom-standard/{source.name}",
        "edition": edition,
        "source_sha256": sha256_of(source),
        "generated_by": GENERATED_BY,
        "row_count": len(rows),
        "rows": rows,
    }


# One component of a TCIA element signature: (gggg,"creator",ee) for a private element, or
# (gggg,eeee) for a public one. The knowledge base as distributed lost the opening quote of
# the first creator in a signature, so the quotes are optional here.
_SIG_COMPONENT = re.compile(
    r"\((?P<group>[0-9a-fA-F]{4}),(?:\"?(?P<creator>[^\"]*)\"?,(?P<byte>[0-9a-fA-F]{2})"
    r"|(?P<element>[0-9a-fA-F]{4}))\)"
)


def parse_signature(sig: str) -> list[tuple[int, str | None, int]]:
    """Split ``(gggg,"creator",ee)[<0>](gggg,eeee)...`` into (group, creator|None, element)."""
    parts: list[tuple[int, str | None, int]] = []
    for chunk in re.split(r"\[<\d+>\]", sig.strip()):
        m = _SIG_COMPONENT.fullmatch(chunk.strip())
        if not m:
            raise ValueError(f"unparseable signature component {chunk!r}")
        group = int(m.group("group"), 16)
        if m.group("byte") is not None:
            parts.append((group, m.group("creator").strip(), int(m.group("byte"), 16)))
        else:
            parts.append((group, None, int(m.group("element"), 16)))
    return parts


def build_tcia(source: Path) -> dict[str, Any]:
    keep: set[tuple[str, int, int]] = set()
    other: set[tuple[str, int, int]] = set()
    total = 0
    with source.open(encoding="utf-8-sig", newline="") as fh:
        for record in csv.DictReader(fh):
            total += 1
            parts = parse_signature(record["element_sig_pattern"])
            group, creator, element = parts[-1]
            if creator is None or group % 2 == 0:
                continue  # the leaf is a public attribute: Table E.1-1 decides
            disposition = (record.get("private_disposition") or "").strip().lower()
            key = (creator, group, element)
            (keep if disposition == "k" else other).add(key)
    safe = sorted(keep - other)
    return {
        "source": f"dicom-standard/{source.name}",
        "source_sha256": sha256_of(source),
        "generated_by": GENERATED_BY,
        "source_row_count": total,
        "rule": "leaf private signatures with disposition 'k' in every row they appear in",
        "entries": [
            {"creator": c, "group": f"{g:04x}", "element": f"{e:02x}", "disposition": "k"}
            for c, g, e in safe
        ],
    }


HIGHDICOM_FILES = ("sop_class_iod_map.json", "iod_module_map.json", "module_attribute_map.json")
COMBINED_ACTIONS = {"X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
# Strength of a Type: a lower rank is a stronger requirement.
TYPE_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def find_highdicom() -> tuple[Path, str]:
    """The installed highdicom's ``_standard`` folder and its version (without importing it)."""
    spec = importlib.util.find_spec("highdicom")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "highdicom is not installed: `pip install highdicom` (generator only) "
            "or pass --highdicom-dir"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "_standard"
    return folder, importlib.metadata.version("highdicom")


def combined_action_tags(e1_1: dict[str, Any]) -> dict[int, str]:
    """tag -> keyword for the exact rows with a combined action in any column."""
    tags: dict[int, str] = {}
    for row in e1_1["rows"]:
        actions = {row["basic"], *row["options"].values()}
        if actions & COMBINED_ACTIONS:
            if row["pattern"]["kind"] != "exact":
                raise ValueError(f"combined action on a non-exact row {row['tag']}")
            tags[int(row["pattern"]["tag"])] = str(row["keyword"])
    return tags


def build_iod_types(folder: Path, version: str, e1_1: dict[str, Any]) -> dict[str, Any]:
    from pydicom.datadict import tag_for_keyword

    raw = {n: json.loads((folder / n).read_text(encoding="utf-8")) for n in HIGHDICOM_FILES}
    sop_iod: dict[str, str] = raw["sop_class_iod_map.json"]
    iod_modules: dict[str, list[dict[str, Any]]] = raw["iod_module_map.json"]
    module_attrs: dict[str, list[dict[str, Any]]] = raw["module_attribute_map.json"]
    wanted = combined_action_tags(e1_1)
    by_keyword = {keyword: tag for tag, keyword in wanted.items() if keyword}
    for tag, keyword in wanted.items():
        if not keyword or tag_for_keyword(keyword) != tag:
            raise ValueError(f"no keyword for combined-action row {tag:08X}")

    missing = sorted({iod for iod in sop_iod.values() if not iod_modules.get(iod)})
    if missing:  # no module list: those SOP classes stay unknown (conservative resolution)
        print(f"IOD types: no modules for {', '.join(missing)}; left out", file=sys.stderr)
    sop_iod = {uid: iod for uid, iod in sop_iod.items() if iod_modules.get(iod)}
    iods: dict[str, dict[str, str]] = {}
    for iod in sorted(set(sop_iod.values())):
        types: dict[int, str] = {}
        for module in iod_modules.get(iod, []):
            for attr in module_attrs.get(module["key"], []):
                if attr["path"] or attr["keyword"] not in by_keyword:
                    continue  # nested attributes keep the conservative resolution
                typ = str(attr["type"])
                if typ not in TYPE_RANK:
                    continue  # "None": no Type given by the source
                tag = by_keyword[attr["keyword"]]
                if tag not in types or TYPE_RANK[typ] < TYPE_RANK[types[tag]]:
                    types[tag] = typ
        iods[iod] = {f"{tag:08X}": types[tag] for tag in sorted(types) if types[tag] != "3"}
    return {
        "source": "highdicom/_standard/" + ",".join(HIGHDICOM_FILES),
        "source_package": "highdicom",
        "source_version": version,
        "source_sha256": {name: sha256_of(folder / name) for name in HIGHDICOM_FILES},
        "generated_by": GENERATED_BY,
        "rule": "top-level Type per IOD of the attributes with a combined action in E.1-1; "
        "strongest Type over the IOD's modules; Type 3 and absent are left out (resolved as 3)",
        "tags": {f"{tag:08X}": wanted[tag] for tag in sorted(wanted)},
        "sop_classes": dict(sorted(sop_iod.items())),
        "iods": iods,
    }


def write_json(path: Path, payload: dict[str, Any], list_key: str) -> None:
    """Write the header fields one per line and each list entry on its own line (diffable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["{"]
    for key, value in payload.items():
        if key != list_key:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    items = payload[list_key]
    if isinstance(items, dict):  # one "key": value per line
        lines.append(f" {json.dumps(list_key)}: {{")
        entries = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items.items()]
        close = " }"
    else:
        lines.append(f" {json.dumps(list_key)}: [")
        entries = [json.dumps(item, ensure_ascii=False) for item in items]
        close = " ]"
    for i, entry in enumerate(entries):
        comma = "," if i < len(entries) - 1 else ""
        lines.append(f"  {entry}{comma}")
    lines.append(close)
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--tcia-source", type=Path, default=DEFAULT_TCIA)
    parser.add_argument("--edition", default="2024b")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--highdicom-dir", type=Path, default=None, help="highdicom/_standard (default: installed)"
    )
    parser.add_argument(
        "--highdicom-version", default=None, help="version to record with --highdicom-dir"
    )
    parser.add_argument(
        "--no-iod-types", action="store_true", help="leave iod_types.json alone (no highdicom)"
    )
    args = parser.parse_args(argv)

    table = build_e1_1(args.source, args.edition)
    write_json(args.out_dir / "ps3_15_e1_1.json", table, "rows")
    print(f"E.1-1: {table['row_count']} rows -> {args.out_dir / 'ps3_15_e1_1.json'}")

    tcia = build_tcia(args.tcia_source)
    tcia_out = args.out_dir / "tcia_private_tags.json"
    write_json(tcia_out, tcia, "entries")
    print(f"TCIA: {len(tcia['entries'])} safe signatures -> {tcia_out}")

    if args.no_iod_types:
        return 0
    if args.highdicom_dir is not None:
        folder, version = args.highdicom_dir, args.highdicom_version or "unknown"
    else:
        folder, version = find_highdicom()
    iod_types = build_iod_types(folder, version, table)
    iod_out = args.out_dir / "iod_types.json"
    write_json(iod_out, iod_types, "iods")
    print(
        f"IOD types: {len(iod_types['tags'])} attributes x {len(iod_types['iods'])} IODs "
        f"(highdicom {version}) -> {iod_out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
