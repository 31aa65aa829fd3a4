"""Decode every photometric / bit depth / syntax we claim, write back without loss."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from deidentify.pixels.frames import PixelError, decode, output_syntax, render_gray8, write
from tests.deidentify.pixels.synth import base_dataset, mono_image, rgb_image, set_pixels


def _available(uid: str) -> bool:
    try:
        return bool(get_encoder(uid).is_available)
    except NotImplementedError:
        return False


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_mono_round_trip(bits: int, photometric: str) -> None:
    drawn = mono_image(64, 80, bits=bits, photometric=photometric, frames=3)
    decoded = decode(drawn.ds)
    assert decoded.frames.shape == (3, 64, 80) and decoded.photometric == photometric
    decoded.frames[1, :5, :5] = 0
    out = drawn.ds.copy()
    write(out, decoded, ExplicitVRLittleEndian)
    again = decode(out)
    assert np.array_equal(again.frames, decoded.frames)
    assert out.NumberOfFrames == 3 and out.BitsStored == bits


def test_signed_16_bit() -> None:
    ds = base_dataset(8, 8)
    arr = (np.arange(64, dtype=np.int16).reshape(8, 8) - 1000).astype(np.int16)
    set_pixels(ds, arr, "MONOCHROME2", 16)
    decoded = decode(ds)
    assert decoded.frames.dtype == np.int16 and int(decoded.frames.min()) == -1000


def test_ybr_full_and_422_become_rgb() -> None:
    rgb = rgb_image(16, 16).ds
    arr = decode(rgb).frames[0]
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(arr, "RGB", "YBR_FULL")
    ds = base_dataset(16, 16)
    set_pixels(ds, ybr, "YBR_FULL", 8)
    decoded = decode(ds)
    assert decoded.photometric == "RGB"
    assert np.abs(decoded.frames[0].astype(int) - arr.astype(int)).max() <= 3

    ds422 = base_dataset(16, 16)
    set_pixels(ds422, ybr, "YBR_FULL", 8)
    # 4:2:2 subsampled native layout: Y1 Y2 Cb Cr for each pair of pixels
    y, cb, cr = ybr[..., 0], ybr[..., 1], ybr[..., 2]
    packed = np.stack([y[:, 0::2], y[:, 1::2], cb[:, 0::2], cr[:, 0::2]], axis=-1)
    ds422.PixelData = packed.astype(np.uint8).tobytes()
    ds422.PhotometricInterpretation = "YBR_FULL_422"
    decoded = decode(ds422)
    assert decoded.photometric == "RGB" and decoded.frames.shape == (1, 16, 16, 3)
    out = ds422.copy()
    write(out, decoded, ExplicitVRLittleEndian)
    assert out.PhotometricInterpretation == "RGB" and out.SamplesPerPixel == 3


def test_palette_color_becomes_rgb_and_the_lut_goes() -> None:
    ds = base_dataset(4, 4)
    set_pixels(ds, np.arange(16, dtype=np.uint8).reshape(4, 4), "PALETTE COLOR", 8)
    for color, scale in (("Red", 1), ("Green", 2), ("Blue", 3)):
        setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [256, 0, 16])
        lut = (np.arange(256, dtype=np.int64) * 256 * scale // 4) % 65536
        setattr(ds, f"{color}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
    decoded = decode(ds)
    assert decoded.photometric == "RGB" and decoded.frames.shape == (1, 4, 4, 3)
    out = ds.copy()
    write(out, decoded, ExplicitVRLittleEndian)
    assert out.PhotometricInterpretation == "RGB"
    assert "RedPaletteColorLookupTableData" not in out


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_lossless_sources_stay_in_their_syntax(syntax: str) -> None:
    if not _available(syntax):
        pytest.skip(f"no encoder for {syntax}")
    drawn = mono_image(32, 48, bits=12, frames=2)
    ds = drawn.ds
    original = decode(ds).frames.copy()
    ds.compress(syntax, generate_instance_uid=False)
    decoded = decode(ds)
    assert np.array_equal(decoded.frames, original)
    decoded.frames[:, :4, :4] = 0
    target = output_syntax(decoded.source_syntax, None)
    assert target == syntax
    out = ds.copy()
    write(out, decoded, target)
    assert out.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(decode(out).frames, decoded.frames)
    assert "LossyImageCompression" not in out


def test_jpeg_baseline_is_written_uncompressed_and_marked_lossy() -> None:
    rgb = rgb_image(32, 32).ds
    arr = decode(rgb).frames[0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    ds = base_dataset(32, 32)
    set_pixels(ds, arr, "RGB", 8)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    decoded = decode(ds)
    assert decoded.photometric == "RGB"
    assert output_syntax(decoded.source_syntax, None) == ExplicitVRLittleEndian
    out = ds.copy()
    write(out, decoded, ExplicitVRLittleEndian)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.PhotometricInterpretation == "RGB"
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"


def test_missing_transfer_syntax_or_decoder_is_an_error_naming_it() -> None:
    ds = mono_image(8, 8).ds
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    with pytest.raises(PixelError, match="MPEG2"):
        decode(ds)
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(PixelError, match="Transfer Syntax"):
        decode(ds)


def test_lossy_output_syntax_is_refused() -> None:
    with pytest.raises(PixelError, match="lossless"):
        output_syntax(RLELossless, JPEGBaseline8Bit)


def test_an_rgb_frame_renders_as_its_brightest_channel() -> None:
    """Text drawn in any one colour must reach the detector: the 8-bit view of an RGB frame
    is the brightest of its channels at each pixel (full range)."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[5:10, 5:40, 0] = 200  # red text
    frame[20:25, 5:40, 1] = 120  # green text
    frame[30:35, 5:40, 2] = 250  # blue text
    frame[40:45, 5:40] = (30, 90, 60)  # a dull mixed colour
    gray = render_gray8(frame, "RGB")
    expected = frame.max(axis=2).astype(np.float32) * (255.0 / 250.0)
    assert gray.dtype == np.uint8 and gray.shape == (48, 64)
    assert np.array_equal(gray, expected.astype(np.uint8))
    assert gray[7, 10] == 204 and gray[22, 10] == 122 and gray[32, 10] == 255
    assert gray[42, 10] == 91 and gray[0, 0] == 0
