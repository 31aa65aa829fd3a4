"""Burn identifying text into real anatomy images, with ground truth: the pixel-scrub corpus.

The anatomy comes from files shipped inside the pydicom wheel (`pydicom/data/test_files`: CT
head and skull slices, a CT spine, MR abdomen and brain, an NM view; read from the installed
package, never downloaded). Onto them `burn` draws text with known boxes and ink masks:

* fonts: the installed Debian fonts (DejaVu, Liberation, FreeFont, URW: sans, serif, mono,
  thin/narrow), skipped when absent;
* text height 7-40 px (ink height of capitals and digits), contrast 15-100 % of the image's
  dynamic range, light on dark or dark on light as the place allows, or "inverted" (dark text
  in a light label box), anti-aliased or not, rotated (any angle), anywhere (over anatomy too);
* then noise, lossy JPEG (the result is an 8-bit image, as a scanned film or a capture is),
  MONOCHROME1 storage.

    sample = burn(anatomy("ct_head"), [Burn("QUIGLEY ROSALIND", 20, 30, height=12)])
    sample.ds, sample.boxes[0].box, sample.boxes[0].ink   # DICOM, ground truth

Everything is deterministic for a given seed. No real patient appears anywhere: the anatomy is
the public pydicom test data, the text is invented.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from deidentify.pixels.frames import decode
from deidentify.pixels.ocr import Box

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# name: (file, modality, size to resample to or None)
ANATOMY = {
    "ct_head": ("693_J2KI.dcm", "CT", None),
    "ct_skull": ("J2K_pixelrep_mismatch.dcm", "CT", None),
    "ct_spine": ("CT_small.dcm", "CT", (512, 512)),
    "mr_abdomen": ("examples_overlay.dcm", "MR", None),
    "mr_brain": ("MR_small.dcm", "MR", (256, 256)),
    "nm_whole_body": ("JPEG2000.dcm", "NM", None),
}
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/truetype/freefont"),
    Path("/usr/share/fonts/opentype/urw-base35"),
)
FONTS = (  # sans, serif, mono, bold, narrow/thin
    "DejaVuSans.ttf", "LiberationSerif-Regular.ttf", "DejaVuSansMono.ttf", "FreeSans.ttf",
    "LiberationSansNarrow-Regular.ttf", "NimbusMonoPS-Regular.otf", "FreeSerif.ttf",
    "DejaVuSans-Bold.ttf", "LiberationMono-Regular.ttf", "NimbusSans-Regular.otf",
    "DejaVuSans-ExtraLight.ttf", "FreeMono.ttf",
)  # fmt: skip
IDENTIFYING = (
    "QUIGLEY, ROSALIND", "8812345670", "DOB 17/03/1962", "2024-06-11 14:32",
    "Marlow Creek Infirmary", "Rosalind Quigley", "ID: 8812345670", "17-MAR-1962",
    "Acc 77340012", "F 62Y Quigley R",
)  # fmt: skip
PATIENT = {
    "PatientName": "QUIGLEY^ROSALIND",
    "PatientID": "8812345670",
    "PatientBirthDate": "19620317",
    "StudyDate": "20240611",
    "InstitutionName": "Marlow Creek Infirmary",
    "AccessionNumber": "77340012",
}


@dataclass(frozen=True)
class Anatomy:
    name: str
    pixels: npt.NDArray[np.int32]  # display polarity (MONOCHROME2), original values
    modality: str


@dataclass(frozen=True)
class Burn:
    text: str
    x: int
    y: int
    height: int = 14  # ink height of capitals/digits, px
    contrast: float = 1.0  # fraction of the image's dynamic range
    font: str = FONTS[0]
    angle: float = 0.0  # degrees, counter-clockwise
    antialias: bool = True
    inverted: bool = False  # dark text in a light label box
    identifying: bool = True


@dataclass(frozen=True)
class Truth:
    box: Box  # tight box of the ink
    ink: npt.NDArray[np.bool_]  # ink pixels (whole frame mask)
    identifying: bool
    spec: Burn


@dataclass
class Sample:
    ds: Dataset
    boxes: list[Truth] = field(default_factory=list)
    anatomy: str = ""


def installed_fonts() -> tuple[str, ...]:
    return tuple(f for f in FONTS if _font_path(f) is not None)


def _font_path(name: str) -> Path | None:
    for directory in FONT_DIRS:
        if (directory / name).exists():
            return directory / name
    return None


@functools.cache
def anatomy(name: str) -> Anatomy:
    """One slice of real anatomy from pydicom's bundled test files (display polarity)."""
    file, modality, size = ANATOMY[name]
    ds = pydicom.dcmread(TEST_FILES / file)
    frame = decode(ds).frames[0].astype(np.int32)
    if size is not None:
        image = Image.fromarray(frame.astype(np.float32), mode="F").resize(
            size[::-1], Image.Resampling.BICUBIC
        )
        frame = np.clip(np.asarray(image), frame.min(), frame.max()).astype(np.int32)
    return Anatomy(name, frame, modality)


@functools.lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = _font_path(name)
    if path is None:
        raise FileNotFoundError(f"font {name} is not installed")
    return ImageFont.truetype(str(path), size)


@functools.lru_cache(maxsize=256)
def font_size_for(name: str, height: int) -> int:
    """The font size whose capitals/digits are `height` px of ink."""
    size = max(height, 4)
    for _ in range(4):
        _, top, _, bottom = _font(name, size).getbbox("H0")
        ink = max(bottom - top, 1)
        size = max(round(size * height / ink), 4)
    return size


def _alpha(spec: Burn) -> npt.NDArray[np.float32]:
    """The text's coverage (0..1) on a tight canvas, rotated."""
    f = _font(spec.font, font_size_for(spec.font, spec.height))
    left, top, right, bottom = f.getbbox(spec.text)
    pad = 2
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "L" if spec.antialias else "1"
    draw.text((pad - left, pad - top), spec.text, fill=255, font=f)
    if spec.angle:
        canvas = canvas.rotate(spec.angle, resample=Image.Resampling.BILINEAR, expand=True)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def burn(
    base: Anatomy,
    specs: list[Burn],
    *,
    noise: float = 0.0,
    jpeg_quality: int | None = None,
    monochrome1: bool = False,
    seed: int = 0,
) -> Sample:
    """`base` with `specs` drawn on it, as a DICOM instance, with the ground truth."""
    rng = np.random.default_rng(seed)
    image = base.pixels.astype(np.float32)
    lo, hi = float(base.pixels.min()), float(base.pixels.max())
    span = max(hi - lo, 1.0)
    rows, columns = image.shape
    truths: list[Truth] = []
    for spec in specs:
        alpha = _alpha(spec)
        h, w = alpha.shape
        x, y = min(max(spec.x, 0), columns - w), min(max(spec.y, 0), rows - h)
        if x < 0 or y < 0:
            raise ValueError(f"text {spec.text!r} at {spec.height}px does not fit the image")
        region = image[y : y + h, x : x + w]
        if spec.inverted:
            label = lo + 0.85 * span
            region[:] = label
            value = label - spec.contrast * 0.85 * span
        else:
            background = float(np.median(region))
            light = background < lo + 0.5 * span
            value = background + (1 if light else -1) * spec.contrast * span
            value = min(max(value, lo), hi)
        region[:] = region * (1 - alpha) + value * alpha
        ink = np.zeros((rows, columns), bool)
        ink[y : y + h, x : x + w] = alpha >= 0.5
        ys, xs = np.nonzero(alpha > 0.1)
        box = Box(x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
        truths.append(Truth(box, ink, spec.identifying, spec))
    if noise:
        image += rng.normal(0.0, noise * span, image.shape).astype(np.float32)
    bits, signed = 16, lo < 0
    if jpeg_quality is not None:
        eight = np.clip((image - lo) * (255.0 / span), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(eight).save(buffer, "JPEG", quality=jpeg_quality)
        image = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32)
        lo, hi, bits, signed = 0.0, 255.0, 8, False
    stored = np.clip(np.rint(image), lo, hi)
    if monochrome1:
        stored = hi + lo - stored
    dtype = np.uint8 if bits == 8 else (np.int16 if signed else np.uint16)
    ds = _dataset(base, stored.astype(dtype), "MONOCHROME1" if monochrome1 else "MONOCHROME2")
    return Sample(ds, truths, base.name)


def _dataset(base: Anatomy, arr: npt.NDArray[np.generic], photometric: str) -> Dataset:
    sop = MRImageStorage if base.modality == "MR" else CTImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = base.modality
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.BurnedInAnnotation = "NO"  # the device's claim, which the scrubber must not trust
    ds.Rows, ds.Columns = arr.shape
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 8 if arr.dtype == np.uint8 else 16
    ds.BitsStored = 8 if arr.dtype == np.uint8 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def random_burns(
    rng: np.random.Generator,
    rows: int,
    columns: int,
    *,
    heights: tuple[int, ...],
    contrasts: tuple[float, ...],
    count: int = 3,
    rotate: bool = True,
) -> list[Burn]:
    """`count` identifying texts at random places (anatomy included), fonts, styles; texts
    do not overlap each other."""
    fonts = installed_fonts()
    placed: list[Box] = []
    out: list[Burn] = []
    for _ in range(count * 20):
        if len(out) == count:
            break
        text = str(rng.choice(IDENTIFYING))
        height = int(rng.choice(heights))
        spec = Burn(
            text,
            0,
            0,
            height,
            float(rng.choice(contrasts)),
            str(rng.choice(fonts)),
            angle=float(rng.choice((0, 0, 0, 0, 90, -12, 20))) if rotate else 0.0,
            antialias=bool(rng.random() < 0.8),
            inverted=bool(rng.random() < 0.1),
        )
        h, w = _alpha(spec).shape
        if h >= rows - 4 or w >= columns - 4:
            continue
        x, y = int(rng.integers(2, columns - w - 2)), int(rng.integers(2, rows - h - 2))
        box = Box(x, y, w, h)
        if any(box.grow(4).overlap(other) for other in placed):
            continue
        placed.append(box)
        out.append(Burn(**{**spec.__dict__, "x": x, "y": y}))
    return out
