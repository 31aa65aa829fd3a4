"""The cost of stripping metadata from compressed frames (`deidentify.codestream_file`) on a
large JPEG cine, header-only de-identification (`deidentify_instance`, Basic profile, no pixel
stage: the path where Pixel Data is otherwise only copied).

Writes two JPEG Baseline Enhanced MR cines with `multiframe_bench.make_instance` (1024 x 1024,
Pillow quality 90): `plain` (JFIF only: the frames are parsed, nothing is rewritten) and
`commented` (a COM segment with a vendor's text in every frame, no identifying value, so the
code before stripping sends it: the file is rewritten). Each is de-identified in a fresh child
process with the code at `--before` and at `--after` (PYTHONPATH), alternating, `--runs` times;
the median wall time of `deidentify_instance` is reported with the ratio after/before.

    nice -n 10 .venv/bin/python bench/codestream_bench.py --before /tmp/main --after . \
        --frames 300 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.multiframe_bench import make_instance  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
from deidentify.engine import PseudonymKeys
from deidentify.instance import deidentify_instance
from deidentify.profile import Profile
source, out = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
written = deidentify_instance(source, lambda *_: out, Profile.basic(), PseudonymKeys(b"k" * 32))
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": out.stat().st_size,
                  "notes": [n for n in written.notes if "compressed" in n]}))
"""


def with_comments(src: Path, dst: Path, text: bytes) -> None:
    """`src` (one fragment per frame, empty Basic Offset Table) with a COM after each SOI."""
    data = src.read_bytes()
    start = data.index(b"\xfe\xff\x00\xe0\x00\x00\x00\x00") + 8  # after the empty table
    com = b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text
    parts, at = [data[:start]], start
    while data[at : at + 4] == b"\xfe\xff\x00\xe0":
        (length,) = struct.unpack_from("<I", data, at + 4)
        frame = data[at + 8 : at + 8 + length]
        frame = frame[:2] + com + frame[2:]
        frame += b"\0" * (len(frame) % 2)
        parts.append(struct.pack("<HHI", 0xFFFE, 0xE000, len(frame)) + frame)
        at += 8 + length
    parts.append(data[at:])
    dst.write_bytes(b"".join(parts))


def run(code: Path, source: Path, out: Path) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(out)],
        env=env, capture_output=True, text=True, check=True, cwd=code,
    )  # fmt: skip
    out.unlink()
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = work / "plain.dcm"
        make_instance(plain, args.frames, "jpeg")
        commented = work / "commented.dcm"
        with_comments(plain, commented, b"Acme Cine v4.2 SN 55-1234 2026-12-05 ward 3")
        for name, source in (("plain", plain), ("commented", commented)):
            times: dict[str, list[float]] = {"before": [], "after": []}
            notes: object = None
            for _ in range(args.runs):
                for label, code in (("before", args.before), ("after", args.after)):
                    result = run(code, source, work / f"out-{label}.dcm")
                    times[label].append(float(str(result["seconds"])))
                    notes = result["notes"] if label == "after" else notes
            before, after = (statistics.median(times[k]) for k in ("before", "after"))
            size = source.stat().st_size / 2**20
            print(
                f"{name}: {args.frames} frames, {size:.0f} MiB; before {before:.2f} s, "
                f"after {after:.2f} s, ratio {after / before:.2f}; runs {times}; notes {notes}"
            )


if __name__ == "__main__":
    main()
