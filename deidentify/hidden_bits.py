"""Bits of native Pixel Data outside the stored value, cleared in every de-identified output.

A native (uncompressed) pixel sample takes Bits Allocated bits, of which only Bits Stored, ending
at High Bit, are the value (PS3.5 8.1.1). The other bits are invisible to every viewer and to the
pixel scrubber (pydicom's decoding masks them out), but they are in the file, and old images use
them for embedded overlays (the retired Overlay Bits in Pixel Data, PS3.3 C.9.2): a patient's
name drawn into bits 12-15 of a 12-bit CT survives a de-identification that removes the overlay
group (60xx) and leaves Pixel Data as it was. So the de-identification engine rewrites them:

* unsigned samples (Pixel Representation 0): the bits outside the value are set to 0;
* signed samples (1): the bits above High Bit repeat the value's sign bit (two's complement,
  what decoders produce), the bits below its lowest bit are 0.

The value bits themselves, and so the decoded pixels, are never changed. Only native Little
Endian Pixel Data is rewritten (the engine's outputs: compressed Pixel Data holds only the
precision its codestream declares). `clear_file` works in place on the output file, a block at a
time, before it is renamed into place; nothing is read whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset

_BLOCK = 1 << 20  # bytes per read (a multiple of every sample size; the int64 work
# copies of one block stay a few MiB: the agent de-identifies within 200 MB)
PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class ValueBits:
    """Where the value lies in each native sample."""

    allocated: int  # 8, 16 or 32
    stored: int
    high: int
    signed: bool

    @property
    def low(self) -> int:
        return self.high - self.stored + 1


def value_bits(allocated: int, stored: int, high: int, representation: int) -> ValueBits | None:
    """The layout when samples have bits outside the value to clear; None when every bit is the
    value (Bits Stored = Bits Allocated) or the attributes do not describe a layout this module
    rewrites (other sizes, a High Bit outside the sample: the pydicom path refuses those)."""
    if allocated not in (8, 16, 32) or not 0 < stored < allocated:
        return None
    if not stored - 1 <= high < allocated:
        return None
    return ValueBits(allocated, stored, high, representation == 1)


def dtype_of(bits: ValueBits) -> np.dtype[Any]:
    return np.dtype({8: "u1", 16: "<u2", 32: "<u4"}[bits.allocated])


def cleared(words: npt.NDArray[Any], bits: ValueBits) -> npt.NDArray[Any]:
    """`words` (unsigned, one per sample) with the bits outside the value rewritten."""
    wide = words.astype(np.int64)
    value = (wide >> bits.low) & ((1 << bits.stored) - 1)
    if bits.signed:
        sign = 1 << (bits.stored - 1)
        value = (value ^ sign) - sign  # sign-extended
    full = (1 << bits.allocated) - 1
    return ((value << bits.low) & full).astype(words.dtype)


def any_hidden(words: npt.NDArray[Any], bits: ValueBits) -> bool:
    """Whether any sample has bits outside its value (cheap: in the samples' own type)."""
    if bits.low and np.any(words & words.dtype.type((1 << bits.low) - 1)):
        return True
    top = words >> words.dtype.type(bits.high)  # the sign bit and everything above it
    if not bits.signed:
        return bool(np.any(top > 1))
    ones = words.dtype.type((1 << (bits.allocated - bits.high)) - 1)  # a negative value's
    return bool(np.any((top != 0) & (top != ones)))


def clear_file(fd: int, offset: int, length: int, bits: ValueBits) -> int:
    """Rewrite the samples in `length` bytes at `offset` of the open file `fd` (read and write)
    in place; the number of samples changed. A trailing odd byte (padding) is set to 0."""
    dtype = dtype_of(bits)
    size = dtype.itemsize
    whole = length - length % size
    changed = 0
    at = 0
    while at < whole:
        count = min(_BLOCK, whole - at)
        data = os.pread(fd, count, offset + at)
        if len(data) != count:
            raise OSError("Pixel Data ends before its length")
        words = np.frombuffer(data, dtype)
        if not any_hidden(words, bits):
            at += count
            continue
        fixed = cleared(words, bits)
        differ = int(np.count_nonzero(fixed != words))
        if differ:
            changed += differ
            _pwrite_all(fd, fixed.tobytes(), offset + at)
        at += count
    if whole < length:
        tail = os.pread(fd, length - whole, offset + whole)
        if tail.strip(b"\0"):
            _pwrite_all(fd, b"\0" * len(tail), offset + whole)
    return changed


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def layout_of(ds: Dataset) -> ValueBits | None:
    """`value_bits` of a dataset written with native Little Endian Pixel Data; else None."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in NATIVE_LITTLE_ENDIAN or "PixelData" not in ds:
        return None
    try:
        allocated, stored, high = (
            int(ds.get(k)) for k in ("BitsAllocated", "BitsStored", "HighBit")
        )
        representation = int(ds.get("PixelRepresentation", 0))
    except (TypeError, ValueError):
        return None
    return value_bits(allocated, stored, high, representation)


def clear_written(path: Path, bits: ValueBits) -> int:
    """`clear_file` on the Pixel Data of the Part 10 file at `path` (found by reading its header
    with the value deferred); the number of samples changed."""
    with open(path, "rb") as handle:
        ds = dcmread(handle, defer_size=64, force=False)
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    offset, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if offset is None or length is None or length == 0xFFFFFFFF:
        raise ValueError("the written file's Pixel Data could not be located")
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        return clear_file(fd, int(offset), int(length), bits)
    finally:
        os.close(fd)


def note(count: int) -> str:
    """The de-identification note (a count, never a value)."""
    return f"pixel-data: bits outside the stored value cleared in {count} samples (hidden_bits)"
