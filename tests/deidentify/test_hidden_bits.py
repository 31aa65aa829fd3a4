"""Bits of native Pixel Data outside the stored value (an embedded overlay's name drawn into
bits 12-15 of a 12-bit CT): invisible to viewers and to the pixel scrubber, so every
de-identified output clears them, whichever path writes it, and the pixels stay the same."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread

from deidentify import hidden_bits
from deidentify.engine import PseudonymKeys
from deidentify.instance import PixelStage, deidentify_instance, under
from deidentify.pixels import PixelPolicy, RuleSet
from deidentify.profile import Option, Profile
from tests.factories.dicom import make_ct_study

KEYS = PseudonymKeys(b"k" * 32)
BASIC = Profile.basic()
CLEAN_PIXELS = Profile(BASIC.options | {Option.CLEAN_PIXEL_DATA})
POLICY = replace(PixelPolicy(rules=RuleSet(), ocr_enabled=False), learned="off")


def _decoded(words: np.ndarray, bits: hidden_bits.ValueBits) -> np.ndarray:
    """What a decoder makes of each sample: the value bits, sign-extended when signed."""
    value = (words.astype(np.int64) >> bits.low) & ((1 << bits.stored) - 1)
    if bits.signed:
        sign = 1 << (bits.stored - 1)
        value = (value ^ sign) - sign
    return value


layouts = st.sampled_from([8, 16, 32]).flatmap(
    lambda allocated: st.integers(1, allocated - 1).flatmap(
        lambda stored: st.tuples(
            st.just(allocated),
            st.just(stored),
            st.integers(stored - 1, allocated - 1),
            st.booleans(),
        )
    )
)


@settings(max_examples=200, deadline=None)
@given(layout=layouts, data=st.data())
def test_clearing_keeps_every_decoded_value_and_leaves_nothing_else(
    layout: tuple[int, int, int, bool], data: st.DataObject
) -> None:
    allocated, stored, high, signed = layout
    bits = hidden_bits.value_bits(allocated, stored, high, int(signed))
    assert bits is not None
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[allocated]
    raw = data.draw(st.lists(st.integers(0, (1 << allocated) - 1), min_size=1, max_size=64))
    words = np.array(raw, dtype)
    out = hidden_bits.cleared(words, bits)
    assert out.dtype == words.dtype
    assert hidden_bits.any_hidden(words, bits) == (not np.array_equal(out, words))
    assert not hidden_bits.any_hidden(out, bits)
    assert np.array_equal(_decoded(out, bits), _decoded(words, bits))  # same pixels
    # nothing outside the value: the output is what the values alone encode, and stable
    assert np.array_equal(hidden_bits.cleared(out, bits), out)
    below = (1 << bits.low) - 1
    assert not np.any(out.astype(np.int64) & below)
    top = out.astype(np.int64) >> (bits.high + 1)
    if signed:  # above the high bit: copies of the sign bit
        negative = _decoded(out, bits) < 0
        assert np.all(top[negative] == (1 << (allocated - bits.high - 1)) - 1)
        assert np.all(top[~negative] == 0)
    else:
        assert not np.any(top)


def test_layouts_without_unused_bits_are_left_alone() -> None:
    assert hidden_bits.value_bits(16, 16, 15, 0) is None
    assert hidden_bits.value_bits(8, 8, 7, 0) is None
    assert hidden_bits.value_bits(12, 12, 11, 0) is None  # not a size this rewrites
    assert hidden_bits.value_bits(16, 12, 16, 0) is None  # High Bit outside the sample


def _with_overlay_in_high_bits(tmp_path: Path, frames: int = 1) -> tuple[Path, np.ndarray]:
    """A 12-bit CT whose bits 12-15 hold a drawn block (an embedded overlay's text)."""
    path = make_ct_study(tmp_path / "in", instances=1).files[0]
    ds = dcmread(path)
    values = ds.pixel_array.astype(np.uint16) & 0x0FFF
    values = np.repeat(values[None], frames, axis=0) if frames > 1 else values
    mark = np.zeros_like(values)
    mark[..., 10:20, 5:50] = 0b1011
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (values | (mark << 12)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path, values


def _output_words(path: Path) -> np.ndarray:
    ds = dcmread(path)
    return np.frombuffer(ds.PixelData, np.uint16)


@pytest.mark.parametrize(
    ("profile", "pixels", "fast"),
    [
        (BASIC, None, True),  # the fast header path: Pixel Data copied file to file
        (BASIC, None, False),  # the pydicom path
        (CLEAN_PIXELS, PixelStage(POLICY, None), True),  # the pixel scrubber's path
    ],
    ids=["fast-path", "dataset-path", "pixel-stage"],
)
def test_every_de_identified_output_clears_an_embedded_overlay(
    tmp_path: Path, profile: Profile, pixels: PixelStage | None, fast: bool
) -> None:
    src, values = _with_overlay_in_high_bits(tmp_path)
    assert np.any(np.frombuffer(dcmread(src).PixelData, np.uint16) >> 12)  # it is there
    written = deidentify_instance(
        src, under(tmp_path / "out"), profile, KEYS, pixels=pixels, fast=fast
    )
    words = _output_words(written.path)
    assert not np.any(words >> 12), "bits above High Bit survived"
    assert np.array_equal(words, values.ravel())  # the pixels themselves unchanged
    assert any("bits outside the stored value cleared" in n for n in written.notes)


def test_a_large_multi_frame_instance_scrubbed_in_batches_is_cleared_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deidentify.instance
    import deidentify.pixels.streamed

    src, values = _with_overlay_in_high_bits(tmp_path, frames=40)  # 320 KiB of frames
    monkeypatch.setattr(deidentify.pixels.streamed, "STREAM_FROM_BYTES", 64 << 10)
    batches = []
    streamed = deidentify.instance.scrub_streamed

    def spy(*args: object, **kwargs: object) -> object:
        batches.append(1)
        return streamed(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(deidentify.instance, "scrub_streamed", spy)
    written = deidentify_instance(
        src, under(tmp_path / "out"), CLEAN_PIXELS, KEYS, pixels=PixelStage(POLICY, None)
    )
    assert batches, "the instance was not scrubbed in batches"
    words = _output_words(written.path)
    assert not np.any(words >> 12)
    assert np.array_equal(words, values.ravel())


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "dataset-path"])
def test_bytes_after_the_last_frame_are_zeroed(tmp_path: Path, fast: bool) -> None:
    """Pixel Data longer than its frames (a second image appended, invisible to viewers):
    the frames are kept, the rest is zero, the length stays what it was."""
    src = make_ct_study(tmp_path / "in", instances=1).files[0]
    ds = dcmread(src)
    frames = ds.PixelData
    secret = b"QUIGLEY^ROSALIND 8812345670 " * 20
    ds.PixelData = frames + secret + b"\0" * (len(secret) % 2)
    ds.save_as(src, enforce_file_format=True)
    written = deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS, fast=fast)
    out = dcmread(written.path).PixelData
    assert out[: len(frames)] == frames and len(out) == len(ds.PixelData)
    assert not out[len(frames) :].strip(b"\0")
    assert any("bytes after the last frame set to zero" in n for n in written.notes)


def test_clean_pixels_stay_byte_identical(tmp_path: Path) -> None:
    """Nothing hidden: the fast path still copies Pixel Data as it is, and notes nothing."""
    src = make_ct_study(tmp_path / "in", instances=1).files[0]
    before = dcmread(src)
    written = deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS)
    assert dcmread(written.path).PixelData == before.PixelData
    assert not any(n.startswith("pixel-data:") for n in written.notes)


def test_the_hubs_second_check_finds_hidden_bits_an_older_agent_left(tmp_path: Path) -> None:
    """`verify_output` (what the hub runs on every collection instance) reports set bits
    outside the value, and not once they are cleared."""
    from deidentify.verify import verify_output

    src, _values = _with_overlay_in_high_bits(tmp_path)
    written = deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS)
    clean = dcmread(written.path)
    assert "pixel-data-hidden-bits" not in {f.code for f in verify_output(clean, BASIC)}
    words = np.frombuffer(clean.PixelData, np.uint16).copy()
    words[3] |= 0x8000  # one sample's bit 15
    clean.PixelData = words.tobytes()
    found = [f for f in verify_output(clean, BASIC) if f.code == "pixel-data-hidden-bits"]
    assert found and found[0].keyword == "PixelData"
    assert "8812" not in found[0].message  # names attributes, never values
    clean.PixelData = np.frombuffer(dcmread(written.path).PixelData, np.uint16).tobytes() + b"ID"
    assert "pixel-data-hidden-bits" in {f.code for f in verify_output(clean, BASIC)}


def _jpeg_instance(tmp_path: Path, comment: bytes | None) -> Path:
    """A JPEG Baseline CT (8 bits) whose codestream carries `comment` in a COM segment."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    path = make_ct_study(tmp_path / "in", instances=1).files[0]
    ds = dcmread(path)
    pixels = (ds.pixel_array.astype(np.float32) / max(int(ds.pixel_array.max()), 1) * 255).astype(
        np.uint8
    )
    stream = io.BytesIO()
    extra = {"comment": comment} if comment is not None else {}
    Image.fromarray(pixels, mode="L").save(stream, format="JPEG", quality=90, **extra)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = encapsulate([stream.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("pixels", [None, PixelStage(POLICY, None)], ids=["header", "pixel-stage"])
def test_a_jpeg_comment_naming_the_patient_is_removed(
    tmp_path: Path, pixels: PixelStage | None
) -> None:
    """A vendor's JPEG comment with the patient's name is in the compressed Pixel Data's
    bytes, where no header check looks: the output is written without it (its pixels the
    same), on both paths; the search for the name behind it is tested in
    test_codestream_writers.py."""
    profile = CLEAN_PIXELS if pixels is not None else BASIC
    name = str(dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0]).PatientName)
    with_comment = _jpeg_instance(tmp_path / "a", f"Patient {name}".encode())
    written = deidentify_instance(
        with_comment, under(tmp_path / "out"), profile, KEYS, pixels=pixels
    )
    assert name.encode() not in written.path.read_bytes()
    assert any("metadata removed from 1 compressed frames (COM x1)" in n for n in written.notes)
    assert np.array_equal(dcmread(written.path).pixel_array, dcmread(with_comment).pixel_array)
