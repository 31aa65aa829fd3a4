"""The learned text detector as the scrubber's second stage (netdetect.py, policy `learned`).

The model is not in the repository: `scripts/setup.sh` (and so CI) puts it in the cache with
tools/fetch_text_model.py; without it the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deidentify.pixels import PixelPolicy, RuleSet, netdetect, networker, scrub
from deidentify.pixels.netdetect import TextRegion
from deidentify.pixels.ocr import Box
from deidentify.pixels.screen import learned_boxes
from deidentify.pixels.scrub import ScrubResult
from tests.factories.burned_text import ANATOMY, Burn, Sample, anatomy, burn, installed_fonts

POLICY = PixelPolicy(rules=RuleSet(), ocr_enabled=False)  # every detected line blanked
needs_model = pytest.mark.skipif(
    not netdetect.is_available(), reason=f"{netdetect.unavailable_reason()}"
)
needs_fonts = pytest.mark.skipif(
    len(installed_fonts()) < 3, reason="Debian fonts (fonts-dejavu-core, fonts-liberation) missing"
)


def _faint_mr() -> Sample:
    """MR abdomen with three 16 px texts at 15 % contrast (noise as a third of the corpus has):
    the classical detector misses the birth date in its light label box and half of the
    vertical ID, and finds part of the name (so "auto" runs the learned stage on the frame)."""
    specs = [
        Burn("DOB 17/03/1962", 243, 207, height=16, contrast=0.15, font="DejaVuSansMono.ttf",
             inverted=True),
        Burn("8812345670", 373, 44, height=16, contrast=0.15,
             font="LiberationSansNarrow-Regular.ttf", angle=90.0),
        Burn("QUIGLEY, ROSALIND", 76, 265, height=16, contrast=0.15,
             font="LiberationMono-Regular.ttf", antialias=False),
    ]  # fmt: skip
    return burn(anatomy("mr_abdomen"), specs, noise=0.01, seed=153)


def _blanked_shares(sample: Sample, result: ScrubResult) -> list[float]:
    assert result.dataset is not None, result.reason
    blanked = np.zeros(sample.boxes[0].ink.shape, bool)
    for box in result.boxes.get(0, []):
        blanked[box.top : box.bottom, box.left : box.right] = True
    return [float(blanked[t.ink].mean()) for t in sample.boxes]


@needs_model
@needs_fonts
def test_faint_text_the_classical_detector_misses_is_blanked_by_the_learned_stage() -> None:
    sample = _faint_mr()
    classical = _blanked_shares(sample, scrub(sample.ds, replace(POLICY, learned="off")))
    assert max(classical[:2]) < 0.5, "the classical detector now finds them: pick a harder case"
    result = scrub(sample.ds, POLICY)  # the default: learned = "auto"
    assert result.learned_frames == 1 and result.learned_regions >= 2
    assert min(_blanked_shares(sample, result)[:2]) >= 0.98  # the date and the ID, whole
    out = result.dataset
    assert out is not None and out.BurnedInAnnotation == "NO"


def _thin_mr() -> Sample:
    """MR abdomen (MONOCHROME1, noise) with three 7 px texts at 30 % contrast in a thin font:
    the classical detector finds the vertical date, not the horizontal one over the liver."""
    specs = [
        Burn("17-MAR-1962", 299, 202, height=7, contrast=0.3, font="NimbusMonoPS-Regular.otf",
             angle=90.0),
        Burn("17-MAR-1962", 335, 58, height=7, contrast=0.3, font="DejaVuSans-ExtraLight.ttf"),
        Burn("8812345670", 90, 124, height=7, contrast=0.3, font="DejaVuSans-ExtraLight.ttf",
             angle=-12.0),
    ]  # fmt: skip
    return burn(anatomy("mr_abdomen"), specs, noise=0.01, monochrome1=True, seed=21)


@needs_model
@needs_fonts
def test_small_thin_text_over_anatomy_is_found_after_fine_local_equalisation() -> None:
    """CLAHE in 16 x 16 tiles at clip 4 (not 8 x 8 at 2) before the network: the date's
    strokes stand out against the liver only in small tiles."""
    sample = _thin_mr()
    coarse = replace(POLICY.net, clahe=2.0, clahe_tiles=8)
    before = _blanked_shares(sample, scrub(sample.ds, replace(POLICY, net=coarse)))
    assert before[1] < 0.5, "the coarse equalisation now finds it: pick a harder case"
    after = _blanked_shares(sample, scrub(sample.ds, POLICY))
    assert after[1] >= 0.98


@needs_model
def test_no_learned_cost_on_a_frame_without_text_under_auto() -> None:
    sample = burn(anatomy("ct_head"), [])
    result = scrub(sample.ds, POLICY)
    assert result.learned_frames == 0 and not result.pixels_changed


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    missing = tmp_path / "models" / netdetect.MODEL_NAME
    monkeypatch.setenv(netdetect.MODEL_ENV, str(missing))
    netdetect._reset()
    yield missing
    monkeypatch.undo()
    netdetect._reset()


@needs_fonts
def test_without_the_model_auto_falls_back_to_the_classical_detector_and_says_so(
    no_model: Path,
) -> None:
    reason = netdetect.unavailable_reason()
    assert reason is not None and "fetch_text_model.py" in reason
    sample = _faint_mr()
    result = scrub(sample.ds, POLICY)
    assert result.dataset is not None, result.reason
    assert any("learned text detector unavailable" in note for note in result.notes)
    classical = scrub(sample.ds, replace(POLICY, learned="off"))
    assert result.learned_frames == 0 and result.pixels_changed
    assert _blanked_shares(sample, result) == _blanked_shares(sample, classical)


def test_without_the_model_every_frame_quarantines(no_model: Path) -> None:
    no_model.parent.mkdir()
    no_model.write_bytes(b"not the pinned model")  # a wrong file is as good as none
    assert "not the pinned one" in str(netdetect.unavailable_reason())
    result = scrub(burn(anatomy("ct_head"), []).ds, replace(POLICY, learned="every-frame"))
    assert result.quarantined and "learned = every-frame" in str(result.reason)


def test_an_unknown_learned_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="learned must be one of"):
        PixelPolicy(learned="sometimes")


@needs_model
@needs_fonts
def test_a_network_failure_falls_back_under_auto_and_quarantines_under_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(*_: object) -> list[netdetect.TextRegion]:
        raise netdetect.NetFailed("the text detection network failed: Fail")

    monkeypatch.setattr("deidentify.pixels.screen.find_regions", fails)
    sample = _faint_mr()
    result = scrub(sample.ds, POLICY)
    assert result.dataset is not None and any("network failed" in n for n in result.notes)
    result = scrub(sample.ds, replace(POLICY, learned="every-frame"))
    assert result.quarantined and "failed" in str(result.reason)


@needs_model
@needs_fonts
def test_a_killed_worker_falls_back_or_quarantines_and_the_next_frame_gets_a_fresh_one() -> None:
    sample = _faint_mr()
    assert scrub(sample.ds, POLICY).learned_regions >= 2
    for learned in ("auto", "every-frame"):
        pid = networker.worker_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # as the OOM killer or a crash in native code would
        result = scrub(sample.ds, replace(POLICY, learned=learned))
        if learned == "auto":
            assert result.dataset is not None and result.learned_regions == 0
            assert any("worker died" in note for note in result.notes)
        else:
            assert result.quarantined and "worker died" in str(result.reason)
        again = scrub(sample.ds, POLICY)  # a new worker
        assert again.learned_regions >= 2 and networker.worker_pid() not in (None, pid)
    assert "onnxruntime" not in sys.modules  # the network ran in the worker only


@needs_model
@needs_fonts
def test_a_frame_the_worker_does_not_answer_in_time_falls_back_and_stops_that_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = _faint_mr()
    assert scrub(sample.ds, POLICY).learned_regions >= 2  # a worker is up
    stuck = networker.worker_pid()
    monkeypatch.setattr(networker, "FRAME_TIMEOUT", 0.0001)  # no frame is answered this fast
    result = scrub(sample.ds, POLICY)
    assert result.dataset is not None and any("took more than" in n for n in result.notes)
    assert stuck is not None and not Path(f"/proc/{stuck}").exists()  # killed, not left behind
    monkeypatch.undo()
    assert scrub(sample.ds, POLICY).learned_regions >= 2


def test_tiles_cover_a_side_with_overlap_and_end_flush() -> None:
    params = netdetect.DEFAULT_NET
    assert netdetect.tile_starts(500, params) == [0]  # smaller than a tile: one, padded
    starts = netdetect.tile_starts(2048, params)
    step = params.tile - params.tile_overlap
    assert starts[0] == 0 and starts[-1] == 2048 - params.tile
    assert all(b - a <= step for a, b in itertools.pairwise(starts))  # overlapping


def test_only_frames_the_whole_frame_resize_would_shrink_are_tiled() -> None:
    params = netdetect.DEFAULT_NET
    assert netdetect.tiled_scale(512, 512, params) is None  # a CT slice: upscaled whole
    assert netdetect.tiled_scale(1024, 768, params) is None  # a cine frame: about its size
    assert netdetect.tiled_scale(2560, 2048, params) == params.tile_scale  # a radiograph
    huge = netdetect.tiled_scale(12000, 12000, params)  # a scanned page: fewer, coarser tiles
    assert huge is not None and huge < params.tile_scale
    assert netdetect.tile_count(12000, 12000, huge, params) <= params.max_tiles


@needs_model
@needs_fonts
def test_text_on_a_radiograph_sized_frame_is_found_in_tiles() -> None:
    """A 2048 x 2048 frame (MR anatomy as a CR): resized whole for the network, its 16 px text
    at 30 % contrast shrinks to 6 px and the last line's end is missed (by the classical
    detector too); in tiles at the frame's own scale the network blanks it whole."""
    from PIL import Image

    from tests.factories.burned_text import Anatomy

    mr = anatomy("mr_abdomen")
    image = Image.fromarray(mr.pixels.astype(np.float32), mode="F").resize(
        (2048, 2048), Image.Resampling.BICUBIC
    )
    pixels = np.clip(np.asarray(image), mr.pixels.min(), mr.pixels.max()).astype(np.int32)
    specs = [
        Burn("Rosalind Quigley", 669, 1117, height=16, contrast=0.3, font="DejaVuSans-Bold.ttf"),
        Burn("2024-06-11 14:32", 346, 1501, height=16, contrast=0.3,
             font="LiberationMono-Regular.ttf", angle=-12.0, antialias=False),
        Burn("F 62Y Quigley R", 38, 96, height=16, contrast=0.3, font="DejaVuSans.ttf"),
        Burn("F 62Y Quigley R", 462, 798, height=16, contrast=0.3, font="DejaVuSans.ttf",
             antialias=False),
    ]  # fmt: skip
    sample = burn(Anatomy("cr_abdomen", pixels, "CR"), specs, seed=9)
    whole = replace(POLICY, net=replace(netdetect.DEFAULT_NET, tile_below=0.0))
    assert min(_blanked_shares(sample, scrub(sample.ds, whole))) < 0.98, "pick a harder case"
    result = scrub(sample.ds, POLICY)  # the default: auto, tiled
    assert result.learned_frames == 1
    assert min(_blanked_shares(sample, result)) >= 0.98


def _radiograph(specs: list[Burn]) -> Sample:
    from PIL import Image

    from tests.factories.burned_text import Anatomy

    spine = anatomy("ct_spine")
    image = Image.fromarray(spine.pixels.astype(np.float32), mode="F").resize(
        (2048, 2048), Image.Resampling.BICUBIC
    )
    pixels = np.clip(np.asarray(image), spine.pixels.min(), spine.pixels.max()).astype(np.int32)
    return burn(Anatomy("dx_spine", pixels, "DX"), specs, seed=3)


@needs_model
def test_auto_looks_at_a_whole_radiograph_even_where_the_classical_screen_found_nothing() -> None:
    """One radiograph-sized frame without a line the classical screen finds: "auto" runs the
    learned stage on it anyway (one frame per instance, affordable), and a clean frame stays
    as it was."""
    sample = _radiograph([])
    classical = scrub(sample.ds, replace(POLICY, learned="off"))
    assert classical.text_lines == 0 and classical.learned_frames == 0
    result = scrub(sample.ds, POLICY)
    assert result.learned_frames == 1 and not result.pixels_changed


@needs_model
def test_auto_still_skips_text_free_frames_of_a_stack_of_large_frames(tmp_path: Path) -> None:
    """Three radiograph-sized frames (a tomosynthesis-like stack) without text, scrubbed in
    batches of one frame: "auto" keeps to the frames where the classical screen found a line
    (the batches know the instance's frame count), so the network does not run at all."""
    from pydicom.uid import generate_uid

    from deidentify.engine import PseudonymKeys
    from deidentify.instance import PixelStage, deidentify_instance, under
    from deidentify.profile import Option, Profile

    frame = _radiograph([]).ds
    stack = frame.copy()
    stack.NumberOfFrames = 3
    stack.PixelData = frame.PixelData * 3
    stack.StudyInstanceUID, stack.SeriesInstanceUID = generate_uid(), generate_uid()
    src = tmp_path / "stack.dcm"
    stack.save_as(src, enforce_file_format=True)
    profile = Profile(Profile.basic().options | {Option.CLEAN_PIXEL_DATA})
    written = deidentify_instance(
        src, under(tmp_path / "out"), profile, PseudonymKeys(b"k" * 32),
        pixels=PixelStage(POLICY, None),
    )  # fmt: skip
    assert written.scrubbed is not None
    assert written.scrubbed.learned_frames == 0 and not written.scrubbed.pixels_changed


def _region(left: float, top: float, right: float, bottom: float, grow: float) -> TextRegion:
    def corners(a: float, b: float, c: float, d: float) -> np.ndarray:
        return np.array([[a, b], [c, b], [c, d], [a, d]], np.float32)

    return TextRegion(
        corners(left - grow, top - grow, right + grow, bottom + grow),
        0.9,
        corners(left, top, right, bottom),
    )


def test_a_learned_region_is_blanked_unless_the_classical_blanks_hold_all_of_its_core() -> None:
    """The classical line stopped a letter short of the network's region (96 % of its core
    inside the blanked words): the region is blanked; a region wholly inside them is not."""
    region = _region(100, 50, 200, 60, 4)
    short = [Box(100, 50, 97, 11)]  # the core (columns 100-200) but its last 4 columns
    whole = [Box(98, 48, 104, 14)]
    covered = POLICY.net.covered
    assert learned_boxes([region], [], short, 300, 200, covered) == region.boxes(300, 200)
    assert learned_boxes([region], [], whole, 300, 200, covered) == []


@needs_model
@pytest.mark.parametrize("name", sorted(ANATOMY))
def test_the_learned_stage_finds_no_text_in_text_free_anatomy(name: str) -> None:
    """Every frame through the network (learned = every-frame), no text burned in: no region
    (the finer equalisation made a 25 x 47 px blob of the NM whole body's legs a region of
    aspect 1.9; regions must be twice as long as thick)."""
    sample = burn(anatomy(name), [])
    result = scrub(sample.ds, replace(POLICY, learned="every-frame"))
    assert result.learned_frames == 1
    assert result.learned_regions == 0
    assert not result.pixels_changed
