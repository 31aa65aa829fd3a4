"""Every frame of a written file's compressed Pixel Data, without embedded metadata.

`strip_file(path)` runs on each de-identified output once it is written (under its temporary
name, before it is renamed into place: `deidentify.instance._write`, the one writer of
compressed outputs; the fast header path writes only native Pixel Data). For the syntaxes
`deidentify.codestream` understands, each frame is read from the file (pydicom's
`generate_frames`, a fragment at a time, frames located by the Basic or Extended Offset Table)
and stripped. When nothing was removed the file stays as it is. Otherwise the file is written
again beside itself and renamed over it: the header bytes as they were, the Pixel Data value as
one fragment per frame (even length, a 0x00 after the end-of-image marker where needed,
PS3.5 A.4) after a new Basic Offset Table, or after an empty one with the Extended Offset Table
and its lengths rewritten in place when the file has one, then the elements after Pixel Data.
Memory holds one frame.

    removed = strip_file(tmp)     # codestream.CodestreamError: refuse the instance
    removed.notes()               # ["pixel-data: metadata removed from 3 compressed frames ..."]
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.encaps import generate_frames

from deidentify.codestream import STRIPPED_SYNTAXES, CodestreamError, strip
from deidentify.instance_file import UNDEFINED_LENGTH, copy_range, walk_items, write_all

PIXEL_DATA = 0x7FE00010
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


@dataclass(frozen=True)
class Removed:
    """What `strip_file` removed: counts by kind of segment, and in how many frames."""

    frames: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """The de-identification note (counts, never content)."""
        if not self.frames:
            return []
        listed = ", ".join(f"{kind} x{count}" for kind, count in sorted(self.kinds.items()))
        return [f"pixel-data: metadata removed from {self.frames} compressed frames ({listed})"]


@dataclass(frozen=True)
class _Layout:
    syntax: str
    offset: int  # of the Pixel Data value (its Basic Offset Table item)
    end: int  # just after its sequence delimiter
    frames: int
    extended: tuple[list[int], list[int]] | None  # the Extended Offset Table and lengths
    extended_at: tuple[int, int] | None  # where their values are in the file


def _layout(handle: BinaryIO, size: int) -> _Layout | None:
    ds = dcmread(handle, defer_size=64, force=False)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax not in STRIPPED_SYNTAXES or PIXEL_DATA not in ds:
        return None
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    offset = getattr(raw, "value_tell", None)
    if offset is None or getattr(raw, "length", None) != UNDEFINED_LENGTH:
        raise CodestreamError("compressed Pixel Data is not encapsulated in items")
    walked = walk_items(handle, int(offset), size)
    if walked is None or not walked[1]:
        raise CodestreamError("compressed Pixel Data has no sequence delimiter")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise CodestreamError("Number of Frames is not a number") from None
    extended = extended_at = None
    if EXTENDED_OFFSET_TABLE in ds:
        table = ds.get_item(EXTENDED_OFFSET_TABLE, keep_deferred=True)
        lengths = ds.get_item(EXTENDED_OFFSET_TABLE_LENGTHS, keep_deferred=True)
        if not isinstance(table, RawDataElement) or not isinstance(lengths, RawDataElement):
            raise CodestreamError("an Extended Offset Table has no Extended Offset Table Lengths")
        values = []
        for element in (table, lengths):
            at, count = int(element.value_tell), int(element.length)
            if count != 8 * frames:
                raise CodestreamError("the Extended Offset Table does not list every frame")
            handle.seek(at)
            values.append(list(struct.unpack(f"<{frames}Q", handle.read(count))))
        extended = (values[0], values[1])
        extended_at = (int(table.value_tell), int(lengths.value_tell))
    return _Layout(syntax, int(offset), walked[0], frames, extended, extended_at)


def _frames(handle: BinaryIO, layout: _Layout) -> Iterator[bytes]:
    handle.seek(layout.offset)
    count = 0
    try:
        for frame in generate_frames(
            handle, number_of_frames=layout.frames, extended_offsets=layout.extended
        ):
            count += 1
            yield frame
    except (ValueError, KeyError, EOFError, struct.error) as exc:  # pydicom's words for bad items
        raise CodestreamError(
            f"the frames of compressed Pixel Data cannot be told apart ({type(exc).__name__})"
        ) from None
    if count != layout.frames:
        raise CodestreamError("compressed Pixel Data holds fewer frames than Number of Frames")


def strip_file(path: Path) -> Removed:
    """Strip every compressed frame of the Part 10 file at `path` (see the module's doc);
    `CodestreamError` when a frame is not understood (then `path` is as it was)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        layout = _layout(handle, size)
        if layout is None:
            return Removed()
        kinds: Counter[str] = Counter()
        changed = 0
        for frame in _frames(handle, layout):
            removed = strip(frame, layout.syntax).removed
            if removed:
                changed += 1
                kinds.update(removed)
        if not changed:
            return Removed()
        fresh = path.with_name(path.name + ".strip")
        try:
            _rewrite(handle, layout, size, fresh)
            os.replace(fresh, path)
        except BaseException:
            fresh.unlink(missing_ok=True)
            raise
    return Removed(changed, dict(kinds))


def _rewrite(handle: BinaryIO, layout: _Layout, size: int, fresh: Path) -> None:
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    out = os.open(fresh, flags, 0o600)
    try:
        copy_range(handle.fileno(), out, 0, layout.offset, 0)
        table = 0 if layout.extended is not None else 4 * layout.frames
        write_all(out, _ITEM + struct.pack("<I", table) + bytes(table), layout.offset)
        first = at = layout.offset + 8 + table
        offsets, lengths = [], []
        for frame in _frames(handle, layout):
            data = strip(frame, layout.syntax).data
            data += b"\0" * (len(data) % 2)
            offsets.append(at - first)
            lengths.append(len(data))
            write_all(out, _ITEM + struct.pack("<I", len(data)) + data, at)
            at += 8 + len(data)
        write_all(out, _DELIMITER, at)
        at += len(_DELIMITER)
        copy_range(handle.fileno(), out, layout.end, size - layout.end, at)
        if layout.extended_at is not None:
            table_at, lengths_at = layout.extended_at
            write_all(out, struct.pack(f"<{layout.frames}Q", *offsets), table_at)
            write_all(out, struct.pack(f"<{layout.frames}Q", *lengths), lengths_at)
        elif offsets[-1] > 0xFFFFFFFF:
            raise CodestreamError("the stripped frames are too large for a Basic Offset Table")
        else:
            write_all(out, struct.pack(f"<{layout.frames}I", *offsets), layout.offset + 8)
    finally:
        os.close(out)
