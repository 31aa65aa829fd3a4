"""A study goes from a modality (dcmtk storescu) to another organization over mutual TLS.

Real processes: `hexchange-hub serve`, two `hexchange-agent run`, dcmtk `storescu`.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import create_engine, text

from tests.factories.dicom import FakePatient, make_ct_study, pixel_bytes
from tests.federation import Federation, storescu

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk storescu not installed"),
]

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    name = f"hexchange_e2e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# The scenarios below that exercise the agents more than the hub's store run on PostgreSQL
# only (production); the hub's own suite (tests/hub) runs every test on both databases, and
# the core end-to-end scenarios here still do.
ON_POSTGRES = pytest.mark.parametrize(
    "hub_database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def federation(tmp_path: Path, hub_database: str | None) -> Iterator[Federation]:
    fed = Federation(tmp_path / "fed", database_url=hub_database, quiet_period=1.0)
    try:
        fed.start_hub()
        yield fed
    finally:
        fed.stop()


def _files_containing(folder: Path, needles: list[str]) -> list[tuple[str, str]]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [(str(path), n) for n in needles if n.encode() in data]
    return hits


def _database_rows(url: str) -> str:
    engine = create_engine(url)
    out = []
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        for table in list(tables):
            out += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
    engine.dispose()
    return "\n".join(out)


def test_study_reaches_other_org_byte_identical_and_hub_holds_no_identity(
    federation: Federation, tmp_path: Path, hub_database: str | None
) -> None:
    b = federation.add_agent("org-b", "archive", org_name="Regional Archive")
    a = federation.add_agent(
        "org-a", "clinic-a", org_name="Rural Clinic A", destinations=[("org-b", "identified")]
    )
    patient = FakePatient(name="Zebulon^Quimby^Orpheus", patient_id="PID-77310042")
    study = make_ct_study(
        tmp_path / "modality", instances=5, patient=patient, accession="ACC99887766"
    )
    typed_station = "Yorick^Vantabl"  # a name typed where the station's name belongs
    for path in study.files:
        ds = dcmread(path)
        ds.StationName = typed_station
        ds.save_as(path, enforce_file_format=True)
    needles = [*study.identifying_strings, typed_station]

    result = storescu(a.dicom_port, a.ae_title, study.files)
    assert result.returncode == 0, result.stderr.decode()

    federation.wait_for(lambda: len(b.received_files()) == 5, 60, "delivery to org B")

    assert pixel_bytes(b.received_files()) == pixel_bytes(study.files)
    # identified share: org B receives the identity; nothing at the hub may hold it
    assert _files_containing(federation.hub_dir, needles) == []
    if hub_database:
        rows = _database_rows(hub_database)
        assert "org-a" in rows  # the dump really holds the index
        for needle in needles:
            assert needle not in rows
    # the agents' logs carry no patient identity either
    for agent in (a, b):
        log = agent.log_file.read_text()
        assert "bundle" in log
        for needle in needles:
            assert needle not in log


@ON_POSTGRES
def test_sending_the_same_study_twice_delivers_it_once(
    federation: Federation, tmp_path: Path
) -> None:
    b = federation.add_agent("org-b", "archive")
    a = federation.add_agent("org-a", "clinic-a", destinations=[("org-b", "identified")])
    study = make_ct_study(tmp_path / "modality", instances=3)
    assert storescu(a.dicom_port, a.ae_title, study.files).returncode == 0
    federation.wait_for(lambda: len(b.received_files()) == 3, 60, "first delivery")
    # the modality resends the identical study: duplicates are recognised, nothing new is sent
    assert storescu(a.dicom_port, a.ae_title, study.files).returncode == 0
    time.sleep(federation.quiet_period * 4)  # a new bundle would be sealed and sent by now
    bundles = federation.hub_cli("bundles", "--json")
    assert len(json.loads(bundles)) == 1
    assert len(b.received_files()) == 3


@ON_POSTGRES
def test_study_growing_after_it_was_sent_goes_out_as_an_addition(
    federation: Federation, tmp_path: Path
) -> None:
    b = federation.add_agent("org-b", "archive")
    a = federation.add_agent("org-a", "clinic-a", destinations=[("org-b", "identified")])
    study = make_ct_study(tmp_path / "modality", instances=4)
    assert storescu(a.dicom_port, a.ae_title, study.files[:2]).returncode == 0
    federation.wait_for(lambda: len(b.received_files()) == 2, 60, "first part")
    assert storescu(a.dicom_port, a.ae_title, study.files[2:]).returncode == 0
    federation.wait_for(lambda: len(b.received_files()) == 4, 60, "the addition")
    bundles = json.loads(federation.hub_cli("bundles", "--json"))
    assert sorted(x["instances"] for x in bundles) == [2, 2]
    assert pixel_bytes(b.received_files()) == pixel_bytes(study.files)


def test_deidentified_destination_receives_no_identity(
    federation: Federation, tmp_path: Path
) -> None:
    research = federation.add_agent("org-r", "research", org_name="Research Collection")
    a = federation.add_agent(
        "org-a",
        "clinic-a",
        destinations=[("org-r", "deidentified")],
        deid_options=["retain-long-modified-dates"],
    )
    study = make_ct_study(tmp_path / "modality", instances=3)
    assert storescu(a.dicom_port, a.ae_title, study.files).returncode == 0
    federation.wait_for(lambda: len(research.received_files()) == 3, 60, "de-identified copy")

    received = research.received_files()
    for path in received:
        data = path.read_bytes()
        for needle in study.identifying_strings:
            assert needle.encode() not in data
    first = dcmread(received[0])
    assert first.PatientIdentityRemoved == "YES"
    assert str(first.StudyInstanceUID) != study.study_instance_uid
    assert str(first.StudyInstanceUID).startswith("2.25.")
    # header work never touches pixel data: same pixels, under new UIDs
    assert sorted(pixel_bytes(received).values()) == sorted(pixel_bytes(study.files).values())


@ON_POSTGRES
def test_without_a_sharing_rule_nothing_leaves_the_site(
    federation: Federation, tmp_path: Path
) -> None:
    b = federation.add_agent("org-b", "archive")
    a = federation.add_agent("org-a", "clinic-a")  # enrolled, but no policy rule: deny
    study = make_ct_study(tmp_path / "modality", instances=2)
    assert storescu(a.dicom_port, a.ae_title, study.files).returncode == 0

    def held() -> bool:
        import sqlite3

        with sqlite3.connect(a.data_dir / "state.db") as conn:
            row = conn.execute("SELECT state FROM studies").fetchone()
        return row is not None and row[0] == "held"

    federation.wait_for(held, 30, "the study to be held")
    assert json.loads(federation.hub_cli("bundles", "--json")) == []

    # the admin adds a rule: the held study goes out without being sent again
    federation.hub_cli(
        "policy", "add", "--org", "org-a", "--site", "clinic-a", "--to", "org-b", "--modality", "ct"
    )
    federation.wait_for(lambda: len(b.received_files()) == 2, 60, "the held study to go out")


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")
@ON_POSTGRES
def test_burned_in_name_is_blanked_before_a_deidentified_copy_leaves(
    federation: Federation, tmp_path: Path
) -> None:
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.deidentify.pixels.synth import corner_texts, mono_image

    research = federation.add_agent("org-r", "research")
    a = federation.add_agent("org-a", "clinic-a", destinations=[("org-r", "deidentified")])
    drawn = mono_image(texts=corner_texts(480, 640, 20), modality="OT")
    ds = drawn.ds
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    source = tmp_path / "sc.dcm"
    ds.save_as(source, enforce_file_format=True)
    before = ds.pixel_array.copy()

    assert storescu(a.dicom_port, a.ae_title, [source]).returncode == 0
    federation.wait_for(lambda: len(research.received_files()) == 1, 90, "scrubbed copy")

    out = dcmread(research.received_files()[0])
    after = out.pixel_array
    assert out.BurnedInAnnotation == "NO"
    identifying = [box for box, is_id in drawn.boxes if is_id]
    for box in identifying:  # every drawn identifying text box was blanked
        region = (slice(box.top, box.top + box.height), slice(box.left, box.left + box.width))
        assert not np.array_equal(before[region], after[region])
    outside = np.ones(before.shape, dtype=bool)
    for box, _ in drawn.boxes:
        outside[
            max(box.top - 12, 0) : box.top + box.height + 12,
            max(box.left - 12, 0) : box.left + box.width + 12,
        ] = False
    assert (before[outside] == after[outside]).mean() >= 0.98


@ON_POSTGRES
def test_inbound_study_lands_in_the_receiving_pacs(federation: Federation, tmp_path: Path) -> None:
    from tests.factories.orthanc import OrthancUnavailable, start_orthanc
    from tests.ports import free_port

    b_port = free_port()
    try:
        pacs = start_orthanc(tmp_path / "orthanc-b", {"agent": ("ARCHIVE", b_port)})
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))
    try:
        federation.add_agent(
            "org-b",
            "archive",
            ae_title="ARCHIVE",
            dicom_port=b_port,
            inbound_pacs=(pacs.ae_title, pacs.dicom_port),
        )
        a = federation.add_agent("org-a", "clinic-a", destinations=[("org-b", "identified")])
        study = make_ct_study(tmp_path / "modality", instances=3)
        assert storescu(a.dicom_port, a.ae_title, study.files).returncode == 0
        federation.wait_for(
            lambda: pacs.sop_uids() == set(study.sop_instance_uids), 60, "the study in org B's PACS"
        )
        # acknowledged to the hub only after the PACS confirmed every instance
        federation.wait_for(
            lambda: all(
                d == {"org-b": "acked"}
                for d in (
                    x["deliveries"] for x in json.loads(federation.hub_cli("bundles", "--json"))
                )
            ),
            30,
            "the delivery ack",
        )
    finally:
        pacs.stop()


def test_a_large_study_goes_out_in_parts_while_it_is_still_arriving(tmp_path: Path) -> None:
    # parts of about six instances; a quiet period long enough that only a part can explain
    # a bundle at the hub while the study is still arriving
    quiet = 10.0
    federation = Federation(tmp_path / "fed", quiet_period=quiet, part_mib=0.05)
    try:
        federation.start_hub()
        b = federation.add_agent("org-b", "archive")
        a = federation.add_agent("org-a", "clinic-a", destinations=[("org-b", "identified")])
        study = make_ct_study(tmp_path / "modality", instances=16)
        assert 5 * study.files[0].stat().st_size < 0.05 * 1024 * 1024

        assert storescu(a.dicom_port, a.ae_title, study.files[:8]).returncode == 0
        sent_first = time.monotonic()

        def part_complete() -> bool:
            bundles = json.loads(federation.hub_cli("bundles", "--json"))
            return any(x["state"] == "complete" for x in bundles)

        federation.wait_for(part_complete, quiet - 2, "a part at the hub")
        assert time.monotonic() - sent_first < quiet  # before the study could be stable
        assert storescu(a.dicom_port, a.ae_title, study.files[8:]).returncode == 0
        federation.wait_for(lambda: len(b.received_files()) == 16, 60, "the whole study at B")

        bundles = json.loads(federation.hub_cli("bundles", "--json"))
        counts = [x["instances"] for x in bundles]
        assert len(bundles) >= 2 and sum(counts) == 16, counts  # each instance once
        assert pixel_bytes(b.received_files()) == pixel_bytes(study.files)
    finally:
        federation.stop()
