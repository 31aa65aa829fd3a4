"""Put the learned text detector's model (PP-OCRv4 DB detection, ONNX, 4.7 MB, Apache-2.0) into
a cache outside the repository, for `deidentify/pixels/netdetect.py`.

    python tools/fetch_text_model.py [MODEL_PATH]   # default ~/.cache/hexchange/models/...

The model ships inside the `rapidocr-onnxruntime` wheel on PyPI. This downloads that wheel,
pinned to one version and its sha256 (`pip download --no-deps --require-hashes`: pip checks the
hash), takes only the .onnx file out of it, checks that file's own sha256 and writes it
atomically; the wheel is not installed (it would pull the full `opencv-python`, which clashes
with `opencv-python-headless`) and is deleted. Idempotent: a model already in place with the
pinned hash is left alone. HEXCHANGE_TEXT_MODEL points the scrubber at another path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "rapidocr-onnxruntime==1.4.4"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
# the same values as deidentify/pixels/netdetect.py (this script runs without the project)
MODEL_SHA256 = "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
DEFAULT = Path.home() / ".cache" / "hexchange" / "models" / "ch_PP-OCRv4_det_infer.onnx"


def target() -> Path:
    return Path(os.environ.get("HEXCHANGE_TEXT_MODEL", "") or DEFAULT)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(path: Path) -> Path:
    if path.is_file() and _sha256(path) == MODEL_SHA256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pins = Path(tmp) / "requirements.txt"
        pins.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n", encoding="ascii")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
             ":all:", "--require-hashes", "-r", str(pins), "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("rapidocr_onnxruntime-*.whl")
        if _sha256(wheel) != WHEEL_SHA256:
            raise SystemExit(f"{wheel.name}: sha256 differs from the pinned one; not used")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
        if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
            raise SystemExit(f"{MEMBER} in {wheel.name}: sha256 differs from the pinned one")
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    return path


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else target()))
