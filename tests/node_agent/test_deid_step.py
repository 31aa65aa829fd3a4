"""The agent's de-identification step is hexchange-deid's file-to-file engine: for the same
input and key, the agent's output file is byte for byte what `hexchange-deid --option
clean-pixel-data` writes, for uncompressed (Pixel Data copied file to file), multi-frame and
encapsulated instances; a rejected instance leaves no output behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless
from typer.testing import CliRunner

from deidentify import codestream_file
from deidentify.cli import app as deid_app
from deidentify.engine import PseudonymKeys, apply
from deidentify.pixels import PixelPolicy, TesseractBackend, scrub
from deidentify.profile import Profile
from deidentify.verify import verify
from node_agent.config import AgentConfig, Destination
from node_agent.deid_step import make_deidentifier
from node_agent.pipeline import InstanceRejected
from node_agent.synthetic import write_synthetic_study
from tests.factories.dicom import make_ct_study


def _today(source: Path, key: Path) -> bytes:
    """What the agent wrote before it streamed: the whole instance read, scrubbed, de-identified,
    verified and encoded in memory (the reference for what hexchange-deid cannot take)."""
    original = dcmread(source)
    profile = Profile.from_names(["clean-pixel-data"])
    scrubbed = scrub(original, PixelPolicy.default(), TesseractBackend())
    assert scrubbed.dataset is not None and not scrubbed.quarantined
    keys = PseudonymKeys.from_key_file_bytes(key.read_bytes())
    result = apply(scrubbed.dataset, profile, keys)
    assert verify(original, result.dataset, profile) == []
    out = io.BytesIO()
    result.dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _stripped(data: bytes, scratch: Path) -> bytes:
    """`data` with its compressed frames' metadata removed, as every output is written (the
    reference above encodes in memory, without it: OpenJPEG's "Created by" comment)."""
    scratch.write_bytes(data)
    assert codestream_file.strip_file(scratch).kinds == {"COM": 1}
    return scratch.read_bytes()


def _inputs(folder: Path) -> list[Path]:
    study = make_ct_study(folder / "ct", instances=2)
    multi = write_synthetic_study(folder / "mr", instances=1, modality="MR", rows=64)
    multi_path = multi.files[0]
    ds = dcmread(multi_path)  # 12 frames of the same geometry: a small cine
    ds.NumberOfFrames = 12
    ds.PixelData = ds.PixelData * 12
    ds.save_as(multi_path, enforce_file_format=True)
    compressed = folder.parent / "j2k" / "one.dcm"
    compressed.parent.mkdir()
    ds = dcmread(study.files[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    ds.save_as(compressed, enforce_file_format=True)
    return [*study.files, multi_path]


def _config(tmp_path: Path, key: Path) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "agent": {"data_dir": tmp_path / "agent"},
            "hub": {"public_url": "https://x", "node_url": "https://y", "ca_file": key},
            "deidentify": {"key_file": key},
        }
    )


def test_agent_output_is_hexchange_deid_output_byte_for_byte(tmp_path: Path) -> None:
    key = tmp_path / "network.key"
    key.write_text(bytes(range(32, 72)).hex())
    sources = _inputs(tmp_path / "in")
    compressed = tmp_path / "j2k" / "one.dcm"

    result = CliRunner().invoke(
        deid_app,
        [
            str(tmp_path / "in"),
            str(tmp_path / "cli"),
            "--option",
            "clean-pixel-data",
            "--key-file",
            str(key),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    by_uid = {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p.read_bytes()
        for p in (tmp_path / "cli").rglob("*.dcm")
    }
    assert len(by_uid) == len(sources)

    transform = make_deidentifier(_config(tmp_path, key))
    destination = Destination(org="org-r", mode="deidentified")
    for index, source in enumerate(sources):
        target = tmp_path / f"agent-{index}.dcm"
        transform(source, destination, target)
        uid = str(dcmread(target, stop_before_pixels=True).SOPInstanceUID)
        assert target.read_bytes() == by_uid[uid], source.name
        assert "Quixote" not in target.read_bytes().decode("latin-1")
        assert target.read_bytes() == _today(source, key)  # the same bytes as before

    # encapsulated Pixel Data (JPEG 2000): hexchange-deid writes what the agent writes too
    target = tmp_path / "agent-j2k.dcm"
    transform(compressed, destination, target)
    assert target.read_bytes() == _stripped(_today(compressed, key), tmp_path / "today.dcm")
    result = CliRunner().invoke(
        deid_app,
        [str(compressed.parent), str(tmp_path / "cli-j2k"), "--option", "clean-pixel-data",
         "--key-file", str(key), "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [written] = [p for p in (tmp_path / "cli-j2k").rglob("*.dcm")]
    assert written.read_bytes() == target.read_bytes()


def test_an_unreadable_instance_is_rejected_and_writes_nothing(tmp_path: Path) -> None:
    key = tmp_path / "network.key"
    key.write_text(bytes(range(32, 72)).hex())
    study = make_ct_study(tmp_path / "ct", instances=1)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(study.files[0].read_bytes()[:-500])
    transform = make_deidentifier(_config(tmp_path, key))
    target = tmp_path / "out.dcm"
    with pytest.raises(InstanceRejected, match="truncated") as caught:
        transform(truncated, Destination(org="org-r", mode="deidentified"), target)
    assert caught.value.category == "malformed"  # what the hub's quarantine view counts
    assert not target.exists()
    # a rule naming an option the agent does not know: the site's configuration, not the file
    with pytest.raises(InstanceRejected, match="unknown de-identification option") as caught:
        transform(
            study.files[0],
            Destination(org="org-r", mode="deidentified", deid_options=["no-such-option"]),
            target,
        )
    assert caught.value.category == "configuration"


def test_the_agent_cleans_names_another_instance_of_the_study_carries(tmp_path: Path) -> None:
    """A name only instance 1's header holds, written in instance 2's comments, is cleaned by
    the agent too (the study's identity, not only the instance's), and the rule's recipe and
    pixel policy are applied."""
    key = tmp_path / "network.key"
    key.write_text(bytes(range(32, 72)).hex())
    study = make_ct_study(tmp_path / "spool" / "study", instances=2)
    first = dcmread(study.files[0])
    first.ReferringPhysicianName = "Quimbleton^Hortensia"
    first.save_as(study.files[0], enforce_file_format=True)
    second = dcmread(study.files[1])
    second.ImageComments = "reviewed with Dr. Quimbleton, see prior"
    second.save_as(study.files[1], enforce_file_format=True)
    transform = make_deidentifier(_config(tmp_path, key))
    rule = Destination(
        org="org-r", mode="deidentified", deid_options=("clean-descriptors",),
        recipe='[attributes]\nPatientAge = "keep"\n', pixel_policy="strict",
    )  # fmt: skip
    out = tmp_path / "out.dcm"
    transform(study.files[1], rule, out)
    written = out.read_bytes()
    assert b"Quimbleton" not in written and b"QUIMBLETON" not in written.upper()
    with pytest.raises(InstanceRejected, match="recipe"):
        transform(study.files[1], rule.model_copy(update={"recipe": "[keep\n"}), tmp_path / "x")
    with pytest.raises(InstanceRejected, match="pixel policy"):
        transform(
            study.files[1], rule.model_copy(update={"pixel_policy": "sideways"}), tmp_path / "y"
        )


def test_a_large_multiframe_is_scrubbed_in_batches_with_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above `STREAM_FROM_BYTES` the agent scrubs a native multi-frame instance a few frames at
    a time, file to file (memory: one batch, not the instance); the instance it writes is byte
    for byte the one the whole-instance scrub writes, burned-in text blanked on every frame."""
    from deidentify.pixels import streamed
    from tests.deidentify.pixels.synth import corner_texts, mono_image, set_pixels

    key = tmp_path / "network.key"
    key.write_text(bytes(range(32, 72)).hex())
    source = write_synthetic_study(tmp_path / "xa", instances=1, modality="MR", rows=256).files[0]
    ds = dcmread(source)
    drawn = mono_image(256, 256, texts=corner_texts(256, 256, 12), frames=10, bits=12)
    set_pixels(ds, drawn.ds.pixel_array, "MONOCHROME2", 12)
    ds.NumberOfFrames = 10
    ds.save_as(source, enforce_file_format=True)
    frame_bytes = 256 * 256 * 2

    transform = make_deidentifier(_config(tmp_path, key))
    destination = Destination(org="org-r", mode="deidentified")
    whole = tmp_path / "whole.dcm"
    transform(source, destination, whole)
    monkeypatch.setattr(streamed, "STREAM_FROM_BYTES", 0)
    monkeypatch.setattr(streamed, "BATCH_BYTES", 3 * frame_bytes)
    batches: list[int] = []
    real_scrub = streamed.scrub

    def counting(part, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "PixelData" in part:
            batches.append(int(part.NumberOfFrames))
        return real_scrub(part, *args, **kwargs)

    monkeypatch.setattr(streamed, "scrub", counting)
    batched = tmp_path / "batched.dcm"
    transform(source, destination, batched)
    assert batches == [3, 3, 3, 1]  # every frame, a batch at a time
    cli = CliRunner().invoke(
        deid_app,
        [str(source.parent), str(tmp_path / "cli"), "--option", "clean-pixel-data",
         "--key-file", str(key), "--workers", "1"],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert batches == [3, 3, 3, 1] * 2  # hexchange-deid takes the same batched path
    [written] = [p for p in (tmp_path / "cli").rglob("*") if p.is_file()]  # no scratch left
    assert written.read_bytes() == batched.read_bytes()
    assert batched.read_bytes() == whole.read_bytes()
    assert batched.read_bytes() == _today(source, key)
    assert not list(tmp_path.glob("*.frames"))  # the scratch file of scrubbed frames is gone
    out = dcmread(batched)
    assert bytes(out.PixelData) != bytes(ds.PixelData)  # the text was blanked
    assert "PatientName" not in out or "Quixote" not in str(out.PatientName)
