"""Every de-identified output's compressed frames are written without comments, application
segments or JP2 boxes, whichever writer path runs (header only, whole-instance pixel scrub,
large multi-frame scrubbed in batches), with the same decoded pixels; multi-fragment frames
and offset tables come out right; a frame not understood keeps the instance home; the hub's
check finds frames an older agent left with metadata."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames

from deidentify import codestream_file
from deidentify.codestream import strip
from deidentify.engine import PseudonymKeys
from deidentify.instance import PixelStage, RefusalKind, Refused, deidentify_instance, under
from deidentify.pixels import PixelPolicy, RuleSet
from deidentify.profile import Option, Profile
from deidentify.verify import verify_output
from tests.deidentify.codestreams import (
    J2K,
    JPEG_BASELINE,
    encoded,
    image,
    insert,
    j2k_with_tile_comment,
    jpeg,
    segment,
)
from tests.factories.dicom import make_ct_study

KEYS = PseudonymKeys(b"k" * 32)
BASIC = Profile.basic()
CLEAN_PIXELS = Profile(BASIC.options | {Option.CLEAN_PIXEL_DATA})
POLICY = replace(PixelPolicy(rules=RuleSet(), ocr_enabled=False), learned="off")


def _instance(
    tmp: Path, syntax: str, frames: list[bytes], *, fragments: int = 1, extended: bool = False
) -> tuple[Path, str]:
    """A CT instance of `frames` (48 x 64, 8 bits for JPEG, 12 for J2K) in `syntax`; with the
    patient's name, which the frames are given in comments by the caller."""
    path = make_ct_study(tmp, instances=1).files[0]
    ds = dcmread(path)
    name = str(ds.PatientName)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 48, 64, 1
    bits = 8 if syntax == JPEG_BASELINE else 12
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8 if bits == 8 else 16, bits, bits - 1
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.NumberOfFrames = len(frames)
    if extended:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
            frames
        )
    else:
        ds.PixelData = encapsulate(frames, fragments_per_frame=fragments)
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01" if syntax == JPEG_BASELINE else "00"
    ds.save_as(path, enforce_file_format=True)
    return path, name


def _pixels(ds: Dataset) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ds.pixel_array)


def _jpeg_frames(name: str, count: int) -> list[bytes]:
    return [
        jpeg(image(seed=i), comment=f"Patient {name}".encode(), exif=b"Exif\0\0" + name.encode())
        for i in range(count)
    ]


def _j2k_frames(name: str, count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        frame = encoded(J2K, image(seed=i).astype(np.uint16) * 16)
        frame = insert(
            frame, 4 + int.from_bytes(frame[4:6], "big"), segment(0xFF64, b"\0\1" + name.encode())
        )
        frames.append(j2k_with_tile_comment(frame, b"20261205"))
    return frames


def _no_metadata(path: Path, name: str) -> Dataset:
    data = path.read_bytes()
    assert name.encode() not in data and b"Exif" not in data and b"20261205" not in data
    ds = dcmread(path)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    offsets = None
    if "ExtendedOffsetTable" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    for frame in generate_frames(ds.PixelData, number_of_frames=frames, extended_offsets=offsets):
        assert strip(frame, syntax).removed == {}
    assert not [f for f in verify_output(ds, BASIC) if f.code.startswith("pixel-data")]
    return ds


@pytest.mark.parametrize(
    ("syntax", "fragments", "extended"),
    [(JPEG_BASELINE, 1, False), (JPEG_BASELINE, 3, False), (J2K, 2, False), (J2K, 1, True)],
    ids=["jpeg", "jpeg-3-fragments-per-frame", "j2k-2-fragments", "j2k-extended-offsets"],
)
def test_the_header_path_writes_frames_without_metadata_and_the_same_pixels(
    tmp_path: Path, syntax: str, fragments: int, extended: bool
) -> None:
    """Three frames, each with the patient's name in a comment (and EXIF, or a tile-part
    comment with a date): the output has none of them, one fragment per frame with a Basic
    Offset Table (or the Extended Offset Table rewritten), the same decoded pixels and a note
    with counts."""
    peek = dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0])
    name = str(peek.PatientName)
    made = _jpeg_frames if syntax == JPEG_BASELINE else _j2k_frames
    src, name = _instance(
        tmp_path / "in", syntax, made(name, 3), fragments=fragments, extended=extended
    )
    written = deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS)
    out = _no_metadata(written.path, name)
    assert np.array_equal(_pixels(out), _pixels(dcmread(src)))
    kinds = "APP1 x3, COM x3" if syntax == JPEG_BASELINE else "COM x9"
    assert f"pixel-data: metadata removed from 3 compressed frames ({kinds})" in written.notes
    assert not list((tmp_path / "out").rglob("*.part")) and not list(tmp_path.rglob("*.strip"))
    if extended:
        assert out.ExtendedOffsetTable and len(out.ExtendedOffsetTableLengths) == 24
    else:  # a Basic Offset Table over one fragment per frame
        assert out.PixelData[4:8] == (12).to_bytes(4, "little")


@pytest.mark.parametrize("batched", [False, True], ids=["whole", "batched"])
def test_the_pixel_stage_paths_write_frames_without_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    """With Clean Pixel Data: the whole-instance scrub and the large multi-frame path (its
    threshold lowered to this small instance) both write frames without the comments."""
    import deidentify.pixels.streamed_encapsulated as module

    if batched:
        monkeypatch.setattr(module, "STREAM_FROM_BYTES", 0)
        monkeypatch.setattr(module, "BATCH_BYTES", 48 * 64 * 2 * 2)
    peek = dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0])
    src, name = _instance(tmp_path / "in", J2K, _j2k_frames(str(peek.PatientName), 4))
    stage = PixelStage(POLICY, None)  # type: ignore[arg-type]  # the policy needs no OCR
    written = deidentify_instance(src, under(tmp_path / "out"), CLEAN_PIXELS, KEYS, pixels=stage)
    out = _no_metadata(written.path, name)
    assert np.array_equal(_pixels(out), _pixels(dcmread(src)))


def test_a_frame_not_understood_keeps_the_instance_home(tmp_path: Path) -> None:
    """A JPEG frame cut inside a marker segment: refused as unreadable pixels with what was
    wrong and what to do, no value named, nothing left at the target."""
    peek = dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0])
    frame = _jpeg_frames(str(peek.PatientName), 1)[0]
    cut = frame[:2] + segment(0xFE, b"x" * 40)[:30]
    src, name = _instance(tmp_path / "in", JPEG_BASELINE, [cut])
    with pytest.raises(Refused) as refused:
        deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS)
    assert refused.value.kind == RefusalKind.PIXELS_UNREADABLE
    reason = refused.value.reason
    assert reason.startswith("pixel-codestream: a JPEG marker segment runs past")
    assert "export the instance again" in reason and name not in reason
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_the_search_stays_behind_the_stripping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the stripping to miss a segment, the search for the original's values in the
    compressed bytes still refuses the instance (the second line of defence)."""
    monkeypatch.setattr(codestream_file, "strip_file", lambda _path: codestream_file.Removed())
    peek = dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0])
    src, name = _instance(tmp_path / "in", JPEG_BASELINE, _jpeg_frames(str(peek.PatientName), 1))
    with pytest.raises(Refused) as refused:
        deidentify_instance(src, under(tmp_path / "out"), BASIC, KEYS)
    assert refused.value.kind == RefusalKind.VERIFICATION and name not in refused.value.reason


def test_the_hubs_check_finds_frames_an_older_agent_left_with_metadata(tmp_path: Path) -> None:
    peek = dcmread(make_ct_study(tmp_path / "peek", instances=1).files[0])
    src, _name = _instance(tmp_path / "in", J2K, _j2k_frames(str(peek.PatientName), 2))
    found = [f for f in verify_output(dcmread(src), BASIC) if f.code.startswith("pixel-data")]
    assert [f.code for f in found] == ["pixel-data-codestream-metadata"]
    assert str(peek.PatientName) not in found[0].message
