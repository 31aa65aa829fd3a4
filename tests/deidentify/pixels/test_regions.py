"""Which parts of a frame OCR reads: every ink pixel is inside a crop, flat frames give none."""

from __future__ import annotations

import numpy as np
from PIL import Image

from deidentify.pixels.ocr import Box
from deidentify.pixels.regions import RegionParams, box_mean, crop_regions, ink_mask
from deidentify.pixels.tesseract import _page, line_height
from tests.deidentify.pixels.synth import background, corner_texts, draw_texts, fonts_available


def _page_with_text(light: bool = False) -> tuple[np.ndarray, list[tuple[Box, bool]]]:
    gray = background(480, 640, light=not light, seed=3)
    image = Image.fromarray(gray)
    boxes = draw_texts(image, corner_texts(480, 640, 14), 255 if light else 0)
    return np.asarray(image), boxes


def test_box_mean_matches_a_direct_mean() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    mean = box_mean(image, 3)
    padded = np.pad(image.astype(np.float64), 3, mode="edge")
    for r, c in ((0, 0), (10, 20), (39, 49), (5, 48)):
        assert abs(mean[r, c] - padded[r : r + 7, c : c + 7].mean()) < 1e-3


def test_flat_and_noisy_frames_have_no_crop() -> None:
    assert crop_regions(np.full((100, 120), 90, np.uint8)) == []
    assert crop_regions(background(200, 300, light=True, seed=2)) == []  # gradient + mild noise


def test_every_ink_pixel_is_inside_a_crop_and_crops_are_small() -> None:
    if not fonts_available():
        return
    for light in (True, False):
        image, boxes = _page_with_text(light)
        crops = crop_regions(image)
        assert 1 < len(crops) <= len(boxes)
        covered = np.zeros(image.shape, bool)
        for crop in crops:
            covered[crop.top : crop.bottom, crop.left : crop.right] = True
        assert not (ink_mask(image, 20) & ~covered).any()
        for box, _ in boxes:
            assert covered[box.top : box.bottom, box.left : box.right].all()
        assert covered.mean() < 0.2


def test_a_textured_frame_is_read_whole() -> None:
    rng = np.random.default_rng(0)
    speckle = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    assert crop_regions(speckle) == [Box(0, 0, 400, 300)]
    assert crop_regions(speckle, RegionParams(max_fraction=1.0)) != []


def test_line_height_and_pages() -> None:
    crop = np.full((60, 200), 255, np.uint8)
    crop[10:22, 5:190:3] = 0  # a 12-row line
    crop[40:52, 5:150:3] = 0
    assert line_height(crop) == 12
    assert line_height(np.full((30, 30), 255, np.uint8)) == 0
    image = np.zeros((100, 100), np.uint8)
    page = _page(image, Box(10, 20, 30, 40), 5, 2.0)
    assert page.shape == (100, 80)
    assert page[0, 0] == 255 and page[20, 20] == 0
