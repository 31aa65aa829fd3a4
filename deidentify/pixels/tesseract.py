"""The tesseract OCR backend: the one module of `deidentify` that runs a program.

Why a subprocess and not pytesseract: pytesseract is itself a thin wrapper that writes temporary
files and runs the same binary, one image per process. Running tesseract directly costs no extra
dependency and lets us read many frames in one process (a list file; the model loads once),
force one OpenMP thread per process (a worker per core scales better than threads inside
tesseract) and put a timeout on every call.

What one `read` does (defaults): each image is cut into crops of its text-like regions
(`regions.crop_regions`; the whole image when it is textured or mostly text), and each crop is
read twice, scaled so its text lines are 13 and 20 px high (`fit_heights`); all crops of all
images are pages of one tesseract call, and words come back in image coordinates, tagged with
their `reading` so the matcher never joins words of two readings. Why: the process start
(~65 ms, the model load) is paid once per call whatever the pages; tesseract's time beyond it
follows the pixels and blobs it is given, so flat background is not worth reading; and it
misreads some fonts at some sizes (thin monospace at 24-32 px, anything at 11-12 px) that it
reads well at another scale. On generated images (14 fonts, 11-32 px, both polarities) this
took the identifying boxes removed from 91 % (whole frame, one reading) to 99.7 %, and made a
full scrub faster (bench/RESULTS.md, "pixels"). `TesseractBackend(regions=None,
fit_heights=())` is the old reader, kept for comparison.

    backend = TesseractBackend()
    if not backend.is_available():
        print(backend.unavailable_reason())   # "tesseract-ocr is not installed: apt-get ..."
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from deidentify.pixels.ocr import Box, Gray8, OcrUnavailable, OcrWord
from deidentify.pixels.regions import DEFAULT_REGIONS, RegionParams, crop_regions

INSTALL_HINT = "tesseract-ocr is not installed: apt-get install tesseract-ocr"
_TSV_COLUMNS = 12
_WORD_LEVEL = "5"
_BLOCKS_PER_PAGE = 100_000
_MIN_SCALE, _MAX_SCALE = 0.4, 4.0
_INK_STEP, _INK_MAX, _MIN_LINE = 40, 160, 4


@dataclass
class TesseractBackend:
    """OCR with the `tesseract` binary (Debian package `tesseract-ocr`), TSV output with boxes.

    `psm` 11 ("sparse text") finds scattered annotations best; `threads_per_process` 1 keeps a
    process on one core. `timeout_s` bounds one call (plus `per_image_timeout_s` per image).
    `regions`: read only the parts of each image that hold ink (`regions.crop_regions`), each
    crop a page of the same call with a white `border`; None reads every image whole.
    """

    binary: str = "tesseract"
    lang: str = "eng"
    psm: int = 11
    threads_per_process: int = 1
    timeout_s: float = 30.0
    per_image_timeout_s: float = 10.0
    name: str = "tesseract"
    regions: RegionParams | None = DEFAULT_REGIONS
    border: int = 10
    upscale: int = 1
    fit_heights: tuple[int, ...] = (13, 20)
    fit_max_fraction: float = 0.125
    fit_budget: float = 0.25
    _checked: tuple[bool, str] | None = field(default=None, init=False, repr=False)

    def _check(self) -> tuple[bool, str]:
        if self._checked is None:
            self._checked = self._probe()
        return self._checked

    def _probe(self) -> tuple[bool, str]:
        path = shutil.which(self.binary)
        if path is None:
            return False, INSTALL_HINT
        try:
            proc = subprocess.run(
                [path, "--list-langs"], capture_output=True, text=True, timeout=15, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"tesseract-ocr does not start ({type(exc).__name__}): {INSTALL_HINT}"
        langs = {line.strip() for line in (proc.stdout + proc.stderr).splitlines()}
        if self.lang not in langs:
            return False, (
                f"tesseract language data '{self.lang}' is missing: "
                f"apt-get install tesseract-ocr-{self.lang}"
            )
        return True, ""

    def is_available(self) -> bool:
        return self._check()[0]

    def unavailable_reason(self) -> str:
        ok, reason = self._check()
        return "" if ok else reason

    def read(self, images: Sequence[Gray8]) -> list[list[OcrWord]]:
        if not images:
            return []
        ok, reason = self._check()
        if not ok:
            raise OcrUnavailable(reason)
        pages: list[Gray8] = []
        origins: list[tuple[int, Box, int, float, int]] = []  # image, crop, border, scale, reading
        for number, image in enumerate(images):
            rows, columns = image.shape
            whole = Box(0, 0, columns, rows)
            crops = [whole] if self.regions is None else crop_regions(image, self.regions)
            for crop in crops:
                border = 0 if crop == whole else self.border
                for reading, scale in enumerate(self._scales(image, crop)):
                    pages.append(_page(image, crop, border, scale))
                    origins.append((number, crop, border, scale, reading))
        words: list[list[OcrWord]] = [[] for _ in images]
        if not pages:
            return words  # no ink anywhere: nothing could be read
        read = self._run(pages)
        for page_no, (page, origin) in enumerate(zip(read, origins, strict=True)):
            number, crop, border, scale, reading = origin
            rows, columns = images[number].shape
            for word in page:
                found = word.box.scaled(scale)
                box = Box(
                    found.left - border + crop.left,
                    found.top - border + crop.top,
                    found.width,
                    found.height,
                ).clip(columns, rows)
                if box is None:
                    continue
                block, par, line = word.line
                # line ids are per page: keep lines of different crops apart
                unique = (page_no * _BLOCKS_PER_PAGE + block, par, line)
                words[number].append(OcrWord(word.text, box, word.confidence, unique, reading))
        return words

    def _scales(self, image: Gray8, crop: Box) -> list[float]:
        """One reading per `fit_heights` entry, the crop scaled so that its text lines are that
        many pixels high; a reading within 15 % of another is dropped, and so is one whose page
        would exceed `fit_budget` of the frame's pixels (a noisy crop with a tiny "line height"
        would be blown up for nothing). A crop larger than `fit_max_fraction` of the frame (a
        sector, a textured image: its "line height" may mean nothing) is also read at
        `upscale`; so is the whole frame, a crop whose line height cannot be told, and one
        left without a reading."""
        base = float(self.upscale)
        if not self.fit_heights or crop.area >= image.size:
            return [base]
        height = line_height(image[crop.top : crop.bottom, crop.left : crop.right])
        if not height:
            return [base]
        scales: list[float] = []
        if crop.area > self.fit_max_fraction * image.size:
            scales.append(base)
        for target in self.fit_heights:
            fit = min(max(target / height, _MIN_SCALE), _MAX_SCALE)
            if crop.area * fit * fit > self.fit_budget * image.size:
                continue
            if all(abs(fit - other) > 0.15 * other for other in scales):
                scales.append(fit)
        return scales or [base]

    def _run(self, pages: Sequence[Gray8]) -> list[list[OcrWord]]:
        """One tesseract process over `pages`; words per page in page coordinates."""
        env = dict(os.environ)
        env["OMP_THREAD_LIMIT"] = str(self.threads_per_process)
        with tempfile.TemporaryDirectory(prefix="hexchange-ocr-") as tmp:
            paths = []
            for index, image in enumerate(pages):
                path = Path(tmp) / f"f{index:05d}.pgm"
                _write_pgm(path, image)
                paths.append(str(path))
            listing = Path(tmp) / "images.txt"
            listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
            command = [
                shutil.which(self.binary) or self.binary,
                str(listing),
                "-",
                "--oem", "1",
                "--psm", str(self.psm),
                "-l", self.lang,
                "-c", "tessedit_do_invert=0",
                "tsv",
            ]  # fmt: skip
            timeout = self.timeout_s + self.per_image_timeout_s * len(pages)
            try:
                proc = subprocess.run(
                    command, capture_output=True, timeout=timeout, env=env, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OcrUnavailable(f"tesseract failed to run ({type(exc).__name__})") from exc
        if proc.returncode != 0:
            raise OcrUnavailable(f"tesseract exited with status {proc.returncode}")
        return parse_tsv(proc.stdout.decode("utf-8", errors="replace"), len(pages))


def line_height(crop: Gray8) -> int:
    """The median height of the runs of rows holding ink (dark on light): about a text line."""
    ink_rows = (crop < min(int(np.median(crop)) - _INK_STEP, _INK_MAX)).any(axis=1)
    runs: list[int] = []
    length = 0
    for has_ink in np.append(ink_rows, False):
        if has_ink:
            length += 1
        elif length:
            if length >= _MIN_LINE:
                runs.append(length)
            length = 0
    return int(np.median(runs)) if runs else 0


def _page(image: Gray8, crop: Box, border: int, upscale: float = 1) -> Gray8:
    """The crop of `image` inside a white border (tesseract reads text at a page edge badly),
    scaled by `upscale` (border included, so word boxes scale back with one factor)."""
    part = image[crop.top : crop.bottom, crop.left : crop.right]
    if border > 0:
        framed = np.full((crop.height + 2 * border, crop.width + 2 * border), 255, np.uint8)
        framed[border : border + crop.height, border : border + crop.width] = part
        part = framed
    if upscale != 1:
        rows, columns = part.shape
        size = (max(round(columns * upscale), 1), max(round(rows * upscale), 1))
        part = np.asarray(Image.fromarray(part).resize(size, Image.Resampling.BICUBIC))
    return np.ascontiguousarray(part, dtype=np.uint8)


def parse_tsv(text: str, pages: int) -> list[list[OcrWord]]:
    """Words per page from tesseract's TSV (one header line per page; page_num is 1-based)."""
    words: list[list[OcrWord]] = [[] for _ in range(pages)]
    for row in text.splitlines():
        cols = row.split("\t")
        if len(cols) < _TSV_COLUMNS or cols[0] != _WORD_LEVEL:
            continue
        content = cols[11].strip()
        if not content:
            continue
        try:
            page = int(cols[1]) - 1
            block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
            left, top, width, height = (int(c) for c in cols[6:10])
            conf = float(cols[10])
        except ValueError:
            continue
        if 0 <= page < pages:
            words[page].append(
                OcrWord(content, Box(left, top, width, height), conf, (block, par, line))
            )
    return words


def _write_pgm(path: Path, image: Gray8) -> None:
    rows, columns = image.shape
    header = f"P5\n{columns} {rows}\n255\n".encode("ascii")
    path.write_bytes(header + image.tobytes())
