"""Generate the de-identification benchmark corpus (synthetic, never real data).

    python bench/corpus.py [OUT] [--scale 1.0]

Default OUT is ``bench/corpus/`` (gitignored). At scale 1.0: about 800 instances, ~450 MB:

* CT 512x512 16-bit (4 studies, 130 slices each)   ~275 MB
* MR 256x256 16-bit (2 studies, 130 slices each)    ~34 MB
* US multi-frame RGB 640x480, 8 frames (10)         ~74 MB
* CR 2000x2500 16-bit (8)                            ~80 MB

Every instance carries the identifying header of `tests.factories.dicom.ct_slice` (names, IDs,
dates, institution, ...), with a different fake patient per study.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.factories.dicom import FakePatient, ct_slice  # noqa: E402

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _patient(n: int) -> FakePatient:
    return FakePatient(
        name=f"Bench{n:02d}^Patient^Q",
        patient_id=f"MRN-{48213377 + n}",
        birth_date=f"19{50 + n % 40:02d}0214",
    )


def _retag(ds: Dataset, sop_class: str, modality: str) -> None:
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality


def _base(patient: FakePatient, study: str, series: str, index: int) -> Dataset:
    return ct_slice(
        patient,
        study_uid=study,
        series_uid=series,
        sop_uid=generate_uid(),
        accession=f"ACC{abs(hash(study)) % 10**10:010d}",
        index=index,
        rows=1,
        columns=1,
    )


def _gray(rows: int, columns: int, index: int) -> bytes:
    yy, xx = np.mgrid[0:rows, 0:columns]
    return ((xx * 13 + yy * 7 + index * 101) % 4096).astype(np.uint16).tobytes()


def _image(ds: Dataset, rows: int, columns: int, pixels: bytes, samples: int = 1) -> None:
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.PixelData = pixels


def write_ct(out: Path, patient: FakePatient, slices: int) -> int:
    study, series = generate_uid(), generate_uid()
    for i in range(slices):
        ds = _base(patient, study, series, i)
        _image(ds, 512, 512, _gray(512, 512, i))
        ds.save_as(out / f"ct-{series[-8:]}-{i:04d}.dcm", enforce_file_format=True)
    return slices


def write_mr(out: Path, patient: FakePatient, slices: int) -> int:
    study, series = generate_uid(), generate_uid()
    for i in range(slices):
        ds = _base(patient, study, series, i)
        _retag(ds, MR_STORAGE, "MR")
        for keyword in ("KVP", "RescaleIntercept", "RescaleSlope"):
            delattr(ds, keyword)
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
        ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "2D", "12", "500"
        ds.EchoTrainLength, ds.MagneticFieldStrength = "1", "1.5"
        _image(ds, 256, 256, _gray(256, 256, i))
        ds.save_as(out / f"mr-{series[-8:]}-{i:04d}.dcm", enforce_file_format=True)
    return slices


def write_us(out: Path, patient: FakePatient, count: int, frames: int = 8) -> int:
    study, series = generate_uid(), generate_uid()
    rows, columns = 480, 640
    yy, xx = np.mgrid[0:rows, 0:columns]
    for i in range(count):
        ds = _base(patient, study, series, i)
        _retag(ds, US_MULTIFRAME_STORAGE, "US")
        for keyword in (
            "KVP",
            "RescaleIntercept",
            "RescaleSlope",
            "SliceThickness",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "SliceLocation",
            "PixelSpacing",
            "FrameOfReferenceUID",
            "PositionReferenceIndicator",
            "WindowCenter",
            "WindowWidth",
        ):
            delattr(ds, keyword)
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "33.3"
        ds.CineRate = 30
        rgb = np.stack([((xx + yy * 2 + f * 9 + i) % 256) for f in range(frames)], axis=0).astype(
            np.uint8
        )
        pixels = np.repeat(rgb[..., None], 3, axis=-1)
        _image(ds, rows, columns, pixels.tobytes(), samples=3)
        ds.save_as(out / f"us-{series[-8:]}-{i:04d}.dcm", enforce_file_format=True)
    return count


def write_cr(out: Path, patient: FakePatient, count: int) -> int:
    study, series = generate_uid(), generate_uid()
    for i in range(count):
        ds = _base(patient, study, series, i)
        _retag(ds, CR_STORAGE, "CR")
        for keyword in (
            "KVP",
            "SliceThickness",
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "SliceLocation",
            "FrameOfReferenceUID",
            "PositionReferenceIndicator",
        ):
            delattr(ds, keyword)
        ds.ViewPosition = "PA"
        ds.ImagerPixelSpacing = ["0.15", "0.15"]
        _image(ds, 2500, 2000, _gray(2500, 2000, i))
        ds.save_as(out / f"cr-{series[-8:]}-{i:04d}.dcm", enforce_file_format=True)
    return count


def generate(out: Path, scale: float = 1.0) -> int:
    out.mkdir(parents=True, exist_ok=True)
    n = 0

    def k(value: int) -> int:
        return max(1, round(value * scale))

    for p in range(4):
        n += write_ct(out, _patient(p), k(130))
    for p in range(4, 6):
        n += write_mr(out, _patient(p), k(130))
    n += write_us(out, _patient(6), k(10))
    n += write_cr(out, _patient(7), k(8))
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "bench" / "corpus")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    count = generate(args.out, args.scale)
    size = sum(p.stat().st_size for p in args.out.glob("*.dcm"))
    print(f"{count} instances, {size / 1e6:.0f} MB -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
