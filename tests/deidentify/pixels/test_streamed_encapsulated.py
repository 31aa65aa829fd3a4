"""Large compressed multi-frame instances are decoded and scrubbed a batch of frames at a time,
with the same output bytes as scrubbing the whole instance at once (lossless syntaxes
re-encoded in their own syntax, lossy ones written uncompressed), through the engine that
`hexchange-deid` and the agent run; memory stays at a batch."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, generate_uid

from deidentify.engine import PseudonymKeys
from deidentify.instance import PixelStage, deidentify_instance
from deidentify.instance_file import write_streamed
from deidentify.pixels import PixelPolicy, RuleSet, scrub
from deidentify.pixels.frames import decode
from deidentify.pixels.streamed_encapsulated import EncapsulatedPlan, scrub_encapsulated
from deidentify.profile import Profile
from tests.deidentify.pixels.synth import Drawn, corner_texts, mono_image, rgb_image

NO_OCR = PixelPolicy(rules=RuleSet(), learned="off")  # the detector blanks every text line
# (the classical one: the learned stage has its own tests, test_netdetect.py)
XA_NO_OCR = PixelPolicy(rules=RuleSet(), ocr_modalities=frozenset(), learned="off")


def _compressed(
    drawn: Drawn, path: Path, syntax: UID, *, modality: str, blank: tuple[int, ...] = ()
) -> Path:
    ds = drawn.ds
    ds.Modality = modality
    ds.BurnedInAnnotation = "NO"  # says NO, yet frames carry text: every frame is screened
    if blank:  # only some frames carry the text
        frames = decode(ds).frames.copy()
        rows, columns = int(ds.Rows), int(ds.Columns)
        clean = decode(mono_image(rows, columns, frames=1, bits=int(ds.BitsStored)).ds)
        for index in blank:
            frames[index] = clean.frames[0].astype(frames.dtype)
        ds.PixelData = frames.tobytes()
    if syntax == JPEGBaseline8Bit:  # no pydicom encoder: Pillow's, as a modality would
        frames = decode(ds).frames
        encoded = []
        for frame in frames:
            out = io.BytesIO()
            Image.fromarray(frame).save(out, "JPEG", quality=95, subsampling=0)
            encoded.append(out.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.compress(syntax, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _whole(path: Path, policy: PixelPolicy) -> Dataset:
    result = scrub(dcmread(path), policy, None)
    assert result.dataset is not None, result.reason
    out = path.with_name("whole.dcm")
    result.dataset.save_as(out, enforce_file_format=True)
    return dcmread(out)


def _streamed(path: Path, tmp: Path, policy: PixelPolicy, batch_frames: int) -> Dataset:
    ds = dcmread(path, defer_size=1024)
    frame_bytes = (
        int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    )
    plan = EncapsulatedPlan.of(ds, from_bytes=0, batch_bytes=batch_frames * frame_bytes)
    assert plan is not None and plan.batch == batch_frames
    pixels = tmp / "pixels.bin"
    result = scrub_encapsulated(ds, path, plan, pixels, policy, None)
    assert result.dataset is not None, result.reason
    target = tmp / "out.dcm"
    source = pixels if result.pixels_changed else path
    assert write_streamed(result.dataset, target, source)
    assert not pixels.with_name("pixels.bin.batches").exists()  # the spill file is gone
    return dcmread(target)


def _same(streamed: Dataset, whole: Dataset) -> None:
    assert streamed.file_meta.TransferSyntaxUID == whole.file_meta.TransferSyntaxUID
    assert bytes(streamed.PixelData) == bytes(whole.PixelData)
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                    "SamplesPerPixel", "NumberOfFrames", "BurnedInAnnotation",
                    "LossyImageCompression", "LossyImageCompressionMethod"):  # fmt: skip
        assert streamed.get(keyword) == whole.get(keyword), keyword


@pytest.mark.parametrize("batch_frames", [1, 3, 4])
def test_rle_batches_are_the_whole_scrub_byte_for_byte(tmp_path: Path, batch_frames: int) -> None:
    """A lossless source stays in its own syntax: changed and unchanged batches re-encoded, with
    a Basic Offset Table over all frames."""
    drawn = mono_image(96, 128, texts=corner_texts(96, 128, 12), frames=8, bits=12)
    path = _compressed(drawn, tmp_path / "rle.dcm", RLELossless, modality="CT", blank=(1, 4, 5))
    whole = _whole(path, NO_OCR)
    streamed = _streamed(path, tmp_path, NO_OCR, batch_frames)
    assert streamed.file_meta.TransferSyntaxUID == RLELossless
    _same(streamed, whole)
    frames = decode(streamed).frames
    for box, identifying in drawn.boxes:
        if identifying:
            for index in (0, 2, 7):  # frames that carried the text
                region = frames[index, box.top : box.bottom, box.left : box.right]
                assert int(region.max()) == int(region.min()), (index, box)


def test_a_lossy_cine_is_written_uncompressed_and_keeps_its_lossy_history(
    tmp_path: Path,
) -> None:
    drawn = rgb_image(96, 128, texts=corner_texts(96, 128, 10), frames=6, modality="XA")
    path = _compressed(drawn, tmp_path / "jpeg.dcm", JPEGBaseline8Bit, modality="XA")
    whole = _whole(path, XA_NO_OCR)
    streamed = _streamed(path, tmp_path, XA_NO_OCR, 4)
    assert streamed.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert streamed.LossyImageCompression == "01"
    _same(streamed, whole)


def test_a_compressed_instance_without_text_keeps_its_pixel_data_as_it_was(
    tmp_path: Path,
) -> None:
    drawn = mono_image(64, 64, frames=5, bits=12)
    path = _compressed(drawn, tmp_path / "clean.dcm", RLELossless, modality="CT")
    streamed = _streamed(path, tmp_path, NO_OCR, 2)
    assert bytes(streamed.PixelData) == bytes(dcmread(path).PixelData)
    assert streamed.file_meta.TransferSyntaxUID == RLELossless


def test_the_engine_streams_a_large_compressed_instance_for_the_agent_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deidentify_instance` takes the batched path for a compressed multi-frame instance (the
    threshold lowered to this small one) and writes what the whole scrub would."""
    import deidentify.pixels.streamed_encapsulated as module

    drawn = mono_image(96, 128, texts=corner_texts(96, 128, 12), frames=6, bits=12)
    drawn.ds.StudyInstanceUID, drawn.ds.SeriesInstanceUID = generate_uid(), generate_uid()
    path = _compressed(drawn, tmp_path / "rle.dcm", RLELossless, modality="CT")
    keys, profile = PseudonymKeys(b"s" * 32), Profile.basic()
    stage = PixelStage(NO_OCR, None)  # type: ignore[arg-type]  # the policy needs no OCR
    whole = deidentify_instance(
        path, lambda *_: tmp_path / "whole" / "w.dcm", profile, keys, pixels=stage
    )
    monkeypatch.setattr(module, "STREAM_FROM_BYTES", 0)
    monkeypatch.setattr(module, "BATCH_BYTES", 96 * 128 * 2 * 2)
    batched = deidentify_instance(
        path, lambda *_: tmp_path / "batched" / "b.dcm", profile, keys, pixels=stage
    )
    assert batched.scrubbed is not None and batched.scrubbed.pixels_changed
    assert batched.path.read_bytes() == whole.path.read_bytes()
    assert not [p for p in tmp_path.rglob("*.frames*")]  # scratch files removed


def _peak(tmp: Path, frames: int) -> tuple[int, int]:
    rng = np.random.default_rng(3)
    ds = mono_image(256, 256, frames=1, bits=16).ds
    ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 4000, (frames, 256, 256), dtype=np.uint16).tobytes()
    ds.Modality = "CT"
    ds.compress(RLELossless, generate_instance_uid=False)
    path = tmp / f"big-{frames}.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds
    deferred = dcmread(path, defer_size=1024)
    plan = EncapsulatedPlan.of(deferred, from_bytes=0, batch_bytes=2 * 256 * 256 * 2)
    assert plan is not None
    tracemalloc.start()
    result = scrub_encapsulated(deferred, path, plan, tmp / f"px-{frames}.bin", NO_OCR, None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.dataset is not None
    return peak, frames * 256 * 256 * 2


def test_memory_stays_at_a_batch_whatever_the_instance_size(tmp_path: Path) -> None:
    small, _ = _peak(tmp_path, 8)
    large, decoded = _peak(tmp_path, 96)
    assert large < small * 1.3, f"{small / 2**20:.1f} MiB -> {large / 2**20:.1f} MiB"
    assert large < decoded / 3, f"peak {large / 2**20:.1f} MiB, decoded {decoded / 2**20:.0f} MiB"
