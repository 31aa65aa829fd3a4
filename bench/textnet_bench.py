"""The learned text detector (deidentify/pixels/netdetect.py) against the classical one, on the
burned-text corpus (bench/pixel_corpus.py), run by hand:

    nice -n 10 .venv/bin/python bench/textnet_bench.py [--seed 7] [--sides 736] [--quick]

For every image: the classical detector-only scrub (`pixel_corpus.DETECTOR_ONLY`, what main
blanks without OCR, rescreen included) and the DB network's probability map (once per image
and resize `side`); then, for each post-processing setting (thresh / box_thresh / unclip),
four ways of blanking, scored as `pixel_corpus.score` does (a box is removed when >= 98 % of
its ink is blanked; unchanged: pixels outside every text box grown by 3 px):

  (a) classical alone (main today);  (b) DB alone, its regions blanked as rotated polygons;
  (c) the union;  (d) the union where DB runs only on frames where the classical screen found
  at least one line (DB's cost paid only there).

A quarantined instance (classical scrub) counts as nothing removed in (a), (c) and (d). Then
the clean anatomy images (no text): regions / unchanged per detector, and the CPU per 512x512
slice (process time, one thread) of the DB step beside the classical `find_text`, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.pixel_corpus import (  # noqa: E402
    DETECTOR_ONLY,
    corpus,
    learned_in_process,
    net_session,
)
from deidentify.pixels import netdetect, netsession, scrub  # noqa: E402
from deidentify.pixels.frames import decode, fill_value, render_gray8  # noqa: E402
from deidentify.pixels.netdetect import NetParams, TextRegion  # noqa: E402
from deidentify.pixels.textdetect import find_text  # noqa: E402
from tests.factories.burned_text import ANATOMY, Sample, anatomy, burn, random_burns  # noqa: E402

Mask = npt.NDArray[np.bool_]
WAYS = ("a classical", "b DB", "c union", "d union, DB where classical found")


@dataclass
class Tally:
    removed: int = 0
    total: int = 0
    unchanged: list[float] = field(default_factory=list)
    by: dict[str, list[int]] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"{100 * self.removed / max(self.total, 1):.1f} % ({self.removed}/{self.total}) | "
            f"{100 * float(np.mean(self.unchanged or [0])):.2f} %"
        )


def _score(sample: Sample, before: npt.NDArray[np.generic], after: npt.NDArray[np.generic],
           blanked: Mask | None, tally: Tally) -> None:  # fmt: skip
    """Add one image: `blanked` None = quarantined (nothing removed, unchanged not counted)."""
    outside = np.ones(before.shape[:2], bool)
    for truth in sample.boxes:
        g = truth.box.grow(3)
        outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
        if not truth.identifying:
            continue
        hit = blanked is not None and truth.ink.any() and float(blanked[truth.ink].mean()) >= 0.98
        tally.total += 1
        tally.removed += hit
        spec = truth.spec
        for key in (f"{spec.height} px", f"{int(100 * spec.contrast)} %", f"{spec.angle:g} deg",
                    sample.anatomy):  # fmt: skip
            counts = tally.by.setdefault(key, [0, 0])
            counts[0] += hit
            counts[1] += 1
    if blanked is not None:
        tally.unchanged.append(float((before == after)[outside].mean()))


def _blank(frame: npt.NDArray[np.generic], mask: Mask, photometric: str) -> npt.NDArray[np.generic]:
    out = frame.copy()
    out[mask] = fill_value(frame, photometric)
    return out


Detector = Callable[[npt.NDArray[np.uint8]], list[TextRegion]]
_cache: dict[tuple[int, int, float, str], npt.NDArray[np.float32]] = {}


def _prob(gray: npt.NDArray[np.uint8], params: NetParams, prep: str) -> npt.NDArray[np.float32]:
    """The network's map of `gray` (turned by `prep`), once per image (the costly step)."""
    key = (id(gray), params.side, params.clahe, prep)
    if key not in _cache:
        image = np.ascontiguousarray(np.rot90(gray)) if prep.endswith("rot90") else gray
        _cache[key] = netsession.probability(net_session(), image, params)
    return _cache[key]


def _rotated_back(regions: list[TextRegion], columns: int) -> list[TextRegion]:
    """Regions found in np.rot90(gray) in gray's pixels: (x', y') -> (columns - 1 - y', x')."""
    out = []
    for r in regions:
        back = [np.stack([columns - 1 - p[:, 1], p[:, 0]], axis=1).astype(np.float32)
                for p in (r.polygon, r.core)]  # fmt: skip
        out.append(TextRegion(back[0], r.score, back[1]))
    return out


def _share(region: TextRegion, blanked: Mask) -> float:
    inside = netdetect.mask_of([replace(region, polygon=region.core)], *blanked.shape)
    return float(blanked[inside].mean()) if inside.any() else 1.0


def detector(params: NetParams, prep: str = "") -> tuple[str, Detector, float]:
    def run(gray: npt.NDArray[np.uint8]) -> list[TextRegion]:
        rows, columns = gray.shape
        found = netdetect.regions_of(_prob(gray, params, ""), rows, columns, params)
        if prep == "+rot90":
            turned = netdetect.regions_of(_prob(gray, params, "rot90"), columns, rows, params)
            found += _rotated_back(turned, columns)
        return found

    return f"{_label(params)}{', ' + prep if prep else ''}", run, params.covered


def settings(sides: list[int], quick: bool, preps: list[str]) -> list[tuple[str, Detector, float]]:
    out = []
    for side in sides:
        base = replace(NetParams(), side=side)
        out += [detector(base, prep) for prep in preps]
        out += [detector(replace(base, clahe=0.0), prep) for prep in preps]
        if quick:
            continue
        out += [detector(p) for p in (
            replace(base, min_aspect=0.0, max_height=1e9, covered=1.01),  # DB's own
            replace(base, min_aspect=0.0, max_height=1e9),
            replace(base, max_height=60.0),
            replace(base, max_height=40.0),
            replace(base, max_height=22.0),
            replace(base, min_aspect=0.0),
            replace(base, min_aspect=2.0),
            replace(base, box_thresh=0.3),
            replace(base, box_thresh=0.6),
            replace(base, box_thresh=0.7),
            replace(base, thresh=0.2, box_thresh=0.4),
            replace(base, unclip=1.2),
            replace(base, unclip=2.0),
            replace(base, covered=1.01),  # every region blanked
            replace(base, covered=0.8),
            replace(base, covered=0.95),
        )]  # fmt: skip
    return out


def _label(p: NetParams) -> str:
    return (
        f"side {p.side}, clahe {p.clahe:g}, thresh {p.thresh}, box {p.box_thresh}, "
        f"unclip {p.unclip}, aspect {p.min_aspect:g}, height {p.max_height:g}, "
        f"covered {p.covered:g}"
    )


def measure(
    seed: int, detectors: list[tuple[str, Detector, float]], quick: bool
) -> dict[str, Tally]:
    samples = corpus(False, seed)
    tallies: dict[str, Tally] = {}
    for _, _, sample in samples:
        decoded = decode(sample.ds)
        before = decoded.frames[0]
        gray = render_gray8(before, decoded.photometric)
        result = scrub(sample.ds, DETECTOR_ONLY, None)
        classical: Mask | None = None
        after_c = before
        if result.dataset is not None:
            after_c = decode(result.dataset).frames[0]
            classical = np.zeros(gray.shape, bool)
            for box in result.boxes.get(0, []):
                classical[box.top : box.bottom, box.left : box.right] = True
        _score(sample, before, after_c, classical, tallies.setdefault(WAYS[0], Tally()))
        found = result.text_lines > 0
        for label, run, covered in detectors:
            regions = run(gray)
            net = netdetect.mask_of(regions, *gray.shape)
            after_n = _blank(before, net, decoded.photometric)
            _score(sample, before, after_n, net, tallies.setdefault(f"{label} | {WAYS[1]}",
                                                                   Tally()))  # fmt: skip
            if classical is not None and covered <= 1:  # as screen.learned_boxes does
                regions = [r for r in regions if _share(r, classical) < covered]
                net = netdetect.mask_of(regions, *gray.shape)
            union = None if classical is None else classical | net
            after_u = _blank(after_c, net, decoded.photometric)
            _score(sample, before, after_u, union,
                   tallies.setdefault(f"{label} | {WAYS[2]}", Tally()))  # fmt: skip
            gated = union if found else classical
            after_g = after_u if found else after_c
            _score(sample, before, after_g, gated,
                   tallies.setdefault(f"{label} | {WAYS[3]}", Tally()))  # fmt: skip
        _cache.clear()
    return tallies


def clean(sides: list[int]) -> list[str]:
    out = []
    for name in ANATOMY:
        sample = burn(anatomy(name), [])
        decoded = decode(sample.ds)
        gray = render_gray8(decoded.frames[0], decoded.photometric)
        lines = find_text(gray)
        cells = [f"{len(lines)}"]
        for side in sides:
            for params in (replace(NetParams(), side=side), replace(NetParams(), side=side,
                                                                     box_thresh=0.3)):  # fmt: skip
                regions = learned_in_process(gray, params)  # (CLAHE on by default)
                mask = netdetect.mask_of(regions, *gray.shape)
                cells.append(f"{len(regions)} / {100 * (1 - mask.mean()):.2f} %")
        out.append(f"| {name} {gray.shape[1]}x{gray.shape[0]} | " + " | ".join(cells) + " |")
    return out


def cpu(sides: list[int], rounds: int = 6, calls: int = 5) -> list[str]:
    rng = np.random.default_rng(3)
    ct = burn(anatomy("ct_head"), random_burns(rng, 512, 512, heights=(12,), contrasts=(0.6,)))
    decoded = decode(ct.ds)
    gray = render_gray8(decoded.frames[0], decoded.photometric)
    for side in sides:  # warm up
        learned_in_process(gray, replace(NetParams(), side=side))
    find_text(gray)
    times: dict[str, list[float]] = {}

    def clock(label: str, fn: object, n: int) -> None:
        start = time.process_time()
        for _ in range(n):
            fn()  # type: ignore[operator]
        times.setdefault(label, []).append(1000 * (time.process_time() - start) / n)

    for _ in range(rounds):  # alternating: the other load on the machine hits all of them
        clock("classical find_text", lambda: find_text(gray), 5 * calls)
        for side in sides:
            params = replace(NetParams(), side=side)
            clock(f"DB side {side} (resize, network, post-processing)",
                  lambda params=params: learned_in_process(gray, params), calls)  # fmt: skip
    return [
        f"| {label} | {statistics.median(v):.1f} | {min(v):.1f}-{max(v):.1f} |"
        for label, v in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sides", default="736")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-cpu", action="store_true")
    parser.add_argument("--preps", default="", help="',+rot90': also the frame turned by 90 deg")
    args = parser.parse_args()
    if not netdetect.is_available():
        sys.exit(netdetect.unavailable_reason())
    sides = [int(s) for s in args.sides.split(",")]
    print(f"load {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    start = time.perf_counter()
    detectors = settings(sides, args.quick, args.preps.split(","))
    tallies = measure(args.seed, detectors, args.quick)
    print(f"corpus seed {args.seed}: {time.perf_counter() - start:.0f} s", flush=True)
    print("\n| setting | way | recall | unchanged |\n|---|---|---|---|")
    for label, tally in tallies.items():
        print(f"| {label} | {tally.row()} |")
    print("\nBy group (recall): " + "; ".join(
        f"{label.split(' | ')[-1] if ' | ' in label else label}: " + ", ".join(
            f"{k} {100 * r / max(t, 1):.0f}" for k, (r, t) in sorted(tally.by.items()))
        for label, tally in tallies.items() if label == WAYS[0] or
        label.startswith(f"{_label(replace(NetParams(), side=sides[0]))} | ")))  # fmt: skip
    header = " | ".join(f"DB side {s} box {b}: regions / unchanged" for s in sides
                        for b in (0.5, 0.3))  # fmt: skip
    print(f"\n| clean image | classical lines | {header} |\n|---|---|" + "---|" * 2 * len(sides))
    print("\n".join(clean(sides)))
    if not args.no_cpu:
        print(f"\nload {Path('/proc/loadavg').read_text().split()[:3]}")
        print("\n| CPU per 512x512 CT slice, one thread | median ms | range |\n|---|---|---|")
        print("\n".join(cpu(sides)))
        print(f"load {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
