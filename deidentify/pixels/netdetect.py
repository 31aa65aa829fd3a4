"""A learned text detector: PaddleOCR's PP-OCRv4 DB network (ONNX), run by onnxruntime on the CPU.

    if netdetect.is_available():                        # cheap: no onnxruntime import
        regions = networker.find_regions(gray)          # TextRegion: polygon, box, score
        mask = netdetect.mask_of(regions, rows, columns)
    else:
        print(netdetect.unavailable_reason())           # what is missing and how to get it

This module holds what the scrubbing process needs (parameters, regions, post-processing,
availability); the network itself runs in a worker process (`networker.py` starts it,
`netsession.py` is its code), so onnxruntime is never imported here.

Optional, in the style of pydicom's pixel backends: the dependency (`onnxruntime`, a PyPI
package) and the model file (`ch_PP-OCRv4_det_infer.onnx`, Apache-2.0, taken from the pinned
`rapidocr-onnxruntime` wheel by `tools/fetch_text_model.py`, which `scripts/setup.sh` runs) may
be missing; then `is_available()` is False and the scrubber falls back to the classical
detector (`textdetect.py`) and says so. Nothing is downloaded here and no model is in the
repository. The session is made once per worker, lazily, on one thread.

DB ("differentiable binarization") gives a per-pixel text probability. The frame (8-bit gray,
display polarity: `textdetect.frame_gray8`) is first equalised locally (CLAHE, `clahe`, in
`clahe_tiles` x `clahe_tiles` tiles), then resized so its short side is `NetParams.side` (sides
multiples of 32, the long side at most `max_side`) and normalised to [-1, 1] on three equal
channels. A frame that resize would shrink below `tile_below` (a radiograph or mammogram: its
small text would vanish) is run at its own scale in overlapping tiles of the usual shape
instead (`tiled_scale`), at most `max_tiles` of them, the tiles' probabilities maxed where they
overlap; the map is thresholded at `thresh`, each connected region becomes its minimum-area
rotated rectangle, kept when its mean probability is at least `box_thresh`, and grown on every
side by area x `unclip` / perimeter (DB's "unclip": the network's regions are shrunk text)
before being mapped back to frame pixels. A region is blanked as its rotated polygon
(`mask_of`, `TextRegion.boxes`), so slanted text does not cost the anatomy beside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from deidentify.pixels.ocr import Box
from deidentify.pixels.opencv import cv2

MODEL_NAME = "ch_PP-OCRv4_det_infer.onnx"
MODEL_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
MODEL_ENV = "HEXCHANGE_TEXT_MODEL"  # a path to the .onnx file, else the default cache
DEFAULT_MODEL = Path.home() / ".cache" / "hexchange" / "models" / MODEL_NAME
FETCH_HINT = "run `python tools/fetch_text_model.py` (scripts/setup.sh does)"


class NetFailed(RuntimeError):
    """The network could not run on a frame (the message names no frame content)."""


@dataclass(frozen=True)
class NetParams:
    """Tuning of `find_regions`; the defaults are the measured ones (bench/RESULTS.md)."""

    clahe: float = 4.0  # contrast-limited histogram equalisation first (clip limit; 0: none),
    clahe_tiles: int = 16  # in this many x this many tiles: faint text over anatomy stands out
    # locally (2.0 in 8 x 8: +10 boxes of 834 on the corpus; 4.0 in 16 x 16: +13 more, the
    # unchanged share the same; 3.0 / 5.0 / 6.0 / 8.0 clip, 4 / 24 tiles: fewer)
    side: int = 736  # the short side is resized to this (512 -> 736: 7 px text becomes 10 px)
    max_side: int = 1600  # the long side at most this (cost grows with the pixels)
    thresh: float = 0.3  # probability a text pixel has
    box_thresh: float = 0.5  # mean probability inside a region, at least
    unclip: float = 1.4  # grow a region by area x this / perimeter on every side (1.6 with
    # `covered` 0.95: 758 of 834 boxes, 97.88 % unchanged; 1.4 with 1.0: 760, 97.94 %; 1.3: 756)
    min_side: float = 3.0  # regions thinner than this (resized pixels) are noise
    max_height: float = 28.0  # frame pixels: a core thicker than this is not a text line (a
    # core is 0.4-0.6 x its text's height from 16 px up: text to ~48 px high)
    min_aspect: float = 2.0  # long / short side at least (a round blob, an eye, is not text;
    # 1.5 let a 25 x 47 px core on the clean NM whole body through, same corpus recall)
    min_frame: int = 48  # smaller frames (icons) are not screened, as textdetect
    covered: float = 1.0  # a region whose core (before unclip) is this much inside what the
    # classical lines blanked would add only its margin: not blanked (`screen.learned_boxes`;
    # 0.9 before the classical blanks were tightened: 742 vs 744 of 834 boxes, 0.03 point; 0.95
    # -> 1.0 with the finer CLAHE and unclip 1.4: +2 boxes, the core's last letters were left)
    tile_below: float = 0.6  # a frame the whole-frame resize would shrink below this scale
    # (radiographs, mammograms: 9 px text would become 3 px) is run in tiles instead:
    tile_scale: float = 1.0  # at this scale (reduced until at most `max_tiles` tiles),
    tile: int = 736  # in tiles of this side (the network's usual shape: no new arena plan)
    tile_overlap: int = 96  # overlapping by this much (network pixels; a line cut by one
    # tile's edge is whole in its neighbour), the probabilities of overlaps maxed
    max_tiles: int = 30  # ~30 x 140 ms of one core at most per frame


DEFAULT_NET = NetParams()


@dataclass(frozen=True)
class TextRegion:
    polygon: npt.NDArray[np.float32]  # 4 x (x, y) corners in frame pixels (a rotated rectangle)
    score: float  # mean text probability inside the region
    core: npt.NDArray[np.float32]  # the same before `unclip` (the network's own region)

    @property
    def box(self) -> Box:
        """The axis-aligned box around the polygon (frame pixels, not clipped)."""
        x0, y0 = np.floor(self.polygon.min(axis=0)).astype(int)
        x1, y1 = np.ceil(self.polygon.max(axis=0)).astype(int)
        return Box(int(x0), int(y0), int(x1 - x0) + 1, int(y1 - y0) + 1)

    def boxes(self, columns: int, rows: int) -> list[Box]:
        """The polygon as boxes whose union covers it (clipped to the frame): one box when it is
        axis-aligned; else strips across its long side, a quarter of its thickness wide each,
        so that a slanted line costs little of the anatomy beside it."""
        mask = mask_of([self], rows, columns)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return []
        (_, _), (w, h), angle = cv2.minAreaRect(self.polygon)
        tilt = min(abs(angle) % 90, 90 - abs(angle) % 90)
        whole = Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + 1,
                    int(ys.max() - ys.min()) + 1)  # fmt: skip
        if tilt < 1.0:
            return [whole]
        step = max(1, int(min(w, h)) // 4)
        along_x = whole.width >= whole.height  # strips of columns for a line across the frame
        coords, other = (xs, ys) if along_x else (ys, xs)
        first = int(coords.min())
        out = []
        for start in range(first, int(coords.max()) + 1, step):
            inside = (coords >= start) & (coords < start + step)
            if not inside.any():
                continue
            low, high = int(other[inside].min()), int(other[inside].max()) + 1
            span = min(step, int(coords.max()) + 1 - start)
            if along_x:
                out.append(Box(start, low, span, high - low))
            else:
                out.append(Box(low, start, high - low, span))
        return out


def model_path() -> Path:
    return Path(os.environ.get(MODEL_ENV, "") or DEFAULT_MODEL)


_lock = threading.Lock()
_checked: dict[tuple[str, int, int], bool] = {}  # (path, size, mtime) -> the pinned model?
_load_problem: dict[str, str] = {}  # path -> why the worker could not load it


def unavailable_reason() -> str | None:
    """None when the learned detector can run; else what is missing and how to get it.

    Cheap, in the calling process: onnxruntime is looked for, not imported (it runs in the
    worker process, `networker.py`); the model file's digest is checked once per file."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: pip install onnxruntime (pyproject dependency)"
    path = model_path()
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not path.is_file():
        return f"the text detection model {MODEL_NAME} is not in {path.parent}: {FETCH_HINT}"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _checked:
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                return f"cannot read the text detection model {path}: {exc.strerror}"
            _checked[key] = digest == MODEL_SHA256
        if not _checked[key]:
            return f"the text detection model {path} is not the pinned one: {FETCH_HINT}"
        return _load_problem.get(str(path))


def is_available() -> bool:
    return unavailable_reason() is None


def record_load_failure(reason: str) -> None:
    """The worker could not load the model (`networker.py`): unavailable from now on."""
    with _lock:
        _load_problem[str(model_path())] = reason


def _reset() -> None:
    """Forget what was checked (tests that point MODEL_ENV elsewhere)."""
    with _lock:
        _checked.clear()
        _load_problem.clear()


def resized_shape(rows: int, columns: int, params: NetParams) -> tuple[int, int]:
    """(rows, columns) the network sees: the short side `side`, the long at most `max_side`,
    both multiples of 32."""
    ratio = params.side / min(rows, columns)
    ratio = min(ratio, params.max_side / max(rows, columns))
    return (max(32, round(rows * ratio / 32) * 32), max(32, round(columns * ratio / 32) * 32))


def tiled_scale(rows: int, columns: int, params: NetParams) -> float | None:
    """The scale at which a frame is run in tiles (`NetParams.tile_below`), or None when the
    whole-frame resize (`resized_shape`) does not shrink it that much."""
    whole = min(params.side / min(rows, columns), params.max_side / max(rows, columns))
    if whole >= params.tile_below:
        return None
    scale = max(params.tile_scale, whole)
    while scale > whole and tile_count(rows, columns, scale, params) > params.max_tiles:
        scale = max(whole, scale * 0.9)
    return scale


def tile_starts(length: int, params: NetParams) -> list[int]:
    """Where the tiles along one side of `length` (network pixels) begin: every
    `tile - tile_overlap`, the last flush with the end."""
    if length <= params.tile:
        return [0]
    step = params.tile - params.tile_overlap
    starts = list(range(0, length - params.tile, step))
    return [*starts, length - params.tile]


def tile_count(rows: int, columns: int, scale: float, params: NetParams) -> int:
    return len(tile_starts(round(rows * scale), params)) * len(
        tile_starts(round(columns * scale), params)
    )


def regions_of(
    prob: npt.NDArray[np.float32], rows: int, columns: int, params: NetParams = DEFAULT_NET
) -> list[TextRegion]:
    """DB's post-processing with OpenCV: threshold, contours, rotated rectangles, unclip."""
    bitmap = cv2.dilate(np.asarray(prob > params.thresh, np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    sy, sx = rows / prob.shape[0], columns / prob.shape[1]
    out: list[TextRegion] = []
    for contour in contours:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < params.min_side or max(w, h) < params.min_aspect * min(w, h):
            continue
        if min(w, h) * (sx + sy) / 2 > params.max_height:
            continue
        corners = np.asarray(cv2.boxPoints(((cx, cy), (w, h), angle)), np.float32)
        score = _mean_inside(prob, corners)
        if score < params.box_thresh:
            continue
        grow = w * h * params.unclip / (2 * (w + h))
        grown = ((cx, cy), (w + 2 * grow, h + 2 * grow), angle)
        polygon = cv2.boxPoints(grown).astype(np.float32)
        scale = np.array([sx, sy], np.float32)
        out.append(TextRegion(polygon * scale, score, corners * scale))
    return out


def _mean_inside(prob: npt.NDArray[np.float32], corners: npt.NDArray[np.float32]) -> float:
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())), prob.shape[1] - 1)
    y1 = min(int(np.ceil(corners[:, 1].max())), prob.shape[0] - 1)
    if x1 < x0 or y1 < y0:
        return 0.0
    inside = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    points = np.round(corners - np.array([x0, y0], np.float32)).astype(np.int32)
    cv2.fillPoly(inside, [points], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], inside)[0])


def mask_of(regions: list[TextRegion], rows: int, columns: int) -> npt.NDArray[np.bool_]:
    """The pixels of the regions' polygons (what the scrubber blanks)."""
    mask = np.zeros((rows, columns), np.uint8)
    for region in regions:  # one call per polygon: where two overlap, one call leaves a hole
        cv2.fillPoly(mask, [np.round(region.polygon).astype(np.int32)], 1)
    return mask.astype(bool)
