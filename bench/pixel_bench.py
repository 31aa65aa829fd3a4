"""Pixel scrubber benchmark (run by hand): OCR throughput and recall/precision.

    .venv/bin/python bench/pixel_bench.py [--write]

* images/s for a full scrub (decode, two OCR passes, write) of single-frame US (RGB, 640x480
  with a banner) and CR (12-bit MONOCHROME1, 1024x1024), and per frame for a multi-frame US;
  one process, one tesseract thread (per core).
* recall: generated images with known identifying text (4 fonts x 4 sizes x 2 polarities x
  4 corners); a box counts as removed when no ink is left in it. Untouched: fraction of
  pixels outside the identifying boxes (+ margin) left unchanged. Precision: fraction of
  blanked pixels that lie inside identifying boxes (+ margin) (labels next to values count
  against it).
* the deid-data ultrasound files when cached (tools/fetch_deid_data.py).
With --write, replaces the "pixels" section of bench/RESULTS.md.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from pydicom import dcmread  # noqa: E402
from tests.deidentify.pixels.synth import FONTS, corner_texts, mono_image, rgb_image  # noqa: E402

from deidentify.pixels import PixelPolicy, RuleSet, TesseractBackend, scrub  # noqa: E402
from deidentify.pixels.frames import decode  # noqa: E402

OCR = TesseractBackend()
NO_RULES = PixelPolicy(rules=RuleSet())


def _rate(make, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    samples = [make(i) for i in range(n)]
    start = time.perf_counter()
    frames = 0
    for ds in samples:
        result = scrub(ds, NO_RULES, OCR)
        assert result.dataset is not None, result.reason
        frames += int(ds.get("NumberOfFrames", 1) or 1)
    elapsed = time.perf_counter() - start
    return n / elapsed, frames / elapsed


def _us(i: int):  # type: ignore[no-untyped-def]
    return rgb_image(480, 640, texts=corner_texts(480, 640, 14), seed=i).ds


def _cr(i: int):  # type: ignore[no-untyped-def]
    texts = corner_texts(1024, 1024, 22)
    return mono_image(1024, 1024, texts=texts, bits=12, photometric="MONOCHROME1",
                      modality="CR", seed=i).ds  # fmt: skip


def _cine(i: int):  # type: ignore[no-untyped-def]
    return rgb_image(480, 640, texts=corner_texts(480, 640, 14), frames=10, seed=i).ds


def recall_table() -> list[tuple[str, int, int, float, float]]:
    rows = []
    for font in FONTS:
        for size in (12, 14, 18, 24):
            for light in (True, False):
                drawn = mono_image(texts=corner_texts(480, 640, size, font),
                                   light_on_dark=light, seed=size)  # fmt: skip
                result = scrub(drawn.ds, NO_RULES, OCR)
                before = decode(drawn.ds).frames[0]
                after = decode(result.dataset).frames[0] if result.dataset else before
                contrast = int(before.max()) - int(before.min())
                inside = np.zeros(before.shape, bool)
                removed = total = 0
                for box, identifying in drawn.boxes:
                    if not identifying:
                        continue
                    total += 1
                    region = after[box.top : box.bottom, box.left : box.right]
                    removed += int(region.max()) - int(region.min()) < contrast // 4
                    g = box.grow(NO_RULES.margin)
                    inside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = True
                changed = before != after
                untouched = float((~changed[~inside]).mean())
                precision = float(changed[inside].sum() / max(changed.sum(), 1))
                label = f"{font.removesuffix('.ttf')} {size}px {'light' if light else 'dark'}"
                if result.quarantined:
                    label += " (quarantined)"
                rows.append((label, removed, total, untouched, precision))
    return rows


def deid_data() -> list[tuple[str, str, float]]:
    cache = Path(os.environ.get("HEXCHANGE_DEID_DATA",
                                str(Path.home() / ".cache/hexchange/deid-data")))  # fmt: skip
    out = []
    for path in sorted((cache / "ultrasounds").glob("*.dcm")):
        ds = dcmread(path)
        ocr_only = replace(NO_RULES, ultrasound_regions_only=False)
        for label, policy in (("default", PixelPolicy.default()), ("OCR only", ocr_only)):
            start = time.perf_counter()
            result = scrub(ds, policy, OCR)
            elapsed = time.perf_counter() - start
            status = (
                f"quarantined: {result.reason}"
                if result.quarantined
                else (f"clean, {result.blanked_box_count} boxes, hits {dict(result.hits)}")
            )
            out.append((f"{path.name} ({label})", status, elapsed))
    return out


def main() -> None:
    if not OCR.is_available():
        sys.exit(OCR.unavailable_reason())
    us = _rate(_us, 12)
    cr = _rate(_cr, 6)
    cine = _rate(_cine, 2)
    table = recall_table()
    removed = sum(r[1] for r in table)
    total = sum(r[2] for r in table)
    lines = [
        "## pixels",
        "",
        f"Machine: {platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"tesseract {_tesseract_version()} · {dt.date.today().isoformat()}",
        "",
        "Throughput (one process, one tesseract thread; full scrub = decode + OCR + blank + "
        "second OCR pass + write):",
        "",
        "| input | images/s | frames/s |",
        "|---|---|---|",
        f"| US RGB 640x480, single frame | {us[0]:.2f} | {us[1]:.2f} |",
        f"| CR 12-bit MONOCHROME1 1024x1024 | {cr[0]:.2f} | {cr[1]:.2f} |",
        f"| US RGB 640x480, 10 frames | {cine[0]:.2f} | {cine[1]:.2f} |",
        "",
        f"Recall over generated images: {removed}/{total} identifying boxes removed "
        f"({100 * removed / max(total, 1):.1f}%); mean untouched "
        f"{100 * np.mean([r[3] for r in table]):.2f}%; mean precision "
        f"{100 * np.mean([r[4] for r in table]):.1f}%.",
        "",
        "| image | removed | untouched | precision |",
        "|---|---|---|---|",
        *[f"| {r[0]} | {r[1]}/{r[2]} | {100 * r[3]:.2f}% | {100 * r[4]:.1f}% |" for r in table],
        "",
    ]
    real = deid_data()
    if real:
        lines += ["deid-data ultrasound files:", "", "| file | result | seconds |", "|---|---|---|"]
        lines += [f"| {name} | {status} | {secs:.1f} |" for name, status, secs in real]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if "--write" in sys.argv:
        _write_section(ROOT / "bench" / "RESULTS.md", text)


def _tesseract_version() -> str:
    import subprocess

    proc = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).splitlines()
    return first[0].split()[-1] if first else "?"


def _write_section(path: Path, section: str) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    parts = existing.split("\n## ")
    kept = [parts[0]] + [p for p in parts[1:] if not p.startswith("pixels")]
    path.write_text("\n## ".join(kept).rstrip() + "\n\n" + section, encoding="utf-8")


if __name__ == "__main__":
    main()
