"""WADO-RS bodies streamed from the stored files: the same bytes as a body built in memory,
read a bounded piece at a time whatever the file size."""

from __future__ import annotations

import os
from pathlib import Path

from hub.collections import media


def test_streamed_parts_are_the_bytes_of_whole_parts_in_bounded_pieces(tmp_path: Path) -> None:
    contents = [os.urandom(2500), b"", os.urandom(999), os.urandom(1000), os.urandom(7)]
    paths = []
    for n, data in enumerate(contents):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(data)
        paths.append(path)
    whole = b"".join(
        media.encode_parts((media.Part("application/dicom", d) for d in contents), "b0undary")
    )
    pieces = list(media.file_parts(paths, "application/dicom", "b0undary", chunk=1000))
    assert b"".join(pieces) == whole
    assert max(len(p) for p in pieces) <= 1000 + 200  # a chunk plus part heads, never a file
    assert len(pieces) == 7  # 2500 bytes in 3 reads; the small files ride with their heads
    parts = media.decode_parts('multipart/related; boundary="b0undary"', whole)
    assert [p.data for p in parts] == contents
