"""The tesseract OCR backend: the one module of `deidentify` that runs a program.

Why a subprocess and not pytesseract: pytesseract is itself a thin wrapper that writes temporary
files and runs the same binary, one image per process. Running tesseract directly costs no extra
dependency and lets us read many frames in one process (a list file; the model loads once),
force one OpenMP thread per process (a worker per core scales better than threads inside
tesseract) and put a timeout on every call.

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

from deidentify.pixels.ocr import Box, Gray8, OcrUnavailable, OcrWord

INSTALL_HINT = "tesseract-ocr is not installed: apt-get install tesseract-ocr"
_TSV_COLUMNS = 12
_WORD_LEVEL = "5"


@dataclass
class TesseractBackend:
    """OCR with the `tesseract` binary (Debian package `tesseract-ocr`), TSV output with boxes.

    `psm` 11 ("sparse text") finds scattered annotations best; `threads_per_process` 1 keeps a
    process on one core. `timeout_s` bounds one call (plus `per_image_timeout_s` per image).
    """

    binary: str = "tesseract"
    lang: str = "eng"
    psm: int = 11
    threads_per_process: int = 1
    timeout_s: float = 30.0
    per_image_timeout_s: float = 10.0
    name: str = "tesseract"
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
        env = dict(os.environ)
        env["OMP_THREAD_LIMIT"] = str(self.threads_per_process)
        with tempfile.TemporaryDirectory(prefix="hexchange-ocr-") as tmp:
            paths = []
            for index, image in enumerate(images):
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
            timeout = self.timeout_s + self.per_image_timeout_s * len(images)
            try:
                proc = subprocess.run(
                    command, capture_output=True, timeout=timeout, env=env, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OcrUnavailable(f"tesseract failed to run ({type(exc).__name__})") from exc
        if proc.returncode != 0:
            raise OcrUnavailable(f"tesseract exited with status {proc.returncode}")
        return parse_tsv(proc.stdout.decode("utf-8", errors="replace"), len(images))


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
