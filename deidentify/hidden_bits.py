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
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Plan:
    """What to rewrite in one native Pixel Data value."""

    bits: ValueBits | None  # None: every bit of a sample is the value
    used: int  # bytes the frames take (Rows x Columns x Samples x Frames x Bits Allocated)


@dataclass(frozen=True)
class Cleared:
    samples: int = 0  # samples whose bits outside the value were set
    excess: int = 0  # bytes after the last frame that were not zero (the pad byte included)

    def notes(self) -> list[str]:
        """The de-identification notes (counts, never values)."""
        out = []
        if self.samples:
            out.append(
                f"pixel-data: bits outside the stored value cleared in {self.samples} samples"
            )
        if self.excess:
            out.append(f"pixel-data: {self.excess} bytes after the last frame set to zero")
        return out


def plan(
    rows: int, columns: int, samples: int, frames: int, bits_layout: tuple[int, int, int, int]
) -> Plan | None:
    """The plan for native Pixel Data of these dimensions; None when they do not describe
    frames (then the engine's own checks refuse or leave the instance)."""
    allocated = bits_layout[0]
    if min(rows, columns, samples, frames, allocated) <= 0:
        return None
    used = -(-rows * columns * samples * frames * allocated // 8)
    return Plan(value_bits(*bits_layout), used)


def clear_file(fd: int, offset: int, length: int, todo: Plan) -> Cleared:
    """Rewrite, in place in the open file `fd` (read and write), the native Pixel Data value of
    `length` bytes at `offset`: each sample's bits outside its value (`todo.bits`), and any
    bytes after the last frame (set to zero). Reads a block at a time."""
    changed = 0
    bits = todo.bits
    if bits is not None:
        dtype = dtype_of(bits)
        frames_end = min(todo.used, length)
        whole = frames_end - frames_end % dtype.itemsize
        at = 0
        while at < whole:
            count = min(_BLOCK, whole - at)
            data = os.pread(fd, count, offset + at)
            if len(data) != count:
                raise OSError("Pixel Data ends before its length")
            words = np.frombuffer(data, dtype)
            if any_hidden(words, bits):
                fixed = cleared(words, bits)
                changed += int(np.count_nonzero(fixed != words))
                _pwrite_all(fd, fixed.tobytes(), offset + at)
            at += count
    excess = 0
    at = todo.used
    while at < length:
        count = min(_BLOCK, length - at)
        data = os.pread(fd, count, offset + at)
        nonzero = len(data) - data.count(0)
        if nonzero:
            excess += nonzero
            _pwrite_all(fd, bytes(len(data)), offset + at)
        at += count
    return Cleared(changed, excess)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def plan_of(ds: Dataset) -> Plan | None:
    """The plan for a dataset written with native Little Endian Pixel Data; else None."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in NATIVE_LITTLE_ENDIAN or "PixelData" not in ds:
        return None
    try:
        numbers = [
            int(ds.get(k, default) or default)
            for k, default in (("Rows", 0), ("Columns", 0), ("SamplesPerPixel", 1),
                               ("NumberOfFrames", 1), ("BitsAllocated", 0), ("BitsStored", 0),
                               ("HighBit", -1), ("PixelRepresentation", 0))
        ]  # fmt: skip
    except (TypeError, ValueError):
        return None
    rows, columns, samples, frames, allocated, stored, high, representation = numbers
    return plan(rows, columns, samples, frames, (allocated, stored, high, representation))


class ValueInPixelData(Exception):
    """An identifying value of the original is in the bytes of compressed Pixel Data."""


def clean_written(path: Path, todo: Plan | None, needles: Sequence[bytes]) -> Cleared:
    """Once the Part 10 file at `path` is written (its header read once, the value deferred):
    `clear_file` on its native Pixel Data when there is a `todo`; for compressed Pixel Data, the
    search for `needles` in its bytes (`ValueInPixelData` when one is there)."""
    with open(path, "rb") as handle:
        ds = dcmread(handle, defer_size=64, force=False)
        if PIXEL_DATA not in ds:
            return Cleared()
        syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    offset, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if todo is not None:
        if offset is None or length is None or length == 0xFFFFFFFF:
            raise ValueError("the written file's Pixel Data could not be located")
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            return clear_file(fd, int(offset), int(length), todo)
        finally:
            os.close(fd)
    compressed = syntax not in NATIVE_LITTLE_ENDIAN and offset is not None
    if compressed and holds_any(path, int(offset or 0), needles):  # e.g. a JPEG comment
        raise ValueInPixelData
    return Cleared()


MIN_SCANNED = 6  # shorter values occur in compressed bytes by chance (3 letters: ~6 per 100 MB)


def scanned_needles(values: list[str]) -> list[bytes]:
    """The identifying values (`clean.identifying_values`, no dates) as the byte strings searched
    for in compressed Pixel Data: as written in DICOM (ASCII/UTF-8 and Latin-1), upper and as
    given, at least `MIN_SCANNED` bytes."""
    out: set[bytes] = set()
    for value in values:
        for form in (value, value.upper()):
            for codec in ("utf-8", "latin-1"):
                try:
                    data = form.strip().encode(codec)
                except UnicodeEncodeError:
                    continue
                if len(data) >= MIN_SCANNED:
                    out.add(data)
    # a value that holds another is found with it ("QUIGLEY^ROSALIND" with "QUIGLEY")
    kept = [n for n in out if not any(other != n and other in n for other in out)]
    return sorted(kept, key=lambda b: (-len(b), b))


def holds_any(path: Path, offset: int, needles: Sequence[bytes]) -> bool:
    """Whether the file at `path` holds one of `needles` anywhere from `offset` to its end
    (blocks overlapping by the longest needle, so none is missed across a block edge)."""
    if not needles:
        return False
    overlap = max(len(n) for n in needles) - 1
    with open(path, "rb") as handle:
        handle.seek(offset)
        carry = b""
        while block := handle.read(_BLOCK):
            window = carry + block
            if any(n in window for n in needles):
                return True
            carry = window[-overlap:] if overlap else b""
    return False
