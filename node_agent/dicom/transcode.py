"""Lossless conversion of a delivered instance for a PACS that refuses its transfer syntax.

The only conversion is decompression to Explicit VR Little Endian (the syntax every storage
SCP must accept), so no pixel value changes beyond what the source's own codec already did;
nothing here ever applies lossy compression. The SOP Instance UID is kept: a change of
transfer syntax is not a new instance (PS3.5 8.2 / PS3.3 C.7.6.1.1.5).

When the source was lossy (JPEG baseline/extended, near-lossless JPEG-LS, irreversible
JPEG 2000), the decompressed instance still says so: Lossy Image Compression stays or becomes
"01", and when the original named no method and ratio, the source's codec and its ratio are
added (PS3.3 C.7.6.1.1.5: once lossy, always flagged).
"""

from __future__ import annotations

import struct

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import decompress
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# syntaxes whose encoding is lossy by definition
_ALWAYS_LOSSY = {
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 and 4)
}
# lossy or lossless: decided from the codestream (JPEG-LS NEAR, JPEG 2000 wavelet)
_JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
_J2K_EITHER = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}

# Lossy Image Compression Method defined terms (PS3.3 C.7.6.1.1.5.1), by syntax family
_METHOD = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    _JPEG_LS_NEAR: "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}


class TranscodeError(Exception):
    """The instance cannot be converted (no decoder for it, or its pixel data is broken)."""


def syntax_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def _first_frame(ds: Dataset) -> bytes:
    number = int(ds.get("NumberOfFrames", 1) or 1)
    return next(generate_frames(ds.PixelData, number_of_frames=number), b"")


def _jpeg_ls_near(frame: bytes) -> int | None:
    """NEAR of the first scan (0: lossless), or None when the stream cannot be read."""
    at = frame.find(b"\xff\xda")  # SOS: Ls(2) Ns(1) Ns x (Ci, Tmi) NEAR(1)
    if at < 0 or at + 5 > len(frame):
        return None
    components = frame[at + 4]
    near_at = at + 5 + 2 * components
    return frame[near_at] if near_at < len(frame) else None


def _j2k_irreversible(frame: bytes) -> bool | None:
    """True for the 9-7 (irreversible) wavelet in the COD marker, None when unreadable."""
    start = frame.find(b"\xff\x4f\xff\x51")  # SOC, SIZ (a JP2 wrapper is skipped this way)
    if start < 0:
        return None
    pos = start + 2
    while pos + 4 <= len(frame):
        marker, length = struct.unpack(">HH", frame[pos : pos + 4])
        if marker == 0xFF52:  # COD: Scod(1) SGcod(4) levels, xcb, ycb, style, transform
            transform_at = pos + 4 + 1 + 4 + 4
            return frame[transform_at] == 0 if transform_at < len(frame) else None
        if marker == 0xFF90:  # SOT: the main header ended without a COD
            return None
        pos += 2 + length
    return None


def source_is_lossy(ds: Dataset) -> bool:
    """Was the pixel data (as it is encoded now, or before) lossy compressed?"""
    if str(ds.get("LossyImageCompression", "")) == "01":
        return True
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax in _ALWAYS_LOSSY:
        return True
    if syntax == _JPEG_LS_NEAR:
        near = _jpeg_ls_near(_first_frame(ds))
        return near is None or near > 0
    if syntax in _J2K_EITHER:
        irreversible = _j2k_irreversible(_first_frame(ds))
        return irreversible is None or irreversible
    return False


def _compressed_bytes(ds: Dataset) -> int:
    number = int(ds.get("NumberOfFrames", 1) or 1)
    return sum(len(f) for f in generate_frames(ds.PixelData, number_of_frames=number))


def decompress_to_explicit_le(ds: Dataset) -> Dataset:
    """Decompress `ds` in place to Explicit VR Little Endian, keeping its SOP Instance UID and
    recording a lossy source in the Lossy Image Compression attributes. Raises TranscodeError."""
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if not UID(syntax).is_compressed:
        return ds
    lossy = source_is_lossy(ds)
    named = "LossyImageCompressionMethod" in ds or "LossyImageCompressionRatio" in ds
    compressed = _compressed_bytes(ds) if lossy and not named else 0
    try:
        decompress(ds, as_rgb=True, generate_instance_uid=False)
    except Exception as exc:  # every decoder plugin raises its own types
        raise TranscodeError(
            f"{syntax_name(syntax)} could not be decompressed ({type(exc).__name__}); "
            "install its decoder (pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls) or "
            "enable that transfer syntax on the PACS"
        ) from exc
    if lossy:
        ds.LossyImageCompression = "01"
        if not named and syntax in _METHOD and compressed:
            ratio = len(ds.PixelData) / compressed
            ds.LossyImageCompressionRatio = f"{ratio:.4g}"
            ds.LossyImageCompressionMethod = _METHOD[syntax]
    return ds
