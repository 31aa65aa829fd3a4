"""The instance file: read with Pixel Data left on disk, checked whole, written with Pixel Data
copied file to file.

* `DEFER_SIZE`: values larger than this stay on disk when pydicom reads (Pixel Data is streamed,
  never loaded).
* `incomplete(ds, file_size)`: why a parsed file is not a whole instance ("" when it is).
* `write_streamed(ds, path, source)`: the header encoded by `deidentify.encode`, Pixel Data copied
  from `source` by the kernel (``copy_file_range``), then the elements after it.
* `copy_range` / `write_all`: the byte copies both this and the fast header path use.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from deidentify.encode import encode_elements, encode_file_meta

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
DEFER_SIZE = "1 KB"

Placement = Callable[[str, str, str], Path]
"""Where an output file goes, given its (Study, Series, SOP Instance) UIDs."""

_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_END = (0xFFFE, 0xE0DD)


def walk_items(fp: BinaryIO, start: int, end: int) -> tuple[int, bool] | None:
    """Walk the item headers of encapsulated Pixel Data from `start` to at most `end` (8 bytes
    each, values skipped): (where the walk stopped, whether that is just after the sequence
    delimiter), or None when something that is not an item header stands where one should."""
    position = start
    while position + 8 <= end:
        fp.seek(position)
        group, element, length = struct.unpack("<HHI", fp.read(8))
        if (group, element) == _SEQUENCE_END:
            return position + 8, True
        if (group, element) != _ITEM or length == UNDEFINED_LENGTH:
            return None
        position += 8 + length
    return position, False


def incomplete(ds: Dataset, file_size: int | None = None) -> str:
    """Why a parsed file is not a complete instance ("" when it is): catches truncation.

    Pixel Data read with `defer_size` is not loaded: its length and position are checked
    against `file_size` instead.
    """
    missing = [k for k in REQUIRED_UIDS if not ds.get(k)]
    if missing:
        return f"incomplete: missing {', '.join(missing)}"
    pixel = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
    if pixel is not None and "TransferSyntaxUID" in ds.file_meta:
        deferred = pixel if isinstance(pixel, RawDataElement) and pixel.value is None else None
        if deferred and deferred.length == UNDEFINED_LENGTH:  # encapsulated, left in the file
            source = getattr(ds, "filename", None)
            if file_size is not None and isinstance(source, str):
                with Path(source).open("rb") as fp:
                    walked = walk_items(fp, deferred.value_tell, file_size)
                if walked is None or not walked[1]:
                    return "truncated: encapsulated PixelData has no sequence delimiter"
            return ""
        if deferred and file_size is not None and deferred.value_tell + deferred.length > file_size:
            return "truncated: PixelData runs past the end of the file"
        if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            bits = int(ds.get("BitsAllocated", 8) or 8)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            expected = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * samples * frames
            length = deferred.length if deferred else len(pixel.value or b"")
            if length * 8 < expected * bits:
                return "truncated: PixelData shorter than Rows x Columns x frames"
        elif not deferred:
            value = bytes(pixel.value or b"")  # as read: the items, without the delimiter
            walked = walk_items(io.BytesIO(value), 0, len(value))
            if walked is None or walked[0] != len(value):
                return "truncated: encapsulated PixelData ends inside an item"
    return ""


def write_streamed(ds: Dataset, path: Path, source: Path) -> bool:
    """Write `ds` with its deferred Pixel Data copied from `source` file to file (the kernel's
    copy_file_range where available), never through memory. False (nothing written) when the
    Pixel Data is not a deferred element of a little endian transfer syntax; the caller then
    writes the ordinary way.

    Encapsulated (undefined-length) Pixel Data is copied from its first item through its
    sequence delimiter, found by walking the item headers; `source` may be the original file
    or a file holding only the new Pixel Data value (the element then starts at offset 0)."""
    pixel = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if (
        not isinstance(pixel, RawDataElement)
        or pixel.value is not None
        or pixel.length == 0
        or syntax is None
        or not syntax.is_little_endian
        or syntax.is_deflated
        or (not syntax.is_implicit_VR and pixel.VR not in ("OB", "OW"))
    ):
        return False
    length = int(pixel.length)
    if length == UNDEFINED_LENGTH:
        if syntax.is_implicit_VR or not syntax.is_encapsulated:
            return False
        with source.open("rb") as fp:
            walked = walk_items(fp, pixel.value_tell, source.stat().st_size)
        if walked is None or not walked[1]:
            return False  # no delimiter: `incomplete` refuses such an input before this
        copy_length = walked[0] - pixel.value_tell
    else:
        copy_length = length
    implicit = bool(syntax.is_implicit_VR)
    encodings = ds.get("SpecificCharacterSet") or None
    tags = sorted(ds.keys())
    header = encode_file_meta(meta) + encode_elements(
        ds, [t for t in tags if t < PIXEL_DATA], implicit=implicit, encodings=encodings
    )
    if implicit:
        header += struct.pack("<HHI", 0x7FE0, 0x0010, length)
    else:
        header += struct.pack("<HH2sHI", 0x7FE0, 0x0010, pixel.VR.encode(), 0, length)
    tail = encode_elements(
        ds, [t for t in tags if t > PIXEL_DATA], implicit=implicit, encodings=encodings
    )
    with path.open("wb") as fp, source.open("rb") as src:
        fp.write(header)
        fp.flush()
        copy_range(src.fileno(), fp.fileno(), pixel.value_tell, copy_length, len(header))
        fp.seek(0, os.SEEK_END)
        fp.write(tail)
    return True


def write_all(fd: int, data: bytes, offset: int) -> None:
    """All of `data` at `offset` of `fd` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int, dst_offset: int) -> None:
    """Copy `length` bytes of `src_fd` at `offset` to `dst_fd` at `dst_offset`, in the kernel
    (``copy_file_range``) where it can, else in 1 MiB chunks."""
    copied = 0
    if hasattr(os, "copy_file_range"):
        try:
            while copied < length:
                n = os.copy_file_range(
                    src_fd, dst_fd, length - copied, offset + copied, dst_offset + copied
                )
                if n == 0:
                    break
                copied += n
        except OSError:
            pass  # e.g. across file systems on old kernels: copy in chunks below
    while copied < length:
        chunk = os.pread(src_fd, min(1 << 20, length - copied), offset + copied)
        if not chunk:
            raise EOFError("source ended inside Pixel Data")
        write_all(dst_fd, chunk, dst_offset + copied)
        copied += len(chunk)
