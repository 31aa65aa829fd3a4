"""Generated test images with known text at known places (never real data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from deidentify.pixels.ocr import Box, Gray8, OcrWord

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_DIRS = (
    FONT_DIR,  # fonts-dejavu-core, fonts-dejavu-extra
    Path("/usr/share/fonts/truetype/liberation"),  # fonts-liberation
    Path("/usr/share/fonts/truetype/freefont"),  # fonts-freefont-ttf
    Path("/usr/share/fonts/opentype/urw-base35"),  # fonts-urw-base35
)
FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf")
# Other Debian font packages, so recall is not measured on one family only (skipped if absent)
MORE_FONTS = (
    "LiberationSans-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "LiberationSansNarrow-Regular.ttf",
    "FreeSans.ttf",
    "FreeSerif.ttf",
    "FreeMono.ttf",
    "FreeSansBold.ttf",
    "NimbusSans-Regular.otf",
    "NimbusMonoPS-Regular.otf",
)

NAME = "QUIGLEY^ROSALIND"
PATIENT_ID = "8812345670"
BIRTH = "19620317"
STUDY = "20240611"


@dataclass(frozen=True)
class Text:
    text: str
    x: int
    y: int
    size: int = 16
    identifying: bool = True
    font: str = FONTS[0]
    label: str = ""  # drawn before the text, not identifying (e.g. "ID")


@dataclass
class Drawn:
    ds: Dataset
    boxes: list[tuple[Box, bool]] = field(default_factory=list)  # (box, identifying)


def font_path(name: str) -> Path | None:
    for directory in FONT_DIRS:
        if (directory / name).exists():
            return directory / name
    return None


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = font_path(name)
    if path is None:
        raise FileNotFoundError(f"font {name} is not installed")
    return ImageFont.truetype(str(path), size)


def fonts_available(names: Sequence[str] = FONTS) -> bool:
    return all(font_path(f) is not None for f in names)


def installed_fonts(names: Sequence[str] = FONTS + MORE_FONTS) -> tuple[str, ...]:
    return tuple(f for f in names if font_path(f) is not None)


def draw_texts(
    image: Image.Image, texts: Sequence[Text], fill: int | tuple[int, int, int]
) -> list[tuple[Box, bool]]:
    draw = ImageDraw.Draw(image)
    boxes = []

    def ink(x: int, y: int, text: str, f: ImageFont.FreeTypeFont) -> Box:
        """The tight box of the pixels the text actually paints."""
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).text((x, y), text, fill=255, font=f)
        left, top, right, bottom = mask.getbbox() or (x, y, x, y)
        return Box(left, top, right - left, bottom - top)

    for t in texts:
        f = font(t.font, t.size)
        x = t.x
        if t.label:
            draw.text((x, t.y), t.label, fill=fill, font=f)
            boxes.append((ink(x, t.y, t.label, f), False))
            x = int(draw.textlength(t.label + " ", font=f)) + t.x
        draw.text((x, t.y), t.text, fill=fill, font=f)
        boxes.append((ink(x, t.y, t.text, f), t.identifying))
    return boxes


def background(rows: int, columns: int, *, light: bool, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A smooth anatomy-like gradient with mild noise (no text)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns]
    blob = 60 * np.exp(
        -(((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - columns / 2) / (columns / 3)) ** 2)
    )
    base = (200 - blob) if light else (20 + blob)
    return np.clip(base + rng.normal(0, 4, (rows, columns)), 0, 255).astype(np.uint8)


def base_dataset(
    rows: int,
    columns: int,
    *,
    modality: str = "OT",
    frames: int | None = None,
    sop_class: str = SecondaryCaptureImageStorage,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH
    ds.StudyDate = STUDY
    ds.InstitutionName = "Marlow Creek Infirmary"
    ds.Manufacturer = "Acme Imaging"
    ds.Rows, ds.Columns = rows, columns
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def set_pixels(ds: Dataset, arr: npt.NDArray[np.generic], photometric: str, bits: int) -> None:
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3 if arr.shape[-1] == 3 and photometric in ("RGB", "YBR_FULL") else 1
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if arr.dtype == np.uint8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = arr.tobytes()


# Identifying banner used across tests: all four corners plus a harmless label in the middle.
def corner_texts(rows: int, columns: int, size: int, font_name: str = FONTS[0]) -> list[Text]:
    pad = 6
    return [
        Text("QUIGLEY, ROSALIND", pad, pad, size, True, font_name),
        Text(PATIENT_ID, columns - 12 * size, pad, size, True, font_name, label="ID"),
        Text("17/03/1962", pad, rows - size - 2 * pad, size, True, font_name, label="DOB"),
        Text("2024-06-11 14:32", columns - 11 * size, rows - size - 2 * pad, size, True, font_name),
        Text("AXIAL", columns // 2 - 2 * size, rows // 2, size, False, font_name),
    ]


def banner_texts(rows: int, columns: int, size: int, font_name: str = FONTS[0]) -> list[Text]:
    """A second layout with other formats: labels with colons, a month-name date, a 12-hour
    time, the institution, a value on the left edge; one text per row so nothing overlaps."""
    pad, line = 6, size + size // 2
    f = font(font_name, size)

    def right(text: str) -> int:
        return max(columns - pad - int(f.getlength(text)), pad)

    when = "11.06.2024 2:32:05 PM"
    place = "Marlow Creek Infirmary"
    return [
        Text("Rosalind Quigley", pad, pad, size, True, font_name, label="Name:"),
        Text(place, right(place), pad + line, size, True, font_name),
        Text("8812345670", pad, rows // 3, size, True, font_name, label="MRN:"),
        Text("17-MAR-1962", pad, rows - 2 * line - pad, size, True, font_name, label="DOB:"),
        Text(when, right(when), rows - line - pad, size, True, font_name),
        Text("L12-5 Liver", columns // 2 - 3 * size, rows // 2, size, False, font_name),
    ]


def mono_image(
    rows: int = 480,
    columns: int = 640,
    *,
    texts: Sequence[Text] = (),
    light_on_dark: bool = True,
    frames: int = 1,
    bits: int = 8,
    photometric: str = "MONOCHROME2",
    modality: str = "OT",
    seed: int = 0,
) -> Drawn:
    stack = []
    boxes: list[tuple[Box, bool]] = []
    for f in range(frames):
        img = Image.fromarray(background(rows, columns, light=not light_on_dark, seed=seed + f))
        boxes = draw_texts(img, texts, 255 if light_on_dark else 0)
        stack.append(np.asarray(img))
    arr8 = np.stack(stack)
    if bits > 8:
        arr: npt.NDArray[np.generic] = (arr8.astype(np.uint16) << (bits - 8)).astype(np.uint16)
    else:
        arr = arr8
    if photometric == "MONOCHROME1":
        arr = (arr.max() - arr).astype(arr.dtype)
    ds = base_dataset(rows, columns, modality=modality, frames=frames if frames > 1 else None)
    set_pixels(ds, arr if frames > 1 else arr[0], photometric, bits)
    return Drawn(ds, boxes)


def rgb_image(
    rows: int = 480,
    columns: int = 640,
    *,
    texts: Sequence[Text] = (),
    frames: int = 1,
    color: tuple[int, int, int] = (255, 230, 80),
    modality: str = "US",
    regions: Box | None = None,
    seed: int = 0,
) -> Drawn:
    stack = []
    boxes: list[tuple[Box, bool]] = []
    for f in range(frames):
        gray = background(rows, columns, light=False, seed=seed + f)
        img = Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
        boxes = draw_texts(img, texts, color)
        stack.append(np.asarray(img))
    arr = np.stack(stack)
    sop = UltrasoundMultiFrameImageStorage if frames > 1 else SecondaryCaptureImageStorage
    ds = base_dataset(
        rows, columns, modality=modality, frames=frames if frames > 1 else None, sop_class=sop
    )
    set_pixels(ds, arr if frames > 1 else arr[0], "RGB", 8)
    if regions is not None:
        item = Dataset()
        item.RegionLocationMinX0, item.RegionLocationMinY0 = regions.left, regions.top
        item.RegionLocationMaxX1 = regions.right - 1
        item.RegionLocationMaxY1 = regions.bottom - 1
        item.RegionSpatialFormat = 1
        item.RegionDataType = 1
        ds.SequenceOfUltrasoundRegions = DicomSequence([item])
    return Drawn(ds, boxes)


class FakeOcr:
    """Reads the words it was told about wherever their box still shows any contrast.

    `sticky` words are read no matter what (an OCR that keeps seeing text: second-pass failure).
    """

    name = "fake"

    def __init__(
        self,
        words: Sequence[tuple[str, Box]] = (),
        *,
        available: bool = True,
        sticky: Sequence[tuple[str, Box]] = (),
    ) -> None:
        self.words = list(words)
        self.sticky = list(sticky)
        self.available = available
        self.calls: list[int] = []

    def is_available(self) -> bool:
        return self.available

    def unavailable_reason(self) -> str:
        return "" if self.available else "fake-ocr is not installed: apt-get install fake-ocr"

    def read(self, images: Sequence[Gray8]) -> list[list[OcrWord]]:
        self.calls.append(len(images))
        pages = []
        for image in images:
            page = []
            for text, box in self.words:
                b = box.clip(image.shape[1], image.shape[0])
                if b is None:
                    continue
                patch = image[b.top : b.bottom, b.left : b.right]
                if int(patch.max()) - int(patch.min()) > 40:
                    page.append(OcrWord(text, box, 90.0))
            page.extend(OcrWord(text, box, 90.0) for text, box in self.sticky)
            pages.append(page)
        return pages
