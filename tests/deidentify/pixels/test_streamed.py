"""Large native multi-frame instances are scrubbed a batch of frames at a time, file to file,
with the same result as scrubbing the whole instance at once, and fail closed."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from deidentify.instance_file import write_streamed
from deidentify.pixels import PixelPolicy, RuleSet, netdetect, scrub
from deidentify.pixels.frames import PixelError, decode
from deidentify.pixels.streamed import StreamPlan, patch_pixels, scrub_streamed
from tests.deidentify.pixels.synth import Drawn, corner_texts, mono_image, rgb_image
from tests.deidentify.pixels.test_netdetect import _faint_mr, needs_fonts

NO_OCR = PixelPolicy(rules=RuleSet(), learned="off")  # the detector blanks every text line
# (the classical one: the learned stage has its own tests, test_netdetect.py)


def _save(drawn: Drawn, path: Path, *, modality: str = "CT", blank: tuple[int, ...] = ()) -> Path:
    """Write the instance; frames in `blank` lose their text (only some frames carry it)."""
    ds = drawn.ds
    ds.Modality = modality
    ds.BurnedInAnnotation = "NO"  # says NO, yet frames carry text: every frame is screened
    if blank:
        frames = decode(ds).frames.copy()
        clean = mono_image(int(ds.Rows), int(ds.Columns), frames=1).ds
        for index in blank:
            frames[index] = decode(clean).frames[0].astype(frames.dtype)
        ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _whole(path: Path, policy: PixelPolicy) -> Dataset:
    result = scrub(dcmread(path), policy, None)
    assert result.dataset is not None, result.reason
    return result.dataset


def _streamed(path: Path, tmp: Path, policy: PixelPolicy, batch_frames: int) -> Dataset:
    ds = dcmread(path, defer_size=1024)
    frame_bytes = (
        int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    )
    plan = StreamPlan.of(ds, from_bytes=0, batch_bytes=batch_frames * frame_bytes)
    assert plan is not None and plan.batch == batch_frames
    pixels = tmp / "pixels.bin"
    result = scrub_streamed(ds, path, plan, pixels, policy, None)
    assert result.dataset is not None, result.reason
    target = tmp / "out.dcm"
    assert write_streamed(result.dataset, target, path)  # original frames copied, then patched
    patch_pixels(target, pixels)
    return dcmread(target)


@pytest.mark.parametrize("batch_frames", [1, 3, 7])
def test_batches_give_the_same_instance_as_the_whole_scrub(
    tmp_path: Path, batch_frames: int
) -> None:
    texts = corner_texts(192, 256, 12)
    drawn = mono_image(192, 256, texts=texts, frames=9, bits=12)
    path = _save(drawn, tmp_path / "mf.dcm", blank=(1, 4, 5))
    whole = _whole(path, NO_OCR)
    streamed = _streamed(path, tmp_path, NO_OCR, batch_frames)
    assert streamed.PixelData == whole.PixelData
    assert bytes(streamed.PixelData) != bytes(dcmread(path).PixelData)  # text was blanked
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                    "NumberOfFrames", "BurnedInAnnotation"):  # fmt: skip
        assert streamed.get(keyword) == whole.get(keyword), keyword
    frames = decode(streamed).frames
    for box, identifying in drawn.boxes:
        if identifying:
            for index in (0, 2, 8):  # every frame that carried the text
                region = frames[index, box.top : box.bottom, box.left : box.right]
                assert int(region.max()) == int(region.min()), (index, box)


@pytest.mark.skipif(not netdetect.is_available(), reason=f"{netdetect.unavailable_reason()}")
@needs_fonts
def test_batches_match_the_whole_scrub_with_the_learned_stage_too(tmp_path: Path) -> None:
    """The default policy (learned = auto) blanks what the network finds beyond the classical
    detector: batch by batch, the same pixels as the whole instance."""
    sample = _faint_mr().ds  # faint text only the learned stage blanks whole
    frame = decode(sample).frames[0]
    clean = np.zeros_like(frame) + frame.min()
    sample.NumberOfFrames = 3
    sample.PixelData = np.stack([frame, clean, frame]).tobytes()
    path = tmp_path / "mf.dcm"
    sample.save_as(path, enforce_file_format=True)
    learned = replace(NO_OCR, learned="auto")
    whole = scrub(dcmread(path), learned, None)
    assert whole.dataset is not None and whole.learned_frames == 2, whole.notes
    classical = _whole(path, NO_OCR)
    assert whole.dataset.PixelData != classical.PixelData  # the network's regions count here
    assert _streamed(path, tmp_path, learned, 1).PixelData == whole.dataset.PixelData


def test_rgb_cine_in_batches_matches_too(tmp_path: Path) -> None:
    drawn = rgb_image(120, 160, texts=corner_texts(120, 160, 10), frames=6, modality="XA")
    path = _save(drawn, tmp_path / "cine.dcm", modality="XA")
    policy = replace(NO_OCR, ocr_modalities=frozenset())  # XA: no OCR by modality
    whole = _whole(path, policy)
    assert _streamed(path, tmp_path, policy, 4).PixelData == whole.PixelData


def _peak_scrubbing(tmp: Path, frames: int) -> tuple[int, int]:
    rng = np.random.default_rng(7)
    ds = mono_image(512, 512, frames=1, bits=16).ds
    ds.NumberOfFrames = frames
    ds.PixelData = rng.integers(0, 4000, (frames, 512, 512), dtype=np.uint16).tobytes()
    ds.Modality = "CT"
    path = tmp / f"big-{frames}.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds
    deferred = dcmread(path, defer_size=1024)
    plan = StreamPlan.of(deferred, from_bytes=0, batch_bytes=2 * 512 * 512 * 2)
    assert plan is not None
    tracemalloc.start()
    result = scrub_streamed(deferred, path, plan, tmp / f"pixels-{frames}.bin", NO_OCR, None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.dataset is not None
    return peak, path.stat().st_size


def test_memory_stays_at_a_batch_whatever_the_instance_size(tmp_path: Path) -> None:
    """Python allocations while scrubbing in 2-frame batches: the same for 16 frames (8 MiB)
    as for 80 frames (40 MiB), and well below the larger instance's size."""
    small, _ = _peak_scrubbing(tmp_path, 16)
    large, size = _peak_scrubbing(tmp_path, 80)
    assert large < small * 1.3, f"{small / 2**20:.1f} MiB -> {large / 2**20:.1f} MiB"
    assert large < size / 3, f"peak {large / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB instance"


def test_eligibility_is_explicit(tmp_path: Path) -> None:
    drawn = mono_image(64, 64, frames=3)
    path = _save(drawn, tmp_path / "small.dcm")
    deferred = dcmread(path, defer_size=1024)
    assert StreamPlan.of(deferred) is None  # below the size where streaming pays
    assert StreamPlan.of(deferred, from_bytes=0) is not None
    assert StreamPlan.of(dcmread(path), from_bytes=0) is None  # Pixel Data already in memory
    single = mono_image(64, 64).ds
    single.save_as(tmp_path / "one.dcm", enforce_file_format=True)
    assert StreamPlan.of(dcmread(tmp_path / "one.dcm", defer_size=64), from_bytes=0) is None


def test_a_pixels_file_that_does_not_match_is_refused(tmp_path: Path) -> None:
    drawn = mono_image(64, 64, frames=3)
    path = _save(drawn, tmp_path / "mf.dcm")
    target = tmp_path / "copy.dcm"
    target.write_bytes(path.read_bytes())
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"\0" * 100)
    with pytest.raises(PixelError, match="does not match"):
        patch_pixels(target, wrong)
    assert target.read_bytes() == path.read_bytes()  # nothing written
