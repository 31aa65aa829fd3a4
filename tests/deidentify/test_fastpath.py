"""The fast header path: its parser (`rawdicom`), and byte-for-byte agreement with the pydicom
path (`cli.process_file(..., fast=False)`) - same output bytes, same changes and notes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_partial
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from deidentify import fastpath
from deidentify.cli import _keys, _profile, process_file
from deidentify.engine import PseudonymKeys
from deidentify.instance import under
from deidentify.profile import Profile
from deidentify.rawdicom import Fallback, RawElement, parse_output, read_header
from deidentify.verify import verify_raw
from tests.deidentify.factories import SECRET, ct_dataset, with_private_tags

PIXEL_DATA = 0x7FE00010


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = f"meaning {value}"
    return item


def rich_dataset(*, implicit: bool = False, charset: str = "ISO_IR 100") -> Dataset:
    """A CT slice with nested undefined-length sequences, odd-length values, private tags,
    a non-ASCII name and an element after Pixel Data."""
    ds = with_private_tags(ct_dataset(), leak="")
    ds.SpecificCharacterSet = charset
    ds.PatientName = "Müller^Jürgen" if charset != "ISO_IR 6" else "Muller^Jurgen"
    ds.StudyDescription = "CHEST"  # odd length: padded on write
    ds.ImageComments = "abc"
    ds.OtherPatientIDs = ["A-1", "B-22"]
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    inner.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    outer = Dataset()
    outer.ReferencedSOPSequence = Sequence([inner, _code("1")])
    outer.SeriesInstanceUID = "1.2.3.4.5.6.8"
    ds.ReferencedSeriesSequence = Sequence([outer])
    ds["ReferencedSeriesSequence"].is_undefined_length = True
    outer.is_undefined_length_sequence_item = True
    ds["ReferencedSeriesSequence"].value[0]["ReferencedSOPSequence"].is_undefined_length = True
    ds.AnatomicRegionSequence = Sequence([_code("T-D3000")])  # defined lengths
    ds.ProcedureCodeSequence = Sequence([])
    ds.DataSetTrailingPadding = b"\0" * 4
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def _same(raw: list[RawElement], ds: Dataset, implicit: bool) -> None:
    """The raw elements are what pydicom reads (tags, VRs, bytes, items), at every depth."""
    tags = [int(t) for t in ds.keys() if int(t) != PIXEL_DATA]  # noqa: SIM118
    assert [e.tag for e in raw] == tags
    for elem in raw:
        if elem.vr == "SQ":
            read = ds[elem.tag]
            assert read.VR == "SQ"
            assert elem.items is not None and len(elem.items) == len(read.value)
            for item, item_ds in zip(elem.items, read.value, strict=True):
                assert item.undefined == item_ds.is_undefined_length_sequence_item
                _same(item.elements, item_ds, implicit)
        else:
            raw_read = ds.get_item(elem.tag, keep_deferred=True)
            if not isinstance(raw_read, RawDataElement):  # decoded while reading
                continue
            assert elem.value == (raw_read.value or b"")
            if not implicit:
                assert elem.vr == raw_read.VR


@pytest.mark.parametrize("implicit", [False, True])
def test_parser_reads_what_pydicom_reads(tmp_path: Path, implicit: bool) -> None:
    path = tmp_path / "in.dcm"
    rich_dataset(implicit=implicit).save_as(path, enforce_file_format=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        header = read_header(fd, path.stat().st_size)
    finally:
        os.close(fd)
    assert header.implicit is implicit
    with path.open("rb") as fh:
        ds = read_partial(fh, stop_when=None)
    assert [e.tag for e in header.meta] == [int(t) for t in ds.file_meta.keys()]  # noqa: SIM118
    _same([*header.elements, *header.tail], ds, implicit)
    assert [e.tag for e in header.tail] == [0xFFFCFFFC]
    pixel = ds.get_item(PIXEL_DATA, keep_deferred=True)
    assert header.pixel.length == len(pixel.value)
    assert path.read_bytes()[header.pixel.offset :][: header.pixel.length] == pixel.value
    seq = next(e for e in header.elements if e.tag == 0x00081115)
    assert seq.undefined and seq.items and seq.items[0].undefined
    inner = next(e for e in seq.items[0].elements if e.tag == 0x00081199)
    assert inner.undefined and inner.items is not None and len(inner.items) == 2


def _both(
    tmp_path: Path, path: Path, options: list[str], expect_fast: bool = True
) -> tuple[bytes, Any]:
    """Run the fast and the pydicom path; they must agree byte for byte."""
    profile, keys = _profile(tuple(options)), _keys(SECRET)
    if expect_fast:
        fastpath.process(path, under(tmp_path / "probe"), profile, keys)  # no Fallback
    fast = process_file(path, path.name, tmp_path / "fast", tmp_path / "qf", options, SECRET)
    slow = process_file(
        path, path.name, tmp_path / "slow", tmp_path / "qs", options, SECRET, fast=False
    )
    assert fast == slow
    assert fast.output, fast.reason
    data = (tmp_path / "fast" / fast.output).read_bytes()
    assert data == (tmp_path / "slow" / slow.output).read_bytes()
    return data, fast


OPTION_SETS = [
    [],
    ["retain-long-modified-dates"],
    ["retain-long-full-dates", "retain-device-identity", "retain-institution-identity"],
    ["retain-uids", "retain-safe-private"],
    ["retain-patient-characteristics", "clean-graphics", "clean-pixel-data"],
]


@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("implicit", [False, True])
def test_fast_path_writes_what_the_pydicom_path_writes(
    tmp_path: Path, options: list[str], implicit: bool
) -> None:
    path = tmp_path / "in.dcm"
    rich_dataset(implicit=implicit).save_as(path, enforce_file_format=True)
    data, outcome = _both(tmp_path, path, options)
    assert b"M\xfcller" not in data and "Müller".encode() not in data
    assert outcome.changes


@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 6"])
def test_fast_path_character_sets(tmp_path: Path, charset: str) -> None:
    path = tmp_path / "in.dcm"
    ds = rich_dataset(charset=charset)
    ds.InstitutionName = "Klinik Süd" if charset == "ISO_IR 192" else "Klinik Sud"
    ds.save_as(path, enforce_file_format=True)
    _both(tmp_path, path, ["retain-institution-identity"])


def test_fast_path_private_and_overlays(tmp_path: Path) -> None:
    ds = rich_dataset()
    ds.add_new(0x60003000, "OW", b"\0" * 8)
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")  # odd-length creator, already there
    path = tmp_path / "in.dcm"
    ds.save_as(path, enforce_file_format=True)
    for options in (["retain-safe-private"], ["clean-graphics"], []):
        data, _ = _both(tmp_path / "-".join(options or ["basic"]), path, options)
        assert (b"\x00\x60\x00\x30" in data) is False


def _fallback(path: Path) -> str:
    with pytest.raises(Fallback) as caught:
        fastpath.process(path, under(path.parent / "probe"), Profile.basic(), PseudonymKeys(SECRET))
    assert not (path.parent / "probe").exists() or not any((path.parent / "probe").rglob("*"))
    return str(caught.value)


def test_fallback_for_encapsulated_big_endian_deflated_and_no_pixels(tmp_path: Path) -> None:
    cases: dict[str, Dataset] = {}
    ds = ct_dataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    cases["encapsulated"] = ds
    ds = ct_dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    cases["big-endian"] = ds
    ds = ct_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    cases["deflated"] = ds
    ds = ct_dataset()
    del ds.PixelData
    cases["no-pixels"] = ds
    for name, case in cases.items():
        path = tmp_path / name / "in.dcm"
        path.parent.mkdir()
        case.save_as(path, enforce_file_format=True)
        _fallback(path)
        # the pydicom path still handles the file
        outcome = process_file(path, name, tmp_path / "out", tmp_path / "q", [], SECRET)
        assert outcome.output or outcome.quarantined, name


def test_fallback_for_unusual_encodings(tmp_path: Path) -> None:
    path = tmp_path / "in.dcm"
    ct_dataset().save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    # an explicit VR element whose VR bytes are not a VR (a writer switching to implicit VR)
    at = data.index(b"\x08\x00\x60\x00CS")
    (tmp_path / "badvr.dcm").write_bytes(data[: at + 4] + b"\x02\x00" + data[at + 6 :])
    assert "VR" in _fallback(tmp_path / "badvr.dcm")
    # no preamble
    (tmp_path / "nopreamble.dcm").write_bytes(data[128:])
    _fallback(tmp_path / "nopreamble.dcm")
    # truncated inside Pixel Data: the pydicom path quarantines it
    (tmp_path / "short.dcm").write_bytes(data[:-100])
    _fallback(tmp_path / "short.dcm")


def test_verify_raw_checks_the_output_bytes(tmp_path: Path, keys: PseudonymKeys) -> None:
    path = tmp_path / "in.dcm"
    ds = rich_dataset()
    ds.save_as(path, enforce_file_format=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        header = read_header(fd, path.stat().st_size)
    finally:
        os.close(fd)
    profile = Profile.basic()
    result = fastpath.apply_raw(header, profile, keys)
    assert verify_raw(header, result.header, result.tail, profile) == []
    parsed = parse_output(result.header, result.tail, header.implicit)
    assert parsed.pixel.length == header.pixel.length

    # the original patient ID put back into the output (same length: the header stays valid)
    pseudonym = keys.patient_pseudonym(str(ds.PatientID)).encode()
    original_id = str(ds.PatientID).encode().ljust(len(pseudonym), b" ")[: len(pseudonym)]
    assert len(str(ds.PatientID)) <= len(pseudonym)
    leaked = result.header.replace(pseudonym, original_id, 1)
    codes = {f.code for f in verify_raw(header, leaked, result.tail, profile)}
    assert "identifying-value-present" in codes

    # Pixel Data declared with another length
    length = header.pixel.length.to_bytes(4, "little")
    shorter = (header.pixel.length - 2).to_bytes(4, "little")
    changed = result.header[:-4] + shorter
    assert result.header.endswith(length)
    codes = {f.code for f in verify_raw(header, changed, result.tail, profile)}
    assert "pixel-data-changed" in codes

    # garbage after the Pixel Data header
    assert {f.code for f in verify_raw(header, result.header + b"xx", b"", profile)} == {
        "unparseable-output"
    }


def test_verify_raw_finds_removed_attributes(tmp_path: Path, keys: PseudonymKeys) -> None:
    path = tmp_path / "in.dcm"
    rich_dataset().save_as(path, enforce_file_format=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        header = read_header(fd, path.stat().st_size)
    finally:
        os.close(fd)
    profile = Profile.basic()
    # apply under a profile that keeps the unsafe private element; verify under Basic
    keep_all = Profile(private_keep=frozenset({("SIEMENS CSA REPORT", 0x0029, None)}))
    result = fastpath.apply_raw(header, keep_all, keys)
    codes = {f.code for f in verify_raw(header, result.header, result.tail, profile)}
    assert "removed-attribute-present" in codes


def test_corpus_like_study_goes_the_fast_way(tmp_path: Path) -> None:
    from tests.factories.dicom import make_ct_study

    study = make_ct_study(tmp_path / "in", instances=3)
    for path in study.files:
        target = tmp_path / path.stem
        _, outcome = _both(target, path, [])
        back = dcmread(target / "fast" / outcome.output)
        assert back.PatientIdentityRemoved == "YES"
        assert back.PixelData == dcmread(path).PixelData
