"""The CLI's header path: Pixel Data stays on disk (deferred) and is copied file to file."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.uid import ImplicitVRLittleEndian

from deidentify.encode import encode_elements, encode_file_meta
from deidentify.engine import PseudonymKeys, apply
from deidentify.instance_file import DEFER_SIZE, incomplete, write_streamed
from deidentify.profile import Profile
from deidentify.verify import verify
from tests.deidentify.factories import ct_dataset, sr_referencing, with_private_tags
from tests.factories.dicom import make_ct_study

PIXEL_DATA = 0x7FE00010


@pytest.mark.parametrize("implicit", [False, True])
def test_streamed_write_equals_ordinary_write(
    tmp_path: Path, keys: PseudonymKeys, implicit: bool
) -> None:
    ds = with_private_tags(ct_dataset())
    ds.DataSetTrailingPadding = b"\0" * 4  # an element after Pixel Data
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    src = tmp_path / "in.dcm"
    ds.save_as(src, enforce_file_format=True)

    original = dcmread(src, defer_size=DEFER_SIZE)
    assert incomplete(original, src.stat().st_size) == ""
    raw = original.get_item(PIXEL_DATA, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None  # never loaded
    profile = Profile.basic()
    result = apply(original, profile, keys)
    assert verify(original, result.dataset, profile) == []
    out = result.dataset.get_item(PIXEL_DATA, keep_deferred=True)
    assert isinstance(out, RawDataElement) and out.value is None  # still on disk

    streamed = tmp_path / "streamed.dcm"
    assert write_streamed(result.dataset, streamed, src)
    ordinary = io.BytesIO()
    result.dataset.save_as(ordinary, enforce_file_format=True)  # reads the deferred value
    assert streamed.read_bytes() == ordinary.getvalue()
    back = dcmread(streamed)
    assert back.PixelData == ds.PixelData
    assert back.PatientIdentityRemoved == "YES"


def test_truncated_deferred_pixel_data_is_detected(tmp_path: Path) -> None:
    src = tmp_path / "in.dcm"
    ct_dataset().save_as(src, enforce_file_format=True)
    data = src.read_bytes()
    short = tmp_path / "short.dcm"
    short.write_bytes(data[: len(data) - 100])
    ds = dcmread(short, defer_size=DEFER_SIZE)
    assert incomplete(ds, short.stat().st_size).startswith("truncated")


@pytest.mark.parametrize("options", [[], ["retain-long-modified-dates", "clean-descriptors"]])
def test_header_encoder_matches_pydicom(
    tmp_path: Path, keys: PseudonymKeys, options: list[str]
) -> None:
    """Nested sequences, non-ASCII text, multi-values: same bytes as pydicom's writer."""
    study = make_ct_study(tmp_path / "in", instances=2)
    sr = sr_referencing(study)
    sr.SpecificCharacterSet = "ISO_IR 192"
    sr.ContentSequence[0].TextValue = "Patiënt Müller \u00e9 ß"
    sr.OtherPatientIDs = ["A-1", "B-2"]
    src = tmp_path / "sr.dcm"
    sr.save_as(src, enforce_file_format=True)
    profile = Profile.from_names(options)
    for path in (src, *study.files):
        original = dcmread(path, defer_size=DEFER_SIZE)
        out = apply(original, profile, keys).dataset
        expected = io.BytesIO()
        out.save_as(expected, enforce_file_format=True)
        meta = copy.deepcopy(out.file_meta)
        encoded = encode_file_meta(meta) + encode_elements(
            out,
            sorted(out.keys()),
            implicit=False,
            encodings=out.get("SpecificCharacterSet") or None,
        )
        assert encoded == expected.getvalue(), path.name
