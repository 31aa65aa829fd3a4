"""Download the `deid-data` sdist (real ultrasound files with burned-in banners) into a cache.

    python tools/fetch_deid_data.py [CACHE_DIR]     # default ~/.cache/hexchange/deid-data

Uses `pip download --no-deps --no-binary :all: deid-data` and unpacks the ultrasound files
(zipped cines too) into CACHE_DIR/ultrasounds. The files are never committed; tests under
tests/deidentify/pixels use them when present (HEXCHANGE_DEID_DATA points elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DEFAULT = Path.home() / ".cache" / "hexchange" / "deid-data"


def cache_dir() -> Path:
    return Path(os.environ.get("HEXCHANGE_DEID_DATA", str(DEFAULT)))


def fetch(target: Path) -> Path:
    out = target / "ultrasounds"
    if out.is_dir() and any(out.glob("*.dcm")):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "deid-data", "-d", tmp],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("deid*data-*.tar.gz")
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if "/ultrasounds/" not in member.name or not member.isfile():
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                name = Path(member.name).name
                data = source.read()
                if name.endswith(".zip"):
                    zpath = Path(tmp) / name
                    zpath.write_bytes(data)
                    with zipfile.ZipFile(zpath) as zf:
                        for inner in zf.namelist():
                            if inner.endswith(".dcm") and "/" not in inner.strip("/"):
                                (out / inner).write_bytes(zf.read(inner))
                elif name.endswith(".dcm"):
                    (out / name).write_bytes(data)
    return out


if __name__ == "__main__":
    where = fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else cache_dir())
    print(where)
