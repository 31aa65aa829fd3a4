from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from deidentify.cli import app
from tests.deidentify.factories import SECRET
from tests.factories.dicom import make_ct_study

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    study = make_ct_study(src / "Quixote_Dulcinea", instances=3)
    (src / "notes.txt").write_text("not dicom")
    (src / "broken.dcm").write_bytes(study.files[0].read_bytes()[:400])
    (src / "short.dcm").write_bytes(study.files[0].read_bytes()[:-100])
    key = tmp_path / "key"
    key.write_text(SECRET.hex())
    return src, key


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_batch_quarantines_and_continues(
    tmp_path: Path, corpus: tuple[Path, Path], workers: str
) -> None:
    src, key = corpus
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            str(src),
            str(out),
            "--key-file",
            str(key),
            "--report",
            str(report),
            "--option",
            "retain-long-modified-dates",
            "--workers",
            workers,
        ],
    )
    assert result.exit_code == 1, result.output
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == 3
    for path in written:
        ds = dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert b"Quixote" not in path.read_bytes()
        assert "Quixote" not in str(path)  # input folder names are not reused
    quarantine = tmp_path / "quarantine"
    reasons = {p.name: json.loads(p.read_text()) for p in quarantine.rglob("*.reason.json")}
    assert set(reasons) == {
        "notes.txt.reason.json",
        "broken.dcm.reason.json",
        "short.dcm.reason.json",
    }
    assert reasons["notes.txt.reason.json"]["reason"].startswith("not-dicom")
    assert reasons["short.dcm.reason.json"]["reason"].startswith("truncated")
    data = json.loads(report.read_text())
    assert data["instances"] == 6 and data["written"] == 3 and data["quarantined"] == 3
    # the recipient is told what is missing, by reason class only
    assert sum(data["held_back"].values()) == 3
    assert data["held_back"]["incomplete"] >= 1 and data["held_back"]["unreadable"] >= 1
    assert set(data["held_back"]) <= {"unreadable", "incomplete"}
    assert data["options"] == ["retain-long-modified-dates"]


def test_cli_clean_batch_exits_zero(tmp_path: Path) -> None:
    make_ct_study(tmp_path / "in", instances=2)
    key = tmp_path / "key"
    key.write_bytes(SECRET)
    result = runner.invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


def test_cli_rejects_unknown_option_and_short_key(tmp_path: Path) -> None:
    make_ct_study(tmp_path / "in", instances=1)
    key = tmp_path / "key"
    key.write_bytes(b"short")
    result = runner.invoke(
        app, [str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key)]
    )
    assert result.exit_code == 2
    key.write_bytes(SECRET)
    result = runner.invoke(
        app,
        [
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--key-file",
            str(key),
            "--option",
            "retain-all",
        ],
    )
    assert result.exit_code == 2
    assert "retain-all" in result.output


def _one_capture_input(tmp_path: Path, ds: Dataset) -> tuple[Path, Path]:
    """An input folder holding one synthetic secondary capture (fresh study and series UIDs)
    and a pseudonym key file: what `hexchange-deid` is pointed at."""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "sc.dcm", enforce_file_format=True)
    key = tmp_path / "key"
    key.write_text(SECRET.hex())
    return src, key


@pytest.mark.skipif(
    not __import__("deidentify.pixels", fromlist=["TesseractBackend"])
    .TesseractBackend()
    .is_available(),
    reason="tesseract-ocr not installed",
)
def test_clean_pixel_data_option_really_scrubs_pixels(tmp_path: Path) -> None:
    import numpy as np

    from tests.deidentify.pixels.synth import corner_texts, mono_image

    drawn = mono_image(texts=corner_texts(480, 640, 20))
    src, key = _one_capture_input(tmp_path, drawn.ds)
    out = tmp_path / "out"
    result = runner.invoke(
        app, [str(src), str(out), "--key-file", str(key), "--option", "clean-pixel-data"]
    )
    assert result.exit_code == 0, result.output
    written = dcmread(next(out.rglob("*.dcm")))
    before, after = drawn.ds.pixel_array, written.pixel_array
    for box, identifying in drawn.boxes:
        if identifying:
            region = (slice(box.top, box.top + box.height), slice(box.left, box.left + box.width))
            assert not np.array_equal(before[region], after[region])
    codes = {item.CodeValue for item in written.DeidentificationMethodCodeSequence}
    assert "113101" in codes


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_instances_go_through_and_a_cut_one_is_quarantined(
    tmp_path: Path, syntax: str
) -> None:
    """Encapsulated Pixel Data (undefined length, left in the file while reading) is complete
    when its items end with the sequence delimiter: such an instance is de-identified; one cut
    inside its fragments is quarantined as truncated."""
    import pydicom.uid

    study = make_ct_study(tmp_path / "made", instances=2)
    (tmp_path / "in").mkdir()
    for index, path in enumerate(study.files):
        ds = dcmread(path)
        ds.compress(getattr(pydicom.uid, syntax), generate_instance_uid=False)
        target = tmp_path / "in" / f"{index}.dcm"
        ds.save_as(target, enforce_file_format=True)
    cut = tmp_path / "in" / "1.dcm"
    data = cut.read_bytes()
    pixel_start = data.rindex(b"\xe0\x7f\x10\x00")
    cut.write_bytes(data[: pixel_start + (len(data) - pixel_start) // 2])
    key = tmp_path / "key"
    key.write_bytes(SECRET)
    result = runner.invoke(
        app,
        [str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key), "--workers", "1",
         "--option", "clean-pixel-data"],
    )  # fmt: skip
    assert result.exit_code != 0  # something was quarantined
    [written] = list((tmp_path / "out").rglob("*.dcm"))
    assert dcmread(written).file_meta.TransferSyntaxUID.is_encapsulated  # kept compressed
    reasons = [json.loads(p.read_text()) for p in (tmp_path / "quarantine").rglob("*.reason.json")]
    assert [r["source"] for r in reasons] == ["1.dcm"]
    assert reasons[0]["reason"].startswith(("truncated", "incomplete"))


def test_pixel_learned_option_reaches_the_pixel_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--pixel-learned sets the scrubber's learned stage: every-frame without the model
    quarantines (it was told every frame must be checked by it); a wrong value is refused."""
    from deidentify.pixels import netdetect
    from tests.deidentify.pixels.synth import mono_image

    monkeypatch.setenv(netdetect.MODEL_ENV, str(tmp_path / "no-model.onnx"))
    src, key = _one_capture_input(tmp_path, mono_image(texts=[]).ds)
    args = [str(src), "--key-file", str(key), "--option", "clean-pixel-data", "--workers", "1"]
    refused = runner.invoke(app, [*args, str(tmp_path / "o1"), "--pixel-learned", "sometimes"])
    assert refused.exit_code == 2 and "--pixel-learned" in refused.output
    result = runner.invoke(app, [*args, str(tmp_path / "o2"), "--pixel-learned", "every-frame"])
    assert result.exit_code == 1
    [reason] = [json.loads(p.read_text()) for p in (tmp_path / "quarantine").rglob("*.json")]
    assert "learned = every-frame" in reason["reason"]
    assert runner.invoke(app, [*args, str(tmp_path / "o3")]).exit_code == 0  # auto: classical


def test_a_quarantine_folder_inside_the_output_is_refused(
    tmp_path: Path, corpus: tuple[Path, Path]
) -> None:
    """Quarantined files are the originals, identity and all, with previews of their burned-in
    text: inside the output folder they would be shared with it."""
    src, key = corpus
    out = tmp_path / "out"
    for inside in (out / "quarantine", out):
        result = runner.invoke(
            app, [str(src), str(out), "--key-file", str(key), "--quarantine", str(inside)]
        )
        assert result.exit_code == 2, result.output
        assert "quarantine" in result.output and "inside" in result.output
        assert not any(p.is_file() for p in tmp_path.rglob("*") if out in p.parents)
