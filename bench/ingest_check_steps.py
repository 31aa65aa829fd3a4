"""CPU per instance of the steps of a collection batch's check phase, in process (no
database, no files): `dcmread`, the verification, the DICOM JSON, the index columns, and the
whole `store.read_and_check` over a batch whose results are kept (as `add_batch` keeps them)
with the default garbage collector and with the tree's own setting. Run it once per source
tree, alternating, and compare the lines (issue 11, `bench/RESULTS.md`):

    cd TREE && PYTHONPATH=. nice -n 10 .venv/bin/python bench/ingest_check_steps.py

Prints one JSON line: step -> ms of process CPU per instance (500 fresh 64x64 CT instances).
"""

from __future__ import annotations

import gc
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path.cwd()))  # the tree under test, not this file's checkout

COLUMNS = (
    "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SOPInstanceUID", "SOPClassUID",
    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "PatientID",
    "PatientName", "PatientSex", "SeriesDescription", "BodyPartExamined", "SeriesDate",
    "SeriesTime",
)  # fmt: skip


def per_instance(fn: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[Any]]:
    started = time.process_time()
    kept = [fn(item) for item in items]
    return (time.process_time() - started) / len(items) * 1000, kept


def main() -> int:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    from pydicom import dcmread

    from bench.dicomweb_bench import fresh_instances
    from deidentify import Profile
    from hub.collections import levels, store

    files = fresh_instances(500)
    profile = Profile.from_names(["retain-long-full-dates"])
    make_json = getattr(levels, "instance_json", None) or levels.json_without_bulk
    out: dict[str, float] = {}
    out["dcmread"], datasets = per_instance(lambda f: dcmread(io.BytesIO(f)), files)
    out["verification"], _ = per_instance(lambda d: store.check_instance(d, profile), datasets)
    out["DICOM JSON"], _ = per_instance(make_json, datasets)
    out["index columns"], _ = per_instance(
        lambda d: [store.element_text(d, k) for k in COLUMNS], datasets
    )
    del datasets, _
    gc.collect()
    out["check phase, default GC"], kept = per_instance(
        lambda f: store.read_and_check(f, profile), files
    )
    del kept
    gc.collect()
    try:
        from hub.collections.collector import fewer_collections
    except ImportError:
        pass
    else:
        with fewer_collections():  # as add_batch holds it
            out["check phase, tree's GC"], _kept = per_instance(
                lambda f: store.read_and_check(f, profile), files
            )
    print(json.dumps({step: round(ms, 3) for step, ms in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
