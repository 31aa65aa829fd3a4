"""Pixel data in and out: decode every frame with pydicom's backends, write back without loss.

Decoding normalises colour so the scrubber only sees MONOCHROME1, MONOCHROME2 or RGB:
YBR_FULL, YBR_FULL_422, YBR_ICT/RCT (decoded by pydicom as RGB) and PALETTE COLOR (expanded
through its lookup table) become RGB, and the output says so. Writing back uses Explicit VR
Little Endian, or the source's own lossless syntax when an encoder for it is installed (RLE,
JPEG-LS lossless, JPEG 2000 lossless); nothing is ever re-encoded lossily. Lossy Image
Compression keeps the history of a lossy source ("01" stays "01"; a lossy syntax without the
attribute gets "01" and its method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.pixels.utils import set_pixel_data as _set_pixel_data
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from deidentify.pixels.ocr import Gray8

Frames = npt.NDArray[np.generic]  # (frames, rows, columns) or (frames, rows, columns, 3)

MONO1, MONO2, RGB, PALETTE = "MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"
LOSSLESS_REENCODABLE = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})
_LOSSY_METHOD = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
    HTJ2K: "ISO_15444_15",
}
_NATIVE = frozenset(
    {
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        UID("1.2.840.10008.1.2"),
        UID("1.2.840.10008.1.2.2"),
    }
)
_PALETTE_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "AlphaPaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "SegmentedAlphaPaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)  # fmt: skip


class PixelError(Exception):
    """Pixel data cannot be decoded or written; the message names the syntax and what is missing.

    Never carries pixel values or header values."""


@dataclass
class Decoded:
    """Every frame of an instance, colour normalised."""

    frames: Frames
    photometric: str  # MONOCHROME1, MONOCHROME2 or RGB
    bits_stored: int
    source_syntax: UID
    source_photometric: str

    @property
    def count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def rows(self) -> int:
        return int(self.frames.shape[1])

    @property
    def columns(self) -> int:
        return int(self.frames.shape[2])


def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        raise PixelError("the dataset has no Transfer Syntax UID; cannot tell how to decode it")
    return UID(str(uid))


def decode(ds: Dataset) -> Decoded:
    """Decode all frames. Raises `PixelError` when a decoder is missing or decoding fails."""
    if "PixelData" not in ds:
        raise PixelError("no Pixel Data (Float/Double Float Pixel Data are not supported)")
    syntax = transfer_syntax(ds)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise PixelError(f"no pixel decoder exists for {syntax.name}") from exc
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise PixelError(f"no pixel decoder available for {syntax.name}: install {missing}")
    source_pi = str(ds.get("PhotometricInterpretation", "")).strip()
    try:
        arr, meta = decoder.as_array(ds, as_rgb=True)  # type: ignore[arg-type]
    except Exception as exc:  # plugins raise many types; none of them may let data through
        raise PixelError(f"decoding {syntax.name} failed ({type(exc).__name__})") from exc
    photometric = str(meta.get("photometric_interpretation", source_pi))
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(meta.get("samples_per_pixel", ds.get("SamplesPerPixel", 1)) or 1)
    shape = (frames_n, int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
    try:
        arr = arr.reshape(shape)
    except ValueError as exc:
        raise PixelError("decoded pixel data does not match Rows x Columns x frames") from exc
    bits_stored = int(meta.get("bits_stored", ds.get("BitsStored", 8)) or 8)
    if photometric == PALETTE:
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise PixelError(f"palette lookup failed ({type(exc).__name__})") from exc
        photometric = RGB
        bits_stored = 8 if arr.dtype == np.uint8 else 16
    elif photometric.startswith("YBR"):
        if photometric not in ("YBR_FULL", "YBR_FULL_422"):
            raise PixelError(f"photometric interpretation {photometric} is not supported")
        arr = convert_color_space(arr, "YBR_FULL", RGB, per_frame=True)
        photometric = RGB
    if photometric not in (MONO1, MONO2, RGB):
        raise PixelError(f"photometric interpretation {photometric or '(none)'} is not supported")
    if arr.dtype.kind not in "ui":
        raise PixelError("only integer pixel data can be scrubbed")
    return Decoded(arr, photometric, bits_stored, syntax, source_pi)


def render_gray8(frame: Frames, photometric: str) -> Gray8:
    """An 8-bit view of one frame (full range, MONOCHROME1 inverted to display polarity)."""
    if frame.ndim == 3:
        if photometric == RGB:  # the brightest channel; ndarray.max(axis=2) is ~10x slower
            data = np.maximum(np.maximum(frame[..., 0], frame[..., 1]), frame[..., 2])
        else:
            data = frame[..., 0]
    else:
        data = frame
    lo, hi = int(data.min()), int(data.max())
    if data.dtype == np.uint8 and lo >= 0:
        out = data.astype(np.uint8, copy=True)
        if hi > lo and (lo > 0 or hi < 255):
            out = ((data.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    elif hi == lo:
        out = np.zeros(data.shape, np.uint8)
    else:
        out = ((data.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if photometric == MONO1:
        out = 255 - out
    return out


def rgb8(frame: Frames, photometric: str) -> npt.NDArray[np.uint8]:
    """An 8-bit RGB view of one frame, for previews."""
    if frame.ndim == 3 and photometric == RGB:
        if frame.dtype == np.uint8:
            return np.ascontiguousarray(frame, dtype=np.uint8)
        scale = 255.0 / max(int(frame.max()), 1)
        return (frame.astype(np.float32) * scale).astype(np.uint8)
    gray = render_gray8(frame, photometric)
    return np.repeat(gray[..., None], 3, axis=2)


def fill_value(frame: Frames, photometric: str) -> int | tuple[int, ...]:
    """The value that displays black: the frame minimum (maximum for MONOCHROME1)."""
    if photometric == RGB:
        return (0, 0, 0)
    return int(frame.max()) if photometric == MONO1 else int(frame.min())


def output_syntax(source: UID, requested: str | None) -> UID:
    """Where to write: `requested`, else the source's lossless syntax if encodable, else EVRLE."""
    if requested is not None:
        uid = UID(requested)
        if uid != ExplicitVRLittleEndian and uid not in LOSSLESS_REENCODABLE:
            raise PixelError(f"{uid.name} is not a lossless output syntax")
        return uid
    if source in LOSSLESS_REENCODABLE and _encodable(source):
        return source
    return ExplicitVRLittleEndian


def _encodable(uid: UID) -> bool:
    try:
        return bool(get_encoder(uid).is_available)
    except NotImplementedError:
        return False


def write(ds: Dataset, decoded: Decoded, syntax: UID) -> None:
    """Replace Pixel Data of `ds` (a copy the caller owns) with `decoded.frames` in `syntax`."""
    had_frames = "NumberOfFrames" in ds
    # JPEG baseline/extended are always lossy; J2K and near-lossless JPEG-LS may have been used
    # reversibly, so an existing Lossy Image Compression value is trusted for them.
    source = decoded.source_syntax
    always_lossy = source in (JPEGBaseline8Bit, JPEGExtended12Bit)
    mark_lossy = source in _LOSSY_METHOD and (always_lossy or "LossyImageCompression" not in ds)
    if decoded.source_photometric == PALETTE:
        for keyword in _PALETTE_KEYWORDS:
            if keyword in ds:
                del ds[keyword]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "PixelData" in ds:
        del ds["PixelData"]
    # one frame is given as one image (pydicom's encoders refuse a (1, rows, columns) array),
    # Number of Frames is put back below when the instance had it
    arr = decoded.frames if decoded.count > 1 else decoded.frames[0]
    try:
        _set_pixel_data(
            ds, arr, decoded.photometric, decoded.bits_stored, generate_instance_uid=False
        )
    except (ValueError, TypeError) as exc:
        raise PixelError(f"cannot write pixel data ({type(exc).__name__})") from exc
    if had_frames:
        ds.NumberOfFrames = decoded.count
    if syntax != ExplicitVRLittleEndian:
        if not _encodable(syntax):
            raise PixelError(f"no encoder available for {syntax.name}")
        try:
            ds.compress(syntax, arr, generate_instance_uid=False)
        except Exception as exc:
            raise PixelError(f"encoding {syntax.name} failed ({type(exc).__name__})") from exc
        if had_frames:
            ds.NumberOfFrames = decoded.count
    if mark_lossy and str(ds.get("LossyImageCompression", "")) != "01":
        ds.LossyImageCompression = "01"
        raw = ds.get("LossyImageCompressionMethod", None)
        methods = [
            str(m)
            for m in (raw if isinstance(raw, MultiValue | list | tuple) else [raw] if raw else [])
        ]
        method = _LOSSY_METHOD[source]
        if method not in methods:
            methods.append(method)
        ds.LossyImageCompressionMethod = methods if len(methods) > 1 else methods[0]


def is_native(syntax: UID) -> bool:
    return syntax in _NATIVE
