"""Identity-in-text benchmark (issue 16): planted values left, instances quarantined, retention
of the attributes a researcher needs, and time per instance.

    .venv/bin/python bench/deid_text_bench.py [--studies 12] [--slices 40] [--results FILE]

Run by hand, never in tests. The corpus is generated in memory (synthetic values only):

* the adversarial study of `tests/deidentify/adversarial.py` in each of its character sets
  (ISO_IR 100, ISO_IR 192, GB18030, ISO 2022 IR 87): the patient's identity planted in every
  text attribute of the data dictionary, private blocks, an SR of depth 5 and a key object;
* `--studies` ordinary CT studies of `--slices` instances plus one SR each, in which every 4th
  instance carries two planted written forms (in Image Comments, Study/Series Description,
  Protocol Name, Manufacturer, Retrieve URL, Document Title, Derivation Description, ...) and
  the SR's text holds them too.

Each profile (basic; clean-descriptors + clean-structured-content + clean-graphics;
retain-long-modified-dates + clean-descriptors) runs `deidentify.apply` + `deidentify.verify`
with the study's identity (`StudyIdentity.collect`, as the agent does) and writes every output
to bytes. Reported per profile:

* planted left: planted values found in the written outputs (`adversarial.leftovers`; target 0);
* quarantined: instances that raised or had verification findings (target < 1%);
* retention: of the researcher attributes present in the inputs without planted identity
  (Modality, Manufacturer, model, body part, slice thickness, kVp, image type, study/series
  description, protocol, kernel, sex, age, SR code meanings and clean SR text), the share kept
  with the same value in the output (target >= 99%); attributes the profile itself removes
  (e.g. Study Description under the basic profile) are not counted;
* ms per instance (apply + verify + write to memory).

Appends a section to bench/RESULTS.md (`--results`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import platform
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom import dcmread  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from deidentify import Profile, PseudonymKeys, apply, verify  # noqa: E402
from deidentify.identity import StudyIdentity  # noqa: E402
from deidentify.profile import Action  # noqa: E402
from tests.deidentify import adversarial  # noqa: E402
from tests.deidentify.factories import sr_referencing  # noqa: E402
from tests.factories.dicom import SyntheticStudy  # noqa: E402

SECRET = b"bench-secret-0123456789abcdef-0123456789abcdef"
PROFILES = {
    "basic": (),
    "clean-descriptors+structured+graphics": (
        "clean-descriptors",
        "clean-structured-content",
        "clean-graphics",
    ),
    "modified-dates+clean-descriptors": ("retain-long-modified-dates", "clean-descriptors"),
}
RESEARCH = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "SliceThickness",
    "KVP",
    "ImageType",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "ConvolutionKernel",
    "PatientSex",
    "PatientAge",
)
# Descriptions as scanners write them: numbers, slashes, units, versions (all must be kept).
STUDY_DESCRIPTIONS = (
    "CT CHEST WITH CONTRAST",
    "MR BRAIN W/WO",
    "CT ABD/PELVIS 3 PHASE",
    "CTA HEAD AND NECK",
    "Follow-up 6 months, 2nd series",
)
SERIES_DESCRIPTIONS = (
    "AXIAL 5MM",
    "COR 3/3",
    "T1 SE 4.5/1.2",
    "DWI b=1000",
    "CTA 0.625mm 120kV",
    "Lung 1.25 B70f",
    "PORTAL VENOUS 70s",
    "MPR 3.0 x 3.0",
    "Dose Report 1/1",
)
PROTOCOLS = ("CHEST ROUTINE", "Neuro 2.0 protocol v12", "ABD_PEL_3PH_1.5", "5.1 Thorax HR")
PLANT_INTO = (
    "ImageComments",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "DerivationDescription",
    "DocumentTitle",
    "RetrieveURL",
    "AdditionalPatientHistory",
    "Manufacturer",
)


def _ordinary_study(rng: random.Random, slices: int) -> list[Dataset]:
    uid = generate_uid()
    series = generate_uid()
    study = SyntheticStudy(
        patient=adversarial.PATIENT,
        study_instance_uid=uid,
        series_instance_uid=series,
        accession_number=adversarial.ACCESSION,
    )
    out: list[Dataset] = []
    forms = (*adversarial.SHORT_FORMS, *adversarial.LONG_FORMS)
    for index in range(slices):
        ds = adversarial._base(adversarial.CHARSETS["latin1"], index, uid, series)
        ds.StudyDescription = STUDY_DESCRIPTIONS[index % len(STUDY_DESCRIPTIONS)]
        ds.SeriesDescription = SERIES_DESCRIPTIONS[index % len(SERIES_DESCRIPTIONS)]
        ds.ProtocolName = PROTOCOLS[index % len(PROTOCOLS)]
        ds.ConvolutionKernel = "B30f"
        study.sop_instance_uids.append(str(ds.SOPInstanceUID))
        if index % 4 == 1:
            for keyword in rng.sample(PLANT_INTO, 2):
                form = rng.choice(forms)
                if keyword == "RetrieveURL":
                    value = f"https://pacs.example.org/wado?pid={form}".replace(" ", "+")
                else:
                    value = f"{form} / planted"
                setattr(ds, keyword, value)
        out.append(ds)
    sr = sr_referencing(study, adversarial.PATIENT)
    sr.ContentSequence[0].TextValue += f"; {rng.choice(forms)}; no acute findings"
    out.append(sr)
    return out


def _researcher_values(ds: Dataset) -> dict[str, str]:
    values = {k: str(ds[k].value) for k in RESEARCH if k in ds and ds[k].value}
    for i, item in enumerate(_content_items(ds)):
        for code in item.get("ConceptNameCodeSequence", []) or []:
            values[f"content[{i}].CodeMeaning"] = str(code.CodeMeaning)
    return values


def _content_items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []) or []:
        yield item
        yield from _content_items(item)


def _planted(value: str, charset: str) -> bool:
    probe = Dataset()
    probe.ImageComments = value
    return bool(adversarial.leftovers(probe, charset))


def run_profile(
    name: str, studies: list[tuple[str, list[Dataset]]], keys: PseudonymKeys
) -> dict[str, Any]:
    profile = Profile.from_names(PROFILES[name])
    instances = quarantined = left = kept = wanted = 0
    seconds = 0.0
    for charset, datasets in studies:
        identity = StudyIdentity.collect(datasets)
        for ds in datasets:
            instances += 1
            start = time.perf_counter()
            try:
                result = apply(ds, profile, keys, identity=identity)
                findings = verify(ds, result.dataset, profile, identity=identity)
                buffer = io.BytesIO()
                result.dataset.save_as(buffer, enforce_file_format=True)
            except Exception:  # a held-back instance (documents, ...) counts as quarantined
                seconds += time.perf_counter() - start
                quarantined += 1
                continue
            seconds += time.perf_counter() - start
            if findings:
                quarantined += 1
                continue
            written = dcmread(io.BytesIO(buffer.getvalue()))
            left += len(adversarial.leftovers(written, charset))
            before, after = _researcher_values(ds), _researcher_values(written)
            for key, value in before.items():
                keyword = key.rsplit(".", 1)[-1]
                if _planted(value, charset) or _removed_by_profile(profile, keyword, ds):
                    continue
                wanted += 1
                kept += after.get(key) == value
    return {
        "profile": name,
        "instances": instances,
        "quarantined": quarantined,
        "left": left,
        "retention": kept / wanted if wanted else 1.0,
        "wanted": wanted,
        "ms": 1000 * seconds / instances,
    }


def _removed_by_profile(profile: Profile, keyword: str, ds: Dataset) -> bool:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return False
    vr = ds[tag].VR if tag in ds else "LO"
    action = profile.action_for(tag, vr=vr, sop_class_uid=str(ds.SOPClassUID))
    return action not in (Action.K, Action.C)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    studies = [(key, adversarial.study(key)) for key in adversarial.CHARSETS]
    studies += [("latin1", _ordinary_study(rng, args.slices)) for _ in range(args.studies)]
    keys = PseudonymKeys(SECRET)
    rows = [run_profile(name, studies, keys) for name in PROFILES]
    total = sum(len(d) for _, d in studies)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    uname = platform.uname()
    lines = [
        "",
        f"## deidentify: identity in text ({now})",
        "",
        f"Run: `.venv/bin/python bench/deid_text_bench.py --studies {args.studies} "
        f"--slices {args.slices}`. Machine: `{uname.system} {uname.release} {uname.machine}`, "
        f"Python {platform.python_version()}.",
        "",
        f"Corpus (in memory, synthetic): {total} instances - the adversarial study in "
        f"{len(adversarial.CHARSETS)} character sets ({len(adversarial.text_tags())} dictionary "
        f"text attributes planted, SR depth 5, key object) and {args.studies} CT studies of "
        f"{args.slices} slices + 1 SR with written forms planted in every 4th instance.",
        "",
        "| profile | instances | planted values left (target 0) | quarantined (target < 1%) "
        "| researcher attributes kept (target >= 99%) | ms / instance |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['profile']} | {r['instances']} | {r['left']} | {r['quarantined']} "
            f"({100 * r['quarantined'] / r['instances']:.1f}%) | {100 * r['retention']:.2f}% "
            f"of {r['wanted']} | {r['ms']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with args.results.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
