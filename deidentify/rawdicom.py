"""A minimal little-endian DICOM header parser for the fast header path (`deidentify.fastpath`).

`read_header` parses a Part 10 file's File Meta Information and every data element before Pixel
Data (7FE0,0010) - and the few elements after it - into `RawElement`s: (tag, VR, value bytes) for
leaf elements, items for sequences, at any depth. Nothing is decoded, and Pixel Data is never
read: only its position and length are recorded (`PixelInfo`).

It is a strict parser. Anything it does not handle exactly as pydicom would raises `Fallback`,
and the caller then uses the ordinary pydicom path:

* transfer syntaxes other than Implicit VR Little Endian and Explicit VR Little Endian (big
  endian, deflate, encapsulated/compressed Pixel Data);
* no preamble/``DICM`` prefix, no Pixel Data, Pixel Data of undefined or zero length, or a
  Pixel Data VR other than OB/OW (explicit VR);
* unknown or invalid explicit VRs (including writers that switch to implicit VR inside a
  sequence), undefined-length values that are not sequences, UN elements of undefined length,
  delimiters in the wrong place, lengths running past their container, tags out of order or
  repeated, more than `MAX_DEPTH` nested sequences, headers larger than `MAX_HEADER`.

Values are kept as the bytes read (including padding), so a kept element is written back
byte for byte.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from deidentify.vrs import dictionary_vr

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
PIXEL_DATA = 0x7FE00010
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
MAX_DEPTH = 32
FIRST_READ = 64 * 1024
MAX_HEADER = 16 * 1024 * 1024
MAX_TAIL = 1024 * 1024
PREAMBLE_LENGTH = 132  # 128-byte preamble + "DICM"

# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
SHORT_VRS = frozenset(
    {
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "SL",
        "SS",
        "ST",
        "TM",
        "UI",
        "UL",
        "US",
    }
)
_VRS = {vr.encode("ascii"): vr for vr in LONG_VRS | SHORT_VRS}
_LONG_VR_BYTES = frozenset(vr.encode("ascii") for vr in LONG_VRS)

_TAG = struct.Struct("<HH")
_TAG_LENGTH = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class Fallback(Exception):
    """The fast path does not handle this input; the caller uses pydicom."""


class _NeedMore(Exception):
    """The header runs past the bytes read so far."""


@dataclass(slots=True)
class RawItem:
    elements: list[RawElement]
    undefined: bool  # undefined length (ends with an Item Delimitation Item)


@dataclass(slots=True)
class RawElement:
    tag: int
    vr: str  # as written (explicit VR) or the dictionary VR ("UN" if unknown; implicit VR)
    value: bytes  # the value as read, padding included (b"" for sequences)
    items: list[RawItem] | None = None  # sequences only
    undefined: bool = False  # undefined length (sequences only)


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """Where the input's Pixel Data value is: never read, copied file to file."""

    vr: str  # "OB"/"OW" (explicit VR) or "" (implicit VR)
    offset: int  # of the value in the input file
    length: int


@dataclass(slots=True)
class RawHeader:
    meta: list[RawElement]
    elements: list[RawElement]  # before Pixel Data
    tail: list[RawElement]  # after Pixel Data
    implicit: bool
    transfer_syntax: str
    pixel: PixelInfo
    file_size: int


def _vr_for_implicit(tag: int) -> str:
    return dictionary_vr(tag)


class _Parser:
    """Parses `buf` (bytes of the file from offset 0, possibly only its beginning)."""

    __slots__ = ("buf", "complete", "implicit")

    def __init__(self, buf: bytes, implicit: bool, complete: bool) -> None:
        self.buf = buf
        self.implicit = implicit
        self.complete = complete  # buf holds the whole region being parsed

    def _short(self) -> None:
        raise Fallback("truncated header") if self.complete else _NeedMore()

    def dataset(
        self, pos: int, end: int, depth: int, stop: int = -1
    ) -> tuple[list[RawElement], int]:
        """Elements from `pos` up to `end` (-1: up to an Item Delimitation Item, -2: up to the
        `stop` tag or the end of the buffer). Returns the elements and the position after them
        (of the delimiter's end, or of the `stop` element's start)."""
        buf = self.buf
        n = len(buf)
        implicit = self.implicit
        elements: list[RawElement] = []
        last = -1
        while True:
            if end >= 0 and pos >= end:
                if pos > end:
                    raise Fallback("element runs past its item")
                return elements, pos
            if end == -2 and pos >= n:
                if self.complete:
                    return elements, pos
                raise _NeedMore()
            if pos + 8 > n:
                self._short()
            group, number, length = _TAG_LENGTH.unpack_from(buf, pos)
            tag = group << 16 | number
            if tag == stop:
                return elements, pos
            if group == 0xFFFE:
                if tag == ITEM_DELIMITER and end == -1:
                    if length:
                        raise Fallback("item delimiter with a length")
                    return elements, pos + 8
                raise Fallback("unexpected delimiter")
            if tag <= last:
                raise Fallback("tags out of order")
            last = tag
            if implicit:
                vr = _vr_for_implicit(tag)
                pos += 8
            else:
                code = buf[pos + 4 : pos + 6]
                found = _VRS.get(code)
                if found is None:
                    raise Fallback("unknown or invalid VR")
                vr = found
                if code in _LONG_VR_BYTES:
                    if pos + 12 > n:
                        self._short()
                    (length,) = _U32.unpack_from(buf, pos + 8)
                    pos += 12
                else:
                    (length,) = _U16.unpack_from(buf, pos + 6)
                    pos += 8
            if length == UNDEFINED:
                if implicit and vr == "UN":
                    # unknown tag of undefined length: a sequence when it holds items
                    if pos + 4 > n:
                        self._short()
                    if _TAG.unpack_from(buf, pos) != (0xFFFE, 0xE000):
                        raise Fallback("undefined length value that is not a sequence")
                    vr = "SQ"
                if vr != "SQ":
                    raise Fallback("undefined length value that is not a sequence")
                if depth >= MAX_DEPTH:
                    raise Fallback("sequences nested too deeply")
                items, pos = self.items(pos, -1, depth + 1)
                elements.append(RawElement(tag, vr, b"", items, True))
                continue
            stop_at = pos + length
            if stop_at > n:
                self._short()
            if vr == "SQ":
                if depth >= MAX_DEPTH:
                    raise Fallback("sequences nested too deeply")
                items, _ = self.items(pos, stop_at, depth + 1)
                elements.append(RawElement(tag, vr, b"", items, False))
            else:
                elements.append(RawElement(tag, vr, buf[pos:stop_at]))
            pos = stop_at

    def items(self, pos: int, end: int, depth: int) -> tuple[list[RawItem], int]:
        """Items of a sequence from `pos` up to `end` (-1: up to a Sequence Delimitation Item)."""
        buf = self.buf
        n = len(buf)
        items: list[RawItem] = []
        while True:
            if end >= 0 and pos >= end:
                if pos > end:
                    raise Fallback("item runs past its sequence")
                return items, pos
            if pos + 8 > n:
                self._short()
            group, number, length = _TAG_LENGTH.unpack_from(buf, pos)
            tag = group << 16 | number
            pos += 8
            if tag == SEQUENCE_DELIMITER and end == -1:
                if length:
                    raise Fallback("sequence delimiter with a length")
                return items, pos
            if tag != ITEM:
                raise Fallback("expected an item")
            if length == UNDEFINED:
                elements, pos = self.dataset(pos, -1, depth)
                items.append(RawItem(elements, True))
            else:
                if pos + length > n:
                    self._short()
                elements, after = self.dataset(pos, pos + length, depth)
                items.append(RawItem(elements, False))
                pos = after


def _meta(buf: bytes) -> tuple[list[RawElement], int]:
    """File Meta Information (explicit VR little endian, group 0002) and where it ends."""
    parser = _Parser(buf, implicit=False, complete=False)
    elements: list[RawElement] = []
    pos = PREAMBLE_LENGTH
    while True:
        if pos + 8 > len(buf):
            raise _NeedMore()
        if _U16.unpack_from(buf, pos)[0] != 0x0002:
            return elements, pos
        found, after = _one(parser, pos)
        elements.extend(found)
        pos = after


def _one(parser: _Parser, pos: int) -> tuple[list[RawElement], int]:
    """One group 0002 element at `pos`."""
    buf = parser.buf
    code = buf[pos + 4 : pos + 6]
    vr = _VRS.get(code)
    if vr is None or vr == "SQ":
        raise Fallback("invalid file meta element")
    if code in _LONG_VR_BYTES:
        if pos + 12 > len(buf):
            raise _NeedMore()
        (length,) = _U32.unpack_from(buf, pos + 8)
        start = pos + 12
    else:
        (length,) = _U16.unpack_from(buf, pos + 6)
        start = pos + 8
    if length == UNDEFINED:
        raise Fallback("undefined length file meta element")
    if start + length > len(buf):
        raise _NeedMore()
    group, number = _TAG.unpack_from(buf, pos)
    return [RawElement(group << 16 | number, vr, buf[start : start + length])], start + length


def text_value(value: bytes) -> str:
    """An ASCII value without its padding (NULs and spaces)."""
    return value.decode("ascii", "replace").strip("\x00 ")


def read_header(fd: int, file_size: int) -> RawHeader:
    """Parse the header of the open file `fd` (read with `os.pread`; Pixel Data is not read)."""
    size = FIRST_READ
    while True:
        buf = os.pread(fd, size, 0)
        complete = len(buf) >= file_size
        try:
            return _parse(fd, buf, file_size, complete)
        except _NeedMore:
            if complete or size >= MAX_HEADER:
                raise Fallback("header too large or truncated") from None
            size *= 4


def parse_output(header: bytes, tail: bytes, implicit: bool) -> RawHeader:
    """Parse a written header (bytes up to and including the Pixel Data element's tag and
    length, which must end `header`) and the bytes after Pixel Data. Raises `Fallback` when
    they are not exactly that."""
    parsed = _parse(-1, header, len(header), True, implicit=implicit, tail=tail)
    if parsed.pixel.offset != len(header):
        raise Fallback("bytes after the Pixel Data element's header")
    return parsed


def _parse(
    fd: int,
    buf: bytes,
    file_size: int,
    complete: bool,
    *,
    implicit: bool | None = None,
    tail: bytes | None = None,
) -> RawHeader:
    """Parse `buf` (from a file `fd` of `file_size` bytes, or - with `tail` - a written output
    whose transfer syntax must be `implicit`)."""
    if len(buf) < PREAMBLE_LENGTH + 8 or buf[128:132] != b"DICM":
        raise Fallback("no DICOM preamble")
    try:
        meta, pos = _meta(buf)
    except _NeedMore:
        if complete:
            raise Fallback("truncated file meta") from None
        raise
    syntax = ""
    for elem in meta:
        if elem.tag == 0x00020010:
            syntax = text_value(elem.value)
    if syntax not in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN):
        raise Fallback("transfer syntax not handled by the fast path")
    if implicit is not None and implicit != (syntax == IMPLICIT_VR_LITTLE_ENDIAN):
        raise Fallback("transfer syntax changed")
    implicit = syntax == IMPLICIT_VR_LITTLE_ENDIAN
    parser = _Parser(buf, implicit, complete)
    elements, pos = parser.dataset(pos, -2, 0, stop=PIXEL_DATA)
    if pos + 8 > len(buf):
        raise Fallback("no Pixel Data") if complete else _NeedMore()
    if implicit:
        (length,) = _U32.unpack_from(buf, pos + 4)
        pixel_vr, value_at = "", pos + 8
    else:
        pixel_vr = buf[pos + 4 : pos + 6].decode("latin-1")
        if pixel_vr not in ("OB", "OW"):
            raise Fallback("Pixel Data VR not OB/OW")
        if pos + 12 > len(buf):
            raise Fallback("truncated") if complete else _NeedMore()
        (length,) = _U32.unpack_from(buf, pos + 8)
        value_at = pos + 12
    if length in (0, UNDEFINED):
        raise Fallback("Pixel Data empty or encapsulated")
    pixel = PixelInfo(pixel_vr, value_at, length)
    if tail is not None:
        tail_buf = tail
    else:
        tail_at = value_at + length
        if tail_at > file_size:
            raise Fallback("Pixel Data runs past the end of the file")
        if file_size - tail_at > MAX_TAIL:
            raise Fallback("large trailing elements")
        tail_buf = os.pread(fd, file_size - tail_at, tail_at) if tail_at < file_size else b""
        if len(tail_buf) != file_size - tail_at:
            raise Fallback("file changed while read")
    after: list[RawElement] = []
    if tail_buf:
        after, _ = _Parser(tail_buf, implicit, complete=True).dataset(0, len(tail_buf), 0)
        if after and after[0].tag <= PIXEL_DATA:
            raise Fallback("tags out of order")
    return RawHeader(meta, elements, after, implicit, syntax, pixel, file_size)
