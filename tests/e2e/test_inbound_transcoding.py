"""Vendor to vendor: an inbound delivery whose transfer syntax the receiving PACS refuses is
decompressed losslessly and stored; one it accepts goes as it is; a refused SOP class is named.

The receiving PACS is a real Orthanc configured like an older PACS ("AcceptedTransferSyntaxes"
uncompressed only, or uncompressed plus JPEG baseline); the agent's store SCU (PacsStore, as
the inbound loop uses it) sends JPEG 2000 (lossless and lossy), JPEG-LS (lossless and
near-lossless), JPEG baseline and RLE instances. Each instance read back from Orthanc must hold
the same SOP Instance UID and, once decoded, the same pixels as the original decoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from node_agent.config import InboundSection
from node_agent.dicom.store import PacsStore, SopClassRefused
from tests.factories.dicom import FakePatient, ct_slice
from tests.factories.orthanc import Orthanc, OrthancUnavailable, start_orthanc
from tests.ports import free_port

AGENT_AE = "HEXAGENT"
UNCOMPRESSED_ONLY = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]


def _orthanc(root: Path, accepted: list[str]) -> Orthanc:
    try:
        return start_orthanc(
            root, {"agent": (AGENT_AE, free_port())}, accepted_transfer_syntaxes=accepted
        )
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def old_pacs(tmp_path: Path) -> Iterator[Orthanc]:
    server = _orthanc(tmp_path / "old-pacs", UNCOMPRESSED_ONLY)
    try:
        yield server
    finally:
        server.stop()


def _store(server: Orthanc) -> PacsStore:
    section = InboundSection(
        store="pacs", pacs_host="127.0.0.1", pacs_port=server.dicom_port, pacs_ae_title="ORTHANC"
    )
    return PacsStore(section, AGENT_AE, timeout=15, retry_delay=0.0)


def _ct(study_uid: str, index: int, frames: int = 1) -> Dataset:
    """A synthetic CT slice (multi-frame when `frames` > 1: the slice pattern repeated)."""
    ds = ct_slice(
        FakePatient(),
        study_uid=study_uid,
        series_uid=generate_uid(),
        sop_uid=generate_uid(),
        accession="ACC1",
        index=index,
        rows=48,
        columns=40,
    )
    if frames > 1:
        pixels = np.frombuffer(ds.PixelData, dtype=np.uint16).reshape(48, 40)
        stack = np.stack([(pixels + 37 * f) % 4096 for f in range(frames)]).astype(np.uint16)
        ds.NumberOfFrames = frames
        ds.PixelData = stack.tobytes()
    return ds


def _encoded(ds: Dataset, syntax: str, **options: object) -> bytes:
    ds.compress(syntax, generate_instance_uid=False, **options)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _bundled_jpeg_baseline() -> bytes:
    """pydicom's bundled JPEG baseline (dcmtk-made, YCbCr) test file, with fresh UIDs."""
    ds = dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _deliveries() -> dict[str, bytes]:
    study_uid = generate_uid()
    return {
        "j2k-lossless": _encoded(_ct(study_uid, 0), JPEG2000Lossless),
        "j2k-lossless-multiframe": _encoded(_ct(study_uid, 1, frames=3), JPEG2000Lossless),
        "j2k-lossy": _encoded(_ct(study_uid, 2), JPEG2000, j2k_cr=[20]),
        "jpeg-ls-lossless": _encoded(_ct(study_uid, 3), JPEGLSLossless),
        "jpeg-ls-near": _encoded(_ct(study_uid, 4), JPEGLSNearLossless, jls_error=3),
        "rle": _encoded(_ct(study_uid, 5, frames=2), RLELossless),
        "jpeg-baseline": _bundled_jpeg_baseline(),
    }


_LOSSY = {"j2k-lossy", "jpeg-ls-near", "jpeg-baseline"}


def _held(server: Orthanc, sop_uid: str) -> Dataset:
    instance_id = server.instance_id(sop_uid)
    response = httpx.get(f"{server.url}/instances/{instance_id}/file", timeout=10)
    response.raise_for_status()
    return dcmread(io.BytesIO(response.content))


def test_an_uncompressed_only_pacs_gets_every_syntax_decompressed_losslessly(
    old_pacs: Orthanc,
) -> None:
    deliveries = _deliveries()
    store = _store(old_pacs)
    sop_uids = {name: store.store(data) for name, data in deliveries.items()}
    store.confirm(list(sop_uids.values()))
    assert old_pacs.sop_uids() == set(sop_uids.values())

    for name, data in deliveries.items():
        original = dcmread(io.BytesIO(data))
        held = _held(old_pacs, sop_uids[name])
        assert held.SOPInstanceUID == original.SOPInstanceUID, name
        assert held.file_meta.TransferSyntaxUID in UNCOMPRESSED_ONLY, name
        assert np.array_equal(held.pixel_array, original.pixel_array), name
        assert int(held.get("NumberOfFrames", 1)) == int(original.get("NumberOfFrames", 1))
        if name in _LOSSY:  # a lossy original stays flagged as lossy, with its method
            assert held.LossyImageCompression == "01", name
            assert held.get("LossyImageCompressionMethod"), name
            assert float(held.LossyImageCompressionRatio) > 1, name
        else:
            assert held.get("LossyImageCompression", "00") == "00", name


def test_a_syntax_the_pacs_accepts_goes_as_it_is(tmp_path: Path) -> None:
    server = _orthanc(tmp_path / "pacs", [*UNCOMPRESSED_ONLY, JPEGBaseline8Bit])
    try:
        data = _bundled_jpeg_baseline()
        j2k = _encoded(_ct(generate_uid(), 0), JPEG2000Lossless)
        store = _store(server)
        sop_uids = [store.store(data), store.store(j2k)]
        store.confirm(sop_uids)
        original = dcmread(io.BytesIO(data))
        held = _held(server, sop_uids[0])
        assert held.file_meta.TransferSyntaxUID == JPEGBaseline8Bit  # never re-encoded
        assert held.PixelData == original.PixelData
        converted = _held(server, sop_uids[1])
        assert converted.file_meta.TransferSyntaxUID in UNCOMPRESSED_ONLY
    finally:
        server.stop()


def test_a_refused_sop_class_is_named_in_the_error(old_pacs: Orthanc) -> None:
    ds = _ct(generate_uid(), 0)
    private_class = "1.2.826.0.1.3680043.8.498.99999.1"  # no PACS knows it
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = private_class
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(SopClassRefused, match=r"refuses SOP class 1\.2\.826\.0\.1\.3680043") as err:
        _store(old_pacs).store(out.getvalue())
    assert "enable that SOP class" in str(err.value)
    assert "Quixote" not in str(err.value)
