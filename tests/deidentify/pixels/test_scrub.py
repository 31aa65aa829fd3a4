"""The scrubber core with a fake OCR backend: what is blanked, what is removed, fail-closed."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RLELossless

from deidentify.pixels import PixelPolicy, RuleSet, parse_rules, scrub
from deidentify.pixels.frames import decode
from deidentify.pixels.ocr import Box
from tests.deidentify.pixels.synth import (
    NAME,
    PATIENT_ID,
    FakeOcr,
    Text,
    corner_texts,
    mono_image,
    rgb_image,
)

NO_RULES = PixelPolicy(rules=RuleSet(), learned="off")  # the learned stage: test_netdetect.py


def _fake_for(boxes: list[tuple[Box, bool]], texts: list[Text]) -> FakeOcr:
    words = []
    for t in texts:
        if t.label:
            words.append(t.label)
        words.append(t.text)
    return FakeOcr([(w, box) for w, (box, _) in zip(words, boxes, strict=True)])


def _check_clean(
    before: np.ndarray, after: np.ndarray, boxes: list[tuple[Box, bool]], margin: int = 3
) -> float:
    """Identifying boxes fully blanked; returns the fraction of pixels outside them unchanged."""
    outside = np.ones(before.shape[:2], bool)
    for box, identifying in boxes:
        region = after[box.top : box.bottom, box.left : box.right]
        if identifying:
            assert int(region.max()) == int(region.min()), f"text left in {box}"
            g = box.grow(margin)
            outside[max(g.top, 0) : g.bottom, max(g.left, 0) : g.right] = False
    same = np.all(before == after, axis=-1) if before.ndim == 3 else before == after
    return float(same[outside].mean())


def test_identifying_text_is_blanked_and_the_rest_untouched() -> None:
    texts = corner_texts(480, 640, 16)
    drawn = mono_image(texts=texts)
    ocr = _fake_for(drawn.boxes, texts)
    result = scrub(drawn.ds, NO_RULES, ocr)
    assert result.reason is None and result.dataset is not None
    before, after = decode(drawn.ds).frames[0], decode(result.dataset).frames[0]
    assert _check_clean(before, after, drawn.boxes) >= 0.98
    label_box = drawn.boxes[-1][0]  # "AXIAL" is not identifying: kept
    assert np.array_equal(
        before[label_box.top : label_box.bottom], after[label_box.top : label_box.bottom]
    )
    assert result.dataset.BurnedInAnnotation == "NO"
    assert result.ocr_complete and result.blanked_box_count >= 4
    assert drawn.ds.PixelData != result.dataset.PixelData  # input untouched, output new
    assert NAME.split("^")[0] not in repr(result) and PATIENT_ID not in repr(result)


def test_every_frame_of_a_multiframe_is_read_and_blanked() -> None:
    texts = corner_texts(240, 320, 12)
    drawn = rgb_image(240, 320, texts=texts, frames=5)
    ocr = _fake_for(drawn.boxes, texts)
    result = scrub(drawn.ds, NO_RULES, ocr)
    assert result.dataset is not None and result.ocr_frames == (0, 1, 2, 3, 4)
    assert sorted(result.boxes) == [0, 1, 2, 3, 4]
    before, after = decode(drawn.ds).frames, decode(result.dataset).frames
    for i in range(5):
        assert _check_clean(before[i], after[i], drawn.boxes) >= 0.98
    assert result.dataset.NumberOfFrames == 5


def test_compressed_input_is_scrubbed_and_stays_lossless() -> None:
    texts = corner_texts(240, 320, 12)
    drawn = mono_image(240, 320, texts=texts, bits=12, frames=2)
    ds = drawn.ds
    ds.compress(RLELossless, generate_instance_uid=False)
    result = scrub(ds, NO_RULES, _fake_for(drawn.boxes, texts))
    assert result.dataset is not None
    assert result.dataset.file_meta.TransferSyntaxUID == RLELossless
    before, after = decode(ds).frames, decode(result.dataset).frames
    assert _check_clean(before[1], after[1], drawn.boxes) >= 0.98


def test_unavailable_ocr_quarantines_with_the_install_hint() -> None:
    drawn = mono_image(texts=corner_texts(480, 640, 16))
    result = scrub(drawn.ds, NO_RULES, FakeOcr(available=False))
    assert result.quarantined and result.dataset is None
    assert "apt-get install fake-ocr" in (result.reason or "")
    assert scrub(drawn.ds, NO_RULES, None).quarantined


def test_missing_decoder_quarantines() -> None:
    drawn = mono_image(texts=corner_texts(480, 640, 16))
    drawn.ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    result = scrub(drawn.ds, NO_RULES, FakeOcr())
    assert result.quarantined and "MPEG2" in (result.reason or "")


def test_second_pass_finding_quarantines_with_a_preview() -> None:
    texts = corner_texts(480, 640, 16)
    drawn = mono_image(texts=texts)
    ocr = _fake_for(drawn.boxes, texts)
    ocr.sticky = [("QUIGLEY", Box(300, 300, 60, 16))]  # OCR keeps reading the name
    result = scrub(drawn.ds, NO_RULES, ocr)
    assert result.quarantined and result.dataset is None
    assert "second OCR pass" in (result.reason or "") and "QUIGLEY" not in (result.reason or "")
    assert result.preview is not None
    assert result.preview.before_png.startswith(b"\x89PNG")
    assert result.preview.after_png.startswith(b"\x89PNG")


def test_region_rules_blank_every_frame_and_every_frame_is_screened() -> None:
    drawn = mono_image(64, 64, frames=3, modality="CT")
    drawn.ds.BurnedInAnnotation = "NO"
    drawn.ds.InstanceNumber = 5
    rules = parse_rules(
        '[[rule]]\nname="corner"\nmatch.Modality="CT"\nblank=[{x=0,y=0,width=10,height=10}]'
    )
    policy = PixelPolicy(rules=rules)
    ocr = FakeOcr()
    result = scrub(drawn.ds, policy, ocr)
    assert result.dataset is not None and result.rules == ["corner"]
    frames = decode(result.dataset).frames
    for i in range(3):
        assert int(frames[i, :10, :10].max()) == int(frames[i].min())
    # nothing text-like on the frames: OCR is not run, but every frame was screened
    assert result.ocr_frames == () and ocr.calls == [] and result.ocr_complete
    assert result.dataset.BurnedInAnnotation == "NO"


def test_ultrasound_keeps_only_its_regions() -> None:
    region = Box(40, 60, 200, 150)
    drawn = rgb_image(240, 320, regions=region, texts=[Text("Liver", 100, 100, 14, False)])
    # "Liver" is text: kept only because OCR reads it and the site allows the word
    policy = NO_RULES.with_allowed_words(["liver"])
    result = scrub(drawn.ds, policy, FakeOcr([("Liver", drawn.boxes[0][0])]))
    assert result.dataset is not None, result.reason
    before, after = decode(drawn.ds).frames[0], decode(result.dataset).frames[0]
    inside = (slice(region.top, region.bottom), slice(region.left, region.right))
    assert np.array_equal(before[inside], after[inside])
    mask = np.ones(after.shape[:2], bool)
    mask[inside] = False
    assert int(after[mask].max()) == 0
    # without the site's word the same text is blanked
    blanked = scrub(drawn.ds, NO_RULES, FakeOcr([("Liver", drawn.boxes[0][0])]))
    assert blanked.dataset is not None and blanked.boxes


def test_ultrasound_regions_can_be_kept_by_policy() -> None:
    drawn = rgb_image(120, 160, regions=Box(10, 10, 50, 50))
    policy = PixelPolicy(rules=RuleSet(), ultrasound_regions_only=False, learned="off")
    result = scrub(drawn.ds, policy, FakeOcr())
    assert result.dataset is not None and not result.pixels_changed
    assert result.dataset.PixelData == drawn.ds.PixelData


def test_overlays_and_icons_are_removed() -> None:
    drawn = mono_image(32, 32, modality="CT")
    ds = drawn.ds
    ds.add_new(0x60000010, "US", 32)
    ds.add_new(0x60000011, "US", 32)
    ds.add_new(0x60003000, "OW", b"\xff" * 128)
    ds.add_new(0x60020010, "US", 32)
    icon = Dataset()
    icon.Rows = 8
    ds.IconImageSequence = DicomSequence([icon])
    item = Dataset()
    item.IconImageSequence = DicomSequence([icon])
    ds.ReferencedImageSequence = DicomSequence([item])
    result = scrub(ds, NO_RULES, FakeOcr())
    out = result.dataset
    assert out is not None
    assert not [e for e in out if 0x6000 <= e.tag.group <= 0x601E]
    assert "IconImageSequence" not in out
    assert "IconImageSequence" not in out.ReferencedImageSequence[0]
    assert 0x60003000 in ds  # the input is not modified


@pytest.mark.parametrize(
    "modality, burned, number, frames, expected",
    [
        ("US", "NO", 1, 1, (0,)),
        ("CT", "YES", 7, 1, (0,)),
        ("CT", None, 7, 1, ()),
        ("CT", None, 17, 1, ()),
        ("MR", "NO", None, 1, ()),
        ("MG", None, 3, 1, (0,)),
        ("MG", "NO", 3, 1, ()),
        ("CT", None, 1, 40, ()),
    ],
)
def test_ocr_plan_reads_whole_frames_where_text_is_usual_and_screens_everything(
    modality: str, burned: str | None, number: int | None, frames: int, expected: tuple[int, ...]
) -> None:
    """OCR reads whole frames only where burned-in text is usual; nothing is sampled: the
    detector screens every frame of the rest (the plan is complete) and OCR reads its lines."""
    ds = Dataset()
    ds.Modality = modality
    if burned:
        ds.BurnedInAnnotation = burned
    if number is not None:
        ds.InstanceNumber = number
    plan = PixelPolicy(rules=RuleSet()).ocr_plan(ds, frames)
    assert plan.frames == expected and plan.complete


def test_no_ocr_and_no_rules_leaves_pixels_alone() -> None:
    drawn = mono_image(32, 32, modality="CT")
    drawn.ds.BurnedInAnnotation = "NO"
    drawn.ds.InstanceNumber = 2
    ocr = FakeOcr()
    result = scrub(drawn.ds, NO_RULES, ocr)
    assert result.dataset is not None and ocr.calls == []
    assert result.dataset.PixelData == drawn.ds.PixelData
