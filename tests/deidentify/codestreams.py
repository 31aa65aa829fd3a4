"""Compressed frames made in code for the codestream tests: JPEG from Pillow (as a modality's
encoder writes it), JPEG-LS and JPEG 2000 from pydicom's encoders, and the metadata a vendor
adds (comments, application segments, JP2 boxes) inserted into them."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"


def image(rows: int = 48, columns: int = 64, *, colour: bool = False, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (rows, columns, 3) if colour else (rows, columns)
    return rng.integers(0, 256, shape).astype(np.uint8)


def jpeg(pixels: np.ndarray, **options: object) -> bytes:
    """A baseline JPEG frame (JFIF) from Pillow; `options` as Pillow's JPEG writer takes them
    (comment, exif, icc_profile, progressive, restart_marker_blocks...)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=85, **options)  # type: ignore[arg-type]
    return out.getvalue()


def encoded(syntax: str, pixels: np.ndarray, bits: int = 12) -> bytes:
    """A monochrome frame encoded by pydicom's encoder for `syntax` (JPEG-LS, JPEG 2000)."""
    rows, columns = pixels.shape
    encoder = get_encoder(syntax)
    return bytes(
        encoder.encode(
            pixels.astype(np.uint16),
            rows=rows,
            columns=columns,
            samples_per_pixel=1,
            bits_allocated=16,
            bits_stored=bits,
            pixel_representation=0,
            photometric_interpretation="MONOCHROME2",
            number_of_frames=1,
        )
    )


def segment(code: int, payload: bytes) -> bytes:
    """A JPEG (or JPEG 2000, `code` > 0xFF) marker segment."""
    marker = struct.pack(">H", code) if code > 0xFF else bytes((0xFF, code))
    return marker + struct.pack(">H", len(payload) + 2) + payload


def jpeg_boundaries(frame: bytes) -> list[int]:
    """Where a marker segment starts in `frame` from after SOI up to the first SOS."""
    at, out = 2, []
    while frame[at + 1] != 0xDA:
        out.append(at)
        at += 2 + struct.unpack_from(">H", frame, at + 2)[0]
    return [*out, at]


def insert(frame: bytes, at: int, data: bytes) -> bytes:
    return frame[:at] + data + frame[at:]


def j2k_with_tile_comment(codestream: bytes, payload: bytes) -> bytes:
    """`codestream` with a COM segment in its first tile-part header (its Psot grown)."""
    sot = codestream.index(b"\xff\x90")
    (psot,) = struct.unpack_from(">I", codestream, sot + 6)
    com = segment(0xFF64, b"\x00\x01" + payload)
    grown = codestream[: sot + 6] + struct.pack(">I", psot + len(com) if psot else 0)
    return grown + codestream[sot + 10 : sot + 12] + com + codestream[sot + 12 :]


def box(kind: bytes, content: bytes) -> bytes:
    return struct.pack(">I", 8 + len(content)) + kind + content


def jp2(codestream: bytes, xml: bytes) -> bytes:
    """`codestream` in a JP2 file wrapper with an XML box."""
    signature = box(b"jP  ", b"\r\n\x87\n")
    file_type = box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
    return signature + file_type + box(b"xml ", xml) + box(b"jp2c", codestream)


def decoded(
    frames: list[bytes], syntax: str, shape: tuple[int, ...], bits: int = 8, photometric: str = ""
) -> np.ndarray:
    """The pixels pydicom decodes from `frames` (one fragment each)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns = shape[0], shape[1]
    ds.SamplesPerPixel = 3 if len(shape) == 3 else 1
    ds.PhotometricInterpretation = photometric or (
        "YBR_FULL_422" if len(shape) == 3 else "MONOCHROME2"
    )
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's note on a mislabelled colour space
        return np.asarray(ds.pixel_array)
