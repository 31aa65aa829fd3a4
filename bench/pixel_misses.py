"""Where the ink of partly blanked boxes is left (run by hand, about 10 s):

    .venv/bin/python bench/pixel_misses.py [--quick]

The burned-text corpus of `bench/pixel_bench.py --detector` (bench/pixel_corpus.py) through
the detector-only scrub. For every identifying box the scrubber missed although it blanked
some of its ink (more than 5 %, less than 98 %: "partly blanked"), each ink pixel left is
placed in the text's own frame (along the text, across it; the burn's angle is known) against
the ink that was blanked: before the blanked start, after its end, above or below the blanked
ink at the same position along, in a gap inside the line (no blanked ink at that position), or
between blanked ink (a thin stroke). Also: how far the ink left lies from the blanked area
(in text heights), how much of it is visible at all (differs from the anatomy under it by 10
grey levels of 255 or more: text drawn in one grey level over anatomy that changes fades where
the anatomy reaches the text's grey), and per box the dominant place, angle, height, contrast.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.pixel_corpus import DETECTOR_ONLY, corpus  # noqa: E402
from deidentify.pixels import scrub  # noqa: E402
from deidentify.pixels.frames import decode, render_gray8  # noqa: E402
from tests.factories.burned_text import Sample, Truth, anatomy  # noqa: E402

VISIBLE = 10  # grey levels of 255


def _place(u: float, v: float, along: np.ndarray, across: np.ndarray) -> str:
    if u < along.min() - 0.5:
        return "before the blanked start"
    if u > along.max() + 0.5:
        return "after the blanked end"
    near = np.abs(along - u) <= 1.0
    if not near.any():
        return "gap inside the line"
    if v < across[near].min():
        return "above"
    if v > across[near].max():
        return "below"
    return "between blanked ink"


def _box(
    truth: Truth,
    blanked: np.ndarray,
    distance: np.ndarray,
    visible: np.ndarray,
    places: Counter[str],
    boxes: Counter[tuple[str, str]],
    reach: list[float],
) -> None:
    theta = math.radians(truth.spec.angle)
    ys, xs = np.nonzero(truth.ink)
    u = xs * math.cos(theta) - ys * math.sin(theta)
    v = xs * math.sin(theta) + ys * math.cos(theta)
    covered = blanked[ys, xs]
    height = truth.spec.height
    mine: Counter[str] = Counter()
    for ui, vi in zip(u[~covered], v[~covered], strict=True):
        mine[_place(float(ui), float(vi), u[covered], v[covered])] += 1
    places.update(mine)
    left_y, left_x = ys[~covered], xs[~covered]
    places["(visible)"] += int(visible[left_y, left_x].sum())
    places["(invisible)"] += int((~visible[left_y, left_x]).sum())
    boxes["place", mine.most_common(1)[0][0]] += 1
    boxes["angle", f"{truth.spec.angle:g} deg"] += 1
    boxes["height", f"{height} px"] += 1
    boxes["contrast", f"{int(100 * truth.spec.contrast)} %"] += 1
    far = np.sort(distance[left_y, left_x])[::-1]
    allowed = int(0.02 * len(ys))  # 98 % of the ink blanked counts as removed
    need = float(far[allowed]) / height if allowed < len(far) else 0.0
    reach.append(need)
    shown = visible[ys, xs]
    if shown.any() and blanked[ys[shown], xs[shown]].mean() >= 0.98:
        boxes["removed if invisible ink did not count", "yes"] += 1


def _sample(
    sample: Sample,
    counts: Counter[str],
    places: Counter[str],
    boxes: Counter[tuple[str, str]],
    reach: list[float],
) -> None:
    result = scrub(sample.ds, DETECTOR_ONLY, None)
    if result.dataset is None:
        counts["quarantined instances"] += 1
        return
    shape = (int(sample.ds.Rows), int(sample.ds.Columns))
    blanked = np.zeros(shape, bool)
    for b in result.boxes.get(0, []):
        blanked[b.top : b.bottom, b.left : b.right] = True
    decoded = decode(sample.ds)
    gray = render_gray8(decoded.frames[0], decoded.photometric).astype(np.float32)
    base = anatomy(sample.anatomy).pixels.astype(np.float32)
    base8 = (base - base.min()) * 255.0 / max(float(np.ptp(base)), 1.0)
    visible = np.abs(gray - base8) >= VISIBLE
    distance = cv2.distanceTransform(np.where(blanked, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    for truth in sample.boxes:
        if not truth.identifying or not truth.ink.any():
            continue
        counts["boxes"] += 1
        share = float(blanked[truth.ink].mean())
        if share >= 0.98:
            continue
        counts["missed"] += 1
        if share > 0.05:
            counts["partly blanked"] += 1
            _box(truth, blanked, distance, visible, places, boxes, reach)


def main() -> None:
    counts: Counter[str] = Counter()
    places: Counter[str] = Counter()
    boxes: Counter[tuple[str, str]] = Counter()
    reach: list[float] = []
    for _, _, sample in corpus("--quick" in sys.argv):
        _sample(sample, counts, places, boxes, reach)
    print(", ".join(f"{k} {n}" for k, n in counts.items()))
    left = sum(n for k, n in places.items() if not k.startswith("("))
    print(f"ink pixels left in partly blanked boxes: {left}")
    for key, n in places.most_common():
        print(f"- {key}: {n} ({100 * n / max(left, 1):.1f} %)")
    needs = np.array(reach)
    print(
        "boxes whose ink would be 98 % blanked by growing the blanked area by at most: "
        + ", ".join(f"{q} h: {int((needs <= q).sum())}" for q in (0.25, 0.5, 1.0, 2.0))
        + f" (of {len(needs)})"
    )
    for kind in ("place", "angle", "height", "contrast", "removed if invisible ink did not count"):
        row = sorted((k[1], n) for k, n in boxes.items() if k[0] == kind)
        print(f"boxes by {kind}: " + ", ".join(f"{name} {n}" for name, n in row))


if __name__ == "__main__":
    main()
