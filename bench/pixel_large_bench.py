"""Burned-in text on radiograph-sized frames: the learned stage resized whole vs in tiles.

    .venv/bin/python bench/pixel_large_bench.py [--seeds 5 9 13]

Real anatomy from pydicom's test files (CT spine, MR abdomen) resized to 2560 x 2048 (as DX)
and 2048 x 2048 (as CR), 4 identifying texts burned into each (`tests/factories/burned_text`:
heights 9-40 px, contrast 30 % and 100 %, fonts, angles), 20 images per seed. Scored as
`bench/pixel_corpus.score` (a box counts as removed when >= 98 % of its ink is blanked;
unchanged = pixels outside every text box, grown by 3, equal before and after), OCR off
(every detected line blanked), three policies: the classical detector alone, the learned stage
on the frame resized whole (`tile_below = 0`), and the default (auto, large frames in tiles).
Then the network's CPU on one frame of each size, in this process (`netsession.regions`).
Prints; the numbers go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pixel_corpus import DETECTOR_ONLY, score
from deidentify.pixels import netdetect, netsession
from tests.factories.burned_text import Anatomy, anatomy, burn, random_burns


def large(name: str, rows: int, columns: int, modality: str) -> Anatomy:
    small = anatomy(name)
    image = Image.fromarray(small.pixels.astype(np.float32), mode="F").resize(
        (columns, rows), Image.Resampling.BICUBIC
    )
    pixels = np.clip(np.asarray(image), small.pixels.min(), small.pixels.max())
    return Anatomy(f"{name} {rows}x{columns}", pixels.astype(np.int32), modality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 9, 13])
    args = parser.parse_args()
    bases = [large("ct_spine", 2560, 2048, "DX"), large("mr_abdomen", 2048, 2048, "CR")]
    policies = {
        "classical alone (learned = off)": replace(DETECTOR_ONLY, learned="off"),
        "learned = auto, frame resized whole": replace(
            DETECTOR_ONLY, learned="auto", net=replace(netdetect.DEFAULT_NET, tile_below=0.0)
        ),
        "learned = auto, large frames in tiles (default)": replace(DETECTOR_ONLY, learned="auto"),
    }
    totals = {name: [0, 0, []] for name in policies}  # removed, boxes, unchanged
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        samples = []
        for height in (9, 12, 16, 24, 40):
            for contrast in (0.3, 1.0):
                for base in bases:
                    specs = random_burns(
                        rng, *base.pixels.shape, heights=(height,), contrasts=(contrast,), count=4
                    )
                    samples.append(burn(base, specs, seed=len(samples)))
        for name, policy in policies.items():
            removed = boxes = 0
            unchanged: list[float] = []
            for sample in samples:
                got = score(sample, policy, None)
                removed, boxes = removed + got.removed, boxes + got.total
                unchanged += got.unchanged or []
            total = totals[name]
            total[0], total[1] = total[0] + removed, total[1] + boxes
            total[2] += unchanged
            print(f"seed {seed}, {name}: {removed}/{boxes} ({removed / boxes:.1%}), "
                  f"unchanged {np.mean(unchanged):.2%}", flush=True)  # fmt: skip
    for name, (removed, boxes, unchanged) in totals.items():
        print(f"all seeds, {name}: {removed}/{boxes} ({removed / boxes:.1%}), "
              f"unchanged {np.mean(unchanged):.2%}")  # fmt: skip
    session = netsession.load(netdetect.model_path())
    whole = replace(netdetect.DEFAULT_NET, tile_below=0.0)
    for base in [*bases, large("ct_head", 3328, 2560, "MG"), large("ct_head", 1024, 1024, "XA")]:
        low, high = base.pixels.min(), base.pixels.max()
        gray = ((base.pixels - low) * 255.0 / max(high - low, 1)).astype(np.uint8)
        cpu = {}
        for name, params in (("whole", whole), ("default", netdetect.DEFAULT_NET)):
            started = time.process_time()
            found = netsession.regions(session, gray, params)
            cpu[name] = f"{1000 * (time.process_time() - started):.0f} ms ({len(found)} regions)"
        scale = netdetect.tiled_scale(*gray.shape, netdetect.DEFAULT_NET)
        tiles = (
            "whole"
            if scale is None
            else f"{netdetect.tile_count(*gray.shape, scale, netdetect.DEFAULT_NET)} tiles"
        )
        print(f"network CPU, clean {base.name}: resized whole {cpu['whole']}, "
              f"default ({tiles}) {cpu['default']}")  # fmt: skip


if __name__ == "__main__":
    main()
