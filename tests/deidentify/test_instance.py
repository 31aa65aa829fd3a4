"""One engine for an instance (`deidentify.instance`): `hexchange-deid` and the agent's pipeline
step refuse the same inputs for the same reasons, never write outside their output folder, and
leave nothing at the target when an instance is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from deidentify.cli import process_file
from deidentify.engine import PseudonymKeys
from deidentify.instance import PixelStage, RefusalKind, Refused, deidentify_instance, under
from deidentify.pixels import PixelPolicy, TesseractBackend
from deidentify.profile import Option, Profile
from node_agent.deid_step import deidentify_file
from node_agent.pipeline import InstanceRejected
from tests.factories.dicom import make_ct_study
from wire.api import QuarantineReason

SECRET = b"k" * 32
KEYS = PseudonymKeys(SECRET)
PIXELS = PixelStage(PixelPolicy.default(), TesseractBackend())


def _one(tmp_path: Path, **changes: object) -> Path:
    """A synthetic CT instance with `changes` applied to its header."""
    path = make_ct_study(tmp_path / "in", instances=1).files[0]
    ds = dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("fast", [True, False])
def test_a_kept_uid_that_is_not_a_uid_never_names_an_output_path(
    tmp_path: Path, fast: bool
) -> None:
    """With Retain UIDs, the output folders are named by the input's UIDs: one that climbs out
    of the output folder is refused, and nothing is written anywhere."""
    path = _one(tmp_path, StudyInstanceUID="1.2.3/../../../escaped")
    out = tmp_path / "run" / "out"
    outcome = process_file(
        path, "a.dcm", out, tmp_path / "run" / "q", [Option.RETAIN_UIDS.value], SECRET, fast=fast
    )
    assert outcome.quarantined and outcome.output is None
    assert outcome.reason.startswith("unparseable: an output UID is not a valid UID")
    written = [p for p in tmp_path.rglob("*.dcm") if not {"in", "q"} & set(p.parts)]
    assert written == []
    assert not (tmp_path / "escaped").exists()


def _undecodable_jpeg(tmp_path: Path) -> Path:
    """JPEG Baseline claimed, bytes that no decoder accepts."""
    path = _one(tmp_path)
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg stream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_pixels_that_cannot_be_decoded_are_one_kind_of_refusal_for_both_shells(
    tmp_path: Path,
) -> None:
    path = _undecodable_jpeg(tmp_path)
    with pytest.raises(Refused) as caught:
        deidentify_instance(path, under(tmp_path / "x"), Profile.basic(), KEYS, pixels=PIXELS)
    assert caught.value.kind is RefusalKind.PIXELS_UNREADABLE

    profile = Profile(Profile.basic().options | {Option.CLEAN_PIXEL_DATA})
    target = tmp_path / "agent" / "0.dcm"
    target.parent.mkdir()
    with pytest.raises(InstanceRejected) as rejected:
        deidentify_file(path, target, profile, KEYS, PIXELS)
    assert rejected.value.category is QuarantineReason.PIXELS_UNREADABLE
    assert not target.exists() and not list(target.parent.iterdir())

    outcome = process_file(
        path, "a.dcm", tmp_path / "out", tmp_path / "q", ["clean-pixel-data"], SECRET
    )
    assert outcome.quarantined and outcome.reason.startswith("pixel-scrub:")
    assert outcome.pixels == "quarantined"  # counted in the per-study pixel report


def test_a_disk_that_refuses_the_write_is_not_the_instances_fault(tmp_path: Path) -> None:
    """The agent retries the part later (an OSError goes up) instead of quarantining an
    instance that is fine; the CLI records the write failure."""
    path = _one(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OSError):
        deidentify_file(path, blocker / "0.dcm", Profile.basic(), KEYS, None)
    outcome = process_file(path, "a.dcm", blocker, tmp_path / "q", [], SECRET, fast=False)
    assert outcome.quarantined and outcome.reason.startswith("write-failed:")
