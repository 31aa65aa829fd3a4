"""Metadata inside one compressed frame, removed: what viewers never show and header
de-identification never sees.

A JPEG frame can carry comments (COM) and application segments (APPn: EXIF in APP1, ICC and
FlashPix in APP2, XMP, vendor data), a JPEG 2000 codestream comments (COM, 0xFF64) and, when
wrapped in a JP2 file, boxes (``xml ``, ``uuid``, ``uinf``...). A date, an operator's or a
patient's name written there goes out with the pixels. `strip` rewrites one frame without them;
the entropy-coded data, and so the decoded pixels, are never touched.

    stripped = strip(frame, transfer_syntax)     # CodestreamError: the frame is not understood
    stripped.data, stripped.removed              # the new frame, {"COM": 1, "APP1": 1} (no content)

* JPEG (baseline, extended, lossless: 1.2.840.10008.1.2.4.50/.51/.57/.70) and JPEG-LS
  (.80/.81): the markers are walked from SOI to EOI, between scans too (progressive or
  multi-scan frames, DNL); COM and APP0-APP15 segments are dropped, except two that decoding
  needs, cut to their fixed fields: APP0 ``JFIF`` (version, density; its thumbnail goes),
  APP14 ``Adobe`` (the colour transform) and, in JPEG-LS, APP8 ``mrfx`` (HP's colour
  transform). JFIF is kept because it changes decoding: pydicom converts a colour frame from
  YCbCr when its codestream has a JFIF marker although Photometric Interpretation says RGB (a
  common vendor mislabelling; tested: without it the decoded pixels differ). The fixed fields
  hold numbers, no text. Entropy-coded data is copied as it is: JPEG's ends at a 0xFF not
  followed by 0x00 or a restart marker, JPEG-LS's at a 0xFF followed by a byte with its high
  bit set.
* JPEG 2000 (.90/.91, Part 2 .92/.93) and HTJ2K (.201/.202/.203): COM segments are dropped
  from the main header and from tile-part headers (each tile-part's length, Psot, is
  rewritten; a codestream with a TLM marker, which repeats those lengths, is refused rather
  than rewritten). A JP2 file wrapper, which DICOM does not allow in Pixel Data (PS3.5
  8.2.4), is unwrapped to its contiguous codestream box: every other box (``xml ``,
  ``uuid``, ``uinf``, ``jp2h``...) goes.
* Bytes after the end-of-image marker (EOI / EOC) are dropped (the writer pads to even length
  with one 0x00, PS3.5 A.4). A frame without one (some encoders omit it) ends, as decoders take
  it, with its last scan's entropy-coded data or its last tile-part: nothing is added.

Anything not understood (a truncated segment, a marker where none may be, a missing end) raises
`CodestreamError` with what was wrong, never a byte of the content: the caller refuses the
instance rather than send a frame it could not clean.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass, field

JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # baseline 8 bit
        "1.2.840.10008.1.2.4.51",  # extended 12 bit
        "1.2.840.10008.1.2.4.57",  # lossless
        "1.2.840.10008.1.2.4.70",  # lossless, first-order prediction
    }
)
JPEG_LS_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
J2K_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",  # Part 2 multi-component (the same codestream syntax)
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
    }
)
STRIPPED_SYNTAXES = JPEG_SYNTAXES | JPEG_LS_SYNTAXES | J2K_SYNTAXES

_ADVICE = (
    "; the frame cannot be cleaned of embedded metadata, so it is not sent: export the instance "
    "again from its source (uncompressed or re-encoded) and de-identify that"
)


class CodestreamError(ValueError):
    """A frame this module does not understand (the message says what, never the content)."""

    def __init__(self, what: str) -> None:
        super().__init__(what + _ADVICE)
        self.what = what


@dataclass(frozen=True)
class Stripped:
    """A frame without its metadata, and how many of each kind of segment were removed."""

    data: bytes
    removed: dict[str, int] = field(default_factory=dict)


def strip(frame: bytes, transfer_syntax: str) -> Stripped:
    """`frame` without comments, application segments, file-format boxes and trailing bytes;
    a syntax not in `STRIPPED_SYNTAXES` is returned unchanged."""
    if transfer_syntax in JPEG_SYNTAXES:
        return _strip_jpeg(frame, jpeg_ls=False)
    if transfer_syntax in JPEG_LS_SYNTAXES:
        return _strip_jpeg(frame, jpeg_ls=True)
    if transfer_syntax in J2K_SYNTAXES:
        return _strip_j2k(frame)
    return Stripped(frame)


# --- JPEG and JPEG-LS ----------------------------------------------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
_APP0, _APP8, _APP14, _APP15 = 0xE0, 0xE8, 0xEE, 0xEF
# the end of entropy-coded data: a marker, i.e. 0xFF followed by neither a stuffed 0x00 nor a
# restart marker (JPEG), or by a byte with its high bit set other than a restart (JPEG-LS,
# whose bit stuffing clears the high bit of the byte after 0xFF)
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_JPEG_LS_SCAN_END = re.compile(rb"\xff[\x80-\xcf\xd8-\xff]")
_JFIF_FIELDS = 14  # "JFIF", version, units, densities, thumbnail width and height
_ADOBE_FIELDS = 12  # "Adobe", version, flags0, flags1, transform
_MRFX_FIELDS = 5  # "mrfx", transform


def _kept_application(code: int, payload: bytes, jpeg_ls: bool) -> bytes | None:
    """The payload of an application segment decoding needs (cut to its fixed fields)."""
    if code == _APP0 and payload.startswith(b"JFIF\0") and len(payload) >= _JFIF_FIELDS:
        return payload[: _JFIF_FIELDS - 2] + b"\0\0"  # no thumbnail
    if code == _APP14 and payload.startswith(b"Adobe") and len(payload) >= _ADOBE_FIELDS:
        return payload[:_ADOBE_FIELDS]
    if jpeg_ls and code == _APP8 and payload.startswith(b"mrfx") and len(payload) >= _MRFX_FIELDS:
        return payload[:_MRFX_FIELDS]
    return None


def _strip_jpeg(frame: bytes, *, jpeg_ls: bool) -> Stripped:
    name = "JPEG-LS" if jpeg_ls else "JPEG"
    if not frame.startswith(b"\xff\xd8"):
        raise CodestreamError(f"a frame does not start with the {name} start-of-image marker")
    scan_end = _JPEG_LS_SCAN_END if jpeg_ls else _JPEG_SCAN_END
    out = [b"\xff\xd8"]
    removed: Counter[str] = Counter()
    size, at = len(frame), 2
    while True:
        if at + 1 >= size:
            raise CodestreamError(f"a {name} frame ends before its end-of-image marker")
        if frame[at] != 0xFF:
            raise CodestreamError(f"a {name} frame has data where a marker must be")
        if frame[at + 1] == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        code = frame[at + 1]
        if code == _EOI:
            out.append(b"\xff\xd9")
            at += 2
            break
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # TEM, RSTn: no length
            out.append(frame[at : at + 2])
            at += 2
            continue
        if code in (0x00, _SOI):
            raise CodestreamError(f"a {name} frame holds a marker out of place")
        if at + 4 > size:
            raise CodestreamError(f"a {name} frame ends inside a marker segment")
        (length,) = struct.unpack_from(">H", frame, at + 2)
        end = at + 2 + length
        if length < 2 or end > size:
            raise CodestreamError(f"a {name} marker segment runs past the end of its frame")
        if code == _COM or _APP0 <= code <= _APP15:
            payload = frame[at + 4 : end]
            kept = _kept_application(code, payload, jpeg_ls) if code != _COM else None
            if kept is None:
                removed["COM" if code == _COM else f"APP{code - _APP0}"] += 1
            else:
                out.append(bytes((0xFF, code)) + struct.pack(">H", len(kept) + 2) + kept)
                if kept != payload:
                    removed[f"APP{code - _APP0} extra bytes"] += 1
        else:
            out.append(frame[at:end])
        at = end
        if code == _SOS:  # entropy-coded data follows, up to the next marker
            found = scan_end.search(frame, at)
            end = found.start() if found is not None else size
            out.append(frame[at:end])
            at = end
            if found is None:  # no EOI: decoders end the scan at the frame's end, so do we
                break
    if frame[at:].strip(b"\0"):
        removed["bytes after the end of image"] += 1
    return Stripped(b"".join(out), dict(removed))


# --- JPEG 2000 -----------------------------------------------------------------------------

_J2K_SOC, _J2K_SOT, _J2K_SOD, _J2K_EOC = 0xFF4F, 0xFF90, 0xFF93, 0xFFD9
_J2K_COM, _J2K_SIZ, _J2K_TLM = 0xFF64, 0xFF51, 0xFF55
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _j2k_segment(frame: bytes, at: int) -> tuple[int, int]:
    """(marker, end) of the marker segment at `at`."""
    if at + 4 > len(frame):
        raise CodestreamError("a JPEG 2000 codestream ends inside a header")
    marker, length = struct.unpack_from(">HH", frame, at)
    end = at + 2 + length
    if marker >> 8 != 0xFF or length < 2 or end > len(frame):
        raise CodestreamError("a JPEG 2000 header holds a malformed marker segment")
    return marker, end


def _strip_j2k(frame: bytes) -> Stripped:
    removed: Counter[str] = Counter()
    if frame.startswith(_JP2_SIGNATURE):
        frame, boxes = _unwrap_jp2(frame)
        removed["JP2 boxes"] += boxes
    if not frame.startswith(b"\xff\x4f\xff\x51"):
        raise CodestreamError("a frame does not start with the JPEG 2000 SOC and SIZ markers")
    out = [frame[:2]]
    at, tlm = 2, False
    while at + 2 <= len(frame) and struct.unpack_from(">H", frame, at)[0] != _J2K_SOT:
        marker, end = _j2k_segment(frame, at)
        if marker == _J2K_COM:
            removed["COM"] += 1
        else:
            out.append(frame[at:end])
            tlm = tlm or marker == _J2K_TLM
        at = end
    parts = 0
    while True:
        if parts and not frame[at:].strip(b"\0"):  # no EOC after the last tile-part: as
            break  # decoders do, the codestream ends there
        if at + 2 > len(frame):
            raise CodestreamError("a JPEG 2000 codestream ends before its first tile-part")
        (marker,) = struct.unpack_from(">H", frame, at)
        if marker == _J2K_EOC:
            out.append(frame[at : at + 2])
            at += 2
            break
        if marker != _J2K_SOT:
            raise CodestreamError("a JPEG 2000 codestream has data where a tile-part must start")
        at = _tile_part(frame, at, out, removed, tlm)
        parts += 1
    if frame[at:].strip(b"\0"):
        removed["bytes after the end of codestream"] += 1
    return Stripped(b"".join(out), dict(removed))


def _tile_part(frame: bytes, at: int, out: list[bytes], removed: Counter[str], tlm: bool) -> int:
    """Copy the tile-part at `at` to `out` without COM segments; where the next one starts."""
    marker, sot_end = _j2k_segment(frame, at)
    if sot_end - at != 12:
        raise CodestreamError("a JPEG 2000 tile-part header (SOT) has the wrong length")
    (psot,) = struct.unpack_from(">I", frame, at + 6)
    kept: list[bytes] = []
    cut, pos = 0, sot_end
    while True:
        if pos + 2 > len(frame):
            raise CodestreamError("a JPEG 2000 tile-part ends before its SOD marker")
        if struct.unpack_from(">H", frame, pos)[0] == _J2K_SOD:
            pos += 2
            break
        marker, end = _j2k_segment(frame, pos)
        if marker == _J2K_COM:
            cut += end - pos
            removed["COM"] += 1
        else:
            kept.append(frame[pos:end])
        pos = end
    if psot == 0:  # the last tile-part: up to the EOC marker (or the frame's end)
        end = frame.rfind(b"\xff\xd9", pos)
        end = end if end >= 0 else len(frame)
    else:
        end = at + psot
        if end > len(frame) or end < pos:
            raise CodestreamError("a JPEG 2000 tile-part's length (Psot) runs past its frame")
    if cut and tlm:
        raise CodestreamError(
            "a JPEG 2000 tile-part header holds a comment and the main header a TLM marker "
            "listing tile-part lengths"
        )
    out.append(frame[at : sot_end - 6] + struct.pack(">I", psot - cut if psot else 0))
    out.append(frame[sot_end - 2 : sot_end])
    out.extend(kept)
    out.append(b"\xff\x93")
    out.append(frame[pos:end])
    return end


def _unwrap_jp2(frame: bytes) -> tuple[bytes, int]:
    """The contiguous codestream of a JP2 file, and how many other boxes it had."""
    at, boxes = 0, 0
    while at + 8 <= len(frame):
        length, kind = struct.unpack_from(">I4s", frame, at)
        header = 8
        if length == 1:
            if at + 16 > len(frame):
                break
            (length,) = struct.unpack_from(">Q", frame, at + 8)
            header = 16
        elif length == 0:
            length = len(frame) - at
        if length < header or at + length > len(frame):
            break
        if kind == b"jp2c":
            return frame[at + header : at + length], boxes
        boxes += 1
        at += length
    raise CodestreamError("a JP2 file in a frame has no whole contiguous codestream box")
