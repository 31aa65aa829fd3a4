"""Fuzzing the agent's DICOM receive path: what the C-STORE handler hands to the spool
(`node_agent.spool.Spool.store`) and what the pipeline then de-identifies
(`node_agent.deid_step.deidentify_file`). Truncated files, flipped bytes, wrong and huge
lengths, bad VRs, deep sequence nesting and wrong transfer-syntax claims must each end as
accepted, refused with a reason (SpoolError) or quarantined with a reason (InstanceRejected):
no other exception, no hang (hypothesis' deadline)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from deidentify.engine import PseudonymKeys
from deidentify.profile import Profile
from node_agent.deid_step import deidentify_file
from node_agent.pipeline import InstanceRejected
from node_agent.spool import Spool, SpoolError, Stored
from node_agent.state import AgentState
from tests.factories.dicom import FakePatient, ct_slice

# Found by this module (and fixed): pydicom raises struct.error for some truncations,
# NotImplementedError for an unknown VR and BytesLengthException for a value of the wrong
# length (read lazily inside de-identification). The spool now refuses any parse error with a
# reason, and the de-identification step quarantines any error with its kind.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEYS = PseudonymKeys(b"k" * 32)
PROFILE = Profile.from_names([])


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _slice(index: int = 0) -> Dataset:
    return ct_slice(
        FakePatient(),
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        sop_uid=f"1.2.826.0.1.3680043.8.498.3.{index}",
        accession="A1",
        index=index,
        rows=8,
        columns=8,
    )


VALID = _encode(_slice())
BODY_START = VALID.index(b"\x08\x00")  # first data set element after the preamble/meta


class FreshSpool:
    """A new, empty spool for every example: what one example stores cannot change what the
    next one meets (the spool de-duplicates by SOP Instance UID)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def store(self, data: bytes) -> Stored:
        self.count += 1
        folder = self.root / str(self.count)
        state = AgentState(folder / "state.db")
        try:
            return Spool(folder / "spool", state).store(data)
        finally:
            state.close()


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> FreshSpool:
    return FreshSpool(tmp_path_factory.mktemp("spool"))


def _receive(spool: FreshSpool, data: bytes) -> str:
    """What the agent does with received bytes; returns how it ended."""
    try:
        stored = spool.store(data)
    except SpoolError as exc:
        assert str(exc)
        return "refused"
    try:
        deidentify_file(stored.path, stored.path.with_suffix(".out"), PROFILE, KEYS)
    except InstanceRejected as exc:
        assert str(exc)
        return "quarantined"
    return "accepted"


def _element_offsets(data: bytes) -> list[int]:
    """Offsets of explicit-VR element headers (group, element, 2-letter VR) in `data`."""
    return [
        i
        for i in range(BODY_START, len(data) - 8)
        if data[i + 4 : i + 6].isalpha() and data[i + 4 : i + 6].isupper()
    ]


OFFSETS = _element_offsets(VALID)


@given(st.integers(0, len(VALID)))
def test_truncated_files(spool: FreshSpool, cut: int) -> None:
    _receive(spool, VALID[:cut])


@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_flipped_bytes(spool: FreshSpool, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for at, value in flips:
        data[at] = value
    _receive(spool, bytes(data))


@given(st.sampled_from(OFFSETS), st.sampled_from([0xFFFF, 0xFFFE, 0x7FFF, 1, 0]))
def test_wrong_and_huge_short_lengths(spool: FreshSpool, at: int, length: int) -> None:
    data = bytearray(VALID)
    vr = bytes(data[at + 4 : at + 6])
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"UC", b"UR"):
        struct.pack_into("<I", data, at + 8, min(length * 0x10001, 0xFFFFFFFF))
    else:
        struct.pack_into("<H", data, at + 6, length)
    _receive(spool, bytes(data))


@given(st.sampled_from(OFFSETS), st.binary(min_size=2, max_size=2))
def test_bad_vrs(spool: FreshSpool, at: int, vr: bytes) -> None:
    data = bytearray(VALID)
    data[at + 4 : at + 6] = vr
    _receive(spool, bytes(data))


@settings(max_examples=12)  # each example encodes and de-identifies a whole nested tree
@given(st.integers(1, 400))
def test_deep_sequence_nesting(spool: FreshSpool, depth: int) -> None:
    ds = _slice(depth)
    inner = Dataset()
    inner.CodeValue = "X"
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = DicomSequence([inner])
        inner = outer
    ds.ContentSequence = inner.ContentSequence
    _receive(spool, _encode(ds))


@given(
    st.sampled_from(
        [
            ImplicitVRLittleEndian,
            ExplicitVRBigEndian,
            JPEGBaseline8Bit,
            JPEG2000Lossless,
            RLELossless,
            "1.2.3.4.5.6.7",
            "not-a-uid",
        ]
    )
)
def test_wrong_transfer_syntax_claims(spool: FreshSpool, claimed: str) -> None:
    ds = _slice(7)
    data = bytearray(_encode(ds))
    real = ds.file_meta.TransferSyntaxUID.encode()
    real_padded = real + (b"\x00" if len(real) % 2 else b"")
    fake = claimed.encode()
    fake = fake + (b"\x00" if len(fake) % 2 else b"")
    at = data.index(real_padded)
    # keep the element's length field true to the new value
    struct.pack_into("<H", data, at - 2, len(fake))
    data[at : at + len(real_padded)] = fake
    # the group length of the meta header is now off too: exactly what a careless sender does
    _receive(spool, bytes(data))


def test_a_valid_instance_is_taken_into_the_spool(spool: FreshSpool) -> None:
    """The harness is real: an untouched instance is accepted by the spool and de-identified
    or quarantined with a reason (today the verifier flags pydicom's ImplementationClassUID
    in the file meta of these synthetic files, reported to the deidentify owner)."""
    assert _receive(spool, _encode(_slice(99))) in ("accepted", "quarantined")


def test_empty_and_garbage_files_are_refused(spool: FreshSpool, tmp_path: Path) -> None:
    assert _receive(spool, b"") == "refused"
    assert _receive(spool, b"\x00" * 128 + b"DICM" + b"\xff" * 64) == "refused"


@pytest.mark.parametrize("vr", [b"C\x16", b"U\x00", b"SI"])
def test_an_unknown_vr_in_any_element_is_refused_or_quarantined(
    spool: FreshSpool, vr: bytes
) -> None:
    """pydicom converts a value only when it is read: an element whose VR is unknown (here the
    UIDs and Modality the spool reads first) must be refused with a reason, never raise."""
    for at in OFFSETS:
        data = bytearray(VALID)
        data[at + 4 : at + 6] = vr
        assert _receive(spool, bytes(data)) in ("refused", "quarantined", "accepted")
