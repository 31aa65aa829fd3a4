"""Peak memory of the agent's de-identification of one large multi-frame instance with pixel
scrubbing (issue 15: agent RSS < 200 MB with a single 2 GB multi-frame instance).

Writes a synthetic Explicit VR Little Endian multi-frame (Enhanced MR, 1024 x 1024, 8-bit,
MONOCHROME2, identifying text burned into every 50th frame) frame by frame, then runs the
agent's own de-identification step (`node_agent.deid_step.make_deidentifier`, default pixel
policy) on it in a fresh child process per mode and reports the child's peak RSS (`ru_maxrss`)
and wall time:

- `batched`: the agent as shipped (frames scrubbed a batch at a time, file to file);
- `whole` (with --compare): the same step with batching off (the whole instance in memory).

With `--syntax jpeg` the frames are written as JPEG Baseline (Pillow, quality 90), the
encapsulated cine of an ultrasound or angiography system: the agent decodes a batch of frames
at a time and writes the scrubbed instance uncompressed (never re-encoded lossily); `--gib` is
then the decoded size.

    .venv/bin/python bench/multiframe_bench.py --gib 2 [--syntax jpeg] [--compare] [--write]

`--write` appends the result to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deidentify.encode import encode_elements, encode_file_meta  # noqa: E402

SIDE = 1024
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _frame(index: int, rng: np.random.Generator) -> bytes:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    body = 90 * np.exp(-(((yy - 512) / 300.0) ** 2 + ((xx - 512) / 260.0) ** 2))
    image = np.clip(20 + body + rng.normal(0, 3, (SIDE, SIDE)), 0, 255).astype(np.uint8)
    if index % 50 == 0:
        picture = Image.fromarray(image)
        draw = ImageDraw.Draw(picture)
        font = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default()
        draw.text((12, 12), "QUIGLEY, ROSALIND  MRN 8812345670", fill=250, font=font)
        draw.text((12, SIDE - 40), "DOB 17/03/1962  Marlow Creek Infirmary", fill=250, font=font)
        image = np.asarray(picture)
    return image.tobytes()


def make_instance(path: Path, frames: int, syntax: str = "native") -> None:
    """Header, then the frames one at a time: the bench's own memory stays small."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        JPEGBaseline8Bit if syntax == "jpeg" else ExplicitVRLittleEndian
    )
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "QUIGLEY^ROSALIND", "8812345670", "19620317"
    ds.StudyDate, ds.Modality, ds.InstitutionName = "20240611", "MR", "Marlow Creek Infirmary"
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    header = encode_file_meta(ds.file_meta) + encode_elements(
        ds, sorted(ds.keys()), implicit=False, encodings=None
    )
    rng = np.random.default_rng(3)
    if syntax == "jpeg":
        with path.open("wb") as fp:
            fp.write(header + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
            fp.write(struct.pack("<HHI", 0xFFFE, 0xE000, 0))  # empty Basic Offset Table
            for index in range(frames):
                out = io.BytesIO()
                picture = Image.frombytes("L", (SIDE, SIDE), _frame(index, rng))
                picture.save(out, "JPEG", quality=90)
                data = out.getvalue() + b"\0" * (len(out.getvalue()) % 2)
                fp.write(struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data)
            fp.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        return
    length = frames * SIDE * SIDE
    with path.open("wb") as fp:
        fp.write(header + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length))
        for index in range(frames):
            fp.write(_frame(index, rng))


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from node_agent.config import AgentConfig, Destination
from node_agent.deid_step import make_deidentifier
from deidentify.pixels import streamed, streamed_encapsulated
source, target, key, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if mode == "whole":
    streamed.STREAM_FROM_BYTES = 1 << 62
    streamed_encapsulated.STREAM_FROM_BYTES = 1 << 62
config = AgentConfig.model_validate({
    "agent": {"data_dir": target.parent / "agent"},
    "hub": {"public_url": "https://x", "node_url": "https://y", "ca_file": key},
    "deidentify": {"key_file": key},
})
transform = make_deidentifier(config)
started = time.perf_counter()
error = None
try:
    transform(source, Destination(org="org-r", mode="deidentified"), target)
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"[:300]
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "error": error,
    "output_bytes": target.stat().st_size if target.exists() else 0,
}))
"""


def run(source: Path, work: Path, key: Path, mode: str) -> dict[str, object]:
    target = work / f"out-{mode}.dcm"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(target), str(key), mode],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    target.unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="instance size (GiB)")
    parser.add_argument("--compare", action="store_true", help="also run the whole-instance way")
    parser.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument(
        "--syntax", choices=["native", "jpeg"], default="native", help="how frames are stored"
    )
    args = parser.parse_args()
    frames = max(2, int(args.gib * 2**30 / (SIDE * SIDE)))
    with tempfile.TemporaryDirectory(prefix="hx-mf-") as tmp:
        work = Path(tmp)
        key = work / "network.key"
        key.write_text(os.urandom(32).hex())
        source = work / "big.dcm"
        t0 = time.perf_counter()
        make_instance(source, frames, args.syntax)
        size = source.stat().st_size
        print(f"instance: {frames} frames of {SIDE}x{SIDE}, {size / 2**30:.2f} GiB, "
              f"written in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        results = {"batched": run(source, work, key, "batched")}
        print(f"batched: {results['batched']}", flush=True)
        if args.compare:
            results["whole"] = run(source, work, key, "whole")
            print(f"whole: {results['whole']}", flush=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(bench process itself: {own:.0f} MiB peak)")
    if args.write:
        _write(frames, size, results, args.syntax)


def _write(
    frames: int, size: int, results: dict[str, dict[str, object]], syntax: str = "native"
) -> None:
    lines = []
    for mode, r in results.items():
        out = int(str(r["output_bytes"])) / 2**30
        outcome = r["error"] or f"de-identified, {out:.2f} GiB written"
        lines.append(f"| {mode} | {r['max_rss_mib']:.0f} MiB | {r['seconds']:.0f} s | {outcome} |")
    compare = " --compare" if "whole" in results else ""
    compare += " --syntax jpeg" if syntax == "jpeg" else ""
    stored = (
        "JPEG Baseline (encapsulated, written uncompressed after the scrub)"
        if syntax == "jpeg"
        else "Explicit VR Little Endian"
    )
    decoded = frames * SIDE * SIDE / 2**30
    machine = (
        f"`{platform.platform()}` · nproc {os.cpu_count()} · Python "
        f"{platform.python_version()} · {dt.date.today()}"
    )
    text = (
        "\n## agent de-identification of one large multi-frame instance "
        "(issue 15, bench/multiframe_bench.py)\n\n"
        f"Machine: {machine}. Command: `.venv/bin/python bench/multiframe_bench.py "
        f"--gib {decoded:.0f}{compare} --write`.\n\n"
        f"Instance: {frames} frames of {SIDE}x{SIDE} 8-bit MONOCHROME2 ({decoded:.2f} GiB "
        f"decoded), {stored}, {size / 2**30:.2f} GiB in the file, text burned into every "
        "50th frame. The agent's "
        "de-identification step (default pixel policy: every frame screened by the text "
        "detector, OCR on the detected lines) runs in a fresh child process per mode; peak RSS "
        "is the child's `ru_maxrss`.\n\n"
        "| mode | peak RSS | time | outcome |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    with (ROOT / "bench" / "RESULTS.md").open("a") as fp:
        fp.write(text)


if __name__ == "__main__":
    main()
