"""Priors from another organization, end to end with real processes (issue 12).

Hub, four agents (clinic A with its Orthanc; hospital B with its Orthanc; org C, which answers
B after approval; org D, which answers no one), dcmtk findscu/movescu/getscu as B's viewer
against B's agent's Q/R SCP:
- a patient with three studies at A appears in B's C-FIND (study and patient root), marked
  with A's institution, and after a C-MOVE the studies are in B's Orthanc, pixel data
  byte-identical, with real sub-operation counts;
- a patient unknown at A gives no match; D refuses with its reason; C answers only after a
  person at C approved the request;
- A offline: the C-FIND fails with A's last contact; a held request completes when A returns;
- org E answers B de-identified (its `[answering]` rule and its share to B are de-identified):
  B's C-FIND shows pseudonymous studies and patient, a C-MOVE of a pseudonymous study UID
  brings de-identified instances carrying that very UID into B's PACS, an unknown pseudonym is
  refused by E;
- the hub's database, files and log hold none of the patient's name, ID or birth date.
One federation for the module (processes are slow to start).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from node_agent.cli import app as agent_app
from tests.factories.dicom import FakePatient, SyntheticStudy, make_ct_study, pixel_bytes
from tests.factories.orthanc import Orthanc, OrthancUnavailable, start_orthanc
from tests.federation import AgentHandle, Federation
from tests.hub.test_no_phi import _hits
from tests.ports import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("findscu") is None, reason="dcmtk is not installed"),
]

PATIENT = FakePatient(name="Ravensworth^Tobias^Q", patient_id="MRN-55190342", birth_date="19510923")
# JPEG 2000 lossless studies (A answers CT): sub-operations in the instance's own syntax
J2K_PATIENT = FakePatient(
    name="Brackenridge^Otto", patient_id="MRN-31750923", birth_date="19580717"
)
# MR studies: A answers CT only, E (de-identified) MR only
DEID_PATIENT = FakePatient(
    name="Quillfeather^Agnes^M", patient_id="MRN-88041736", birth_date="19470302"
)
QR_AE, VIEWER_AE = "HEXQR_B", "VIEWER"


@dataclass
class World:
    federation: Federation
    a: AgentHandle
    b: AgentHandle
    c: AgentHandle
    d: AgentHandle
    e: AgentHandle
    pacs_a: Orthanc
    pacs_b: Orthanc
    qr_port: int
    studies: list[SyntheticStudy]
    mr_studies: list[SyntheticStudy]
    j2k_studies: list[SyntheticStudy]
    storescp_port: int
    root: Path


def _append(handle: AgentHandle, text: str) -> None:
    handle.config_file.write_text(handle.config_file.read_text() + "\n" + text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fedq")
    federation = Federation(root / "fed", quiet_period=0.5)
    servers: list[Orthanc] = []
    try:
        federation.start_hub()
        b_port, a_port, c_port, qr_port = free_port(), free_port(), free_port(), free_port()
        e_port, storescp_port = free_port(), free_port()
        try:
            pacs_b = start_orthanc(root / "pacs-b", {"agent-b": ("HOSPITALB", b_port),
                                                      "qr-b": (QR_AE, qr_port)})  # fmt: skip
            servers.append(pacs_b)
            pacs_a = start_orthanc(
                root / "pacs-a",
                {"agent-a": ("CLINICA", a_port), "agent-c": ("LABC", c_port),
                 "agent-e": ("LABE", e_port)},
            )  # fmt: skip
            servers.append(pacs_a)
        except OrthancUnavailable as exc:
            pytest.skip(str(exc))
        b = federation.add_agent(
            "org-b", "hospital-b", ae_title="HOSPITALB", dicom_port=b_port, start=False,
            inbound_pacs=(pacs_b.ae_title, pacs_b.dicom_port),
        )  # fmt: skip
        _append(
            b,
            f'[query_retrieve]\nae_title = "{QR_AE}"\nport = {qr_port}\n'
            f'allowed_calling_aes = ["{VIEWER_AE}"]\n'  # asks org-a, org-c: they share with B
            "find_timeout_seconds = 6\nretrieve_timeout_seconds = 60\n"
            f'move_destinations = {{ ORTHANC = "127.0.0.1:{pacs_b.dicom_port}", '
            f'STORESCP = "127.0.0.1:{storescp_port}" }}\n',
        )
        a = federation.add_agent(
            "org-a", "clinic-a", ae_title="CLINICA", dicom_port=a_port, start=False,
            destinations=[("org-b", "identified")], inbound=False,
        )  # fmt: skip
        _append(
            a,
            f'[pacs]\nhost = "127.0.0.1"\nport = {pacs_a.dicom_port}\n'
            f'ae_title = "{pacs_a.ae_title}"\nretrieve = "move"\nschedule = "off"\n\n'
            '[answering]\ninstitution_name = "Clinic A"\nwait_seconds = 10\n'
            '[[answering.rules]]\norg = "org-b"\nmodalities = ["CT"]\n',
        )
        c = federation.add_agent(
            "org-c", "lab-c", ae_title="LABC", dicom_port=c_port, start=False, inbound=False,
            destinations=[("org-b", "identified")],
        )  # fmt: skip
        _append(
            c,
            f'[pacs]\nhost = "127.0.0.1"\nport = {pacs_a.dicom_port}\n'
            f'ae_title = "{pacs_a.ae_title}"\nschedule = "off"\n\n'
            "[answering]\nwait_seconds = 10\n"
            '[[answering.rules]]\norg = "org-b"\napproval_required = true\n',
        )
        d = federation.add_agent("org-d", "lab-d", start=False, inbound=False)
        _append(d, '[answering]\nwait_seconds = 10\n[[answering.rules]]\norg = "org-x"\n')
        e = federation.add_agent(
            "org-e", "lab-e", ae_title="LABE", dicom_port=e_port, start=False, inbound=False,
            destinations=[("org-b", "deidentified")], deid_options=["retain-long-modified-dates"],
        )  # fmt: skip
        _append(
            e,
            f'[pacs]\nhost = "127.0.0.1"\nport = {pacs_a.dicom_port}\n'
            f'ae_title = "{pacs_a.ae_title}"\nretrieve = "move"\nschedule = "off"\n\n'
            '[answering]\ninstitution_name = "Lab E"\nwait_seconds = 10\n'
            '[[answering.rules]]\norg = "org-b"\nmode = "de-identified"\nmodalities = ["MR"]\n',
        )
        studies = [
            make_ct_study(root / f"study-{i}", instances=2 + i, patient=PATIENT,
                          accession=f"ACC-FQ-{i}")
            for i in range(3)
        ]  # fmt: skip
        mr_studies = [
            _as_mr(make_ct_study(root / f"mr-{i}", instances=2, patient=DEID_PATIENT,
                                 accession=f"ACC-MR-{i}"))
            for i in range(2)
        ]  # fmt: skip
        j2k_studies = [
            _as_j2k(make_ct_study(root / f"j2k-{i}", instances=2, patient=J2K_PATIENT,
                                  accession=f"ACC-J2K-{i}"))
            for i in range(2)
        ]  # fmt: skip
        other = make_ct_study(root / "other", instances=1, patient=FakePatient(), accession="X1")
        pacs_a.load([f for s in studies + mr_studies for f in s.files] + other.files)
        for path in (f for s in j2k_studies for f in s.files):  # kept JPEG 2000 (REST)
            pacs_a.rest("POST", "/instances", content=path.read_bytes())
        for handle in (b, a, c, d, e):
            federation.start_agent(handle)
        _wait_for_port(qr_port)
        yield World(
            federation, a, b, c, d, e, pacs_a, pacs_b, qr_port, studies, mr_studies,
            j2k_studies, storescp_port, root,
        )  # fmt: skip
    finally:
        federation.stop()
        for server in servers:
            server.stop()


def _as_mr(study: SyntheticStudy) -> SyntheticStudy:
    from pydicom.uid import MRImageStorage

    for path in study.files:
        ds = dcmread(path)
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.save_as(path, enforce_file_format=True)
    return study


def _as_j2k(study: SyntheticStudy) -> SyntheticStudy:
    from pydicom.uid import JPEG2000Lossless

    for path in study.files:
        ds = dcmread(path)
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    return study


def _findscu(
    world: World, out: Path, *keys: str, patient_root: bool = False
) -> tuple[list[object], str]:
    out.mkdir(parents=True, exist_ok=True)
    args = ["findscu", "-d", "-P" if patient_root else "-S", "-aet", VIEWER_AE, "-aec", QR_AE,
            "-X", "-od", str(out), "-to", "30", "-ta", "30", "-td", "30"]  # fmt: skip
    for key in keys:
        args += ["-k", key]
    result = subprocess.run(
        [*args, "127.0.0.1", str(world.qr_port)], capture_output=True, text=True, timeout=60
    )
    responses = [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return responses, result.stdout + result.stderr


def _wait_until_online(world: World, timeout: float = 20.0) -> None:
    """A, B and C have opened their first long poll at the hub."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [
            h.log_file.read_text(errors="replace") for h in (world.a, world.c, world.d, world.e)
        ]
        if all("agent running" in text for text in logs):
            time.sleep(1.0)
            return
        time.sleep(0.2)


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def _agent_cli(*argv: str) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(agent_app, list(argv), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_a_patients_studies_at_a_appear_in_bs_c_find(world: World) -> None:
    _wait_until_online(world)
    started = time.monotonic()
    responses, log = _findscu(
        world, world.root / "find-study", "QueryRetrieveLevel=STUDY",
        f"PatientID={PATIENT.patient_id}", "PatientName", "PatientBirthDate",
        "StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "RetrieveAETitle",
        "InstitutionName", "NumberOfStudyRelatedInstances",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert {str(r.StudyInstanceUID) for r in responses} == {
        s.study_instance_uid for s in world.studies
    }, log[-3000:]
    for response in responses:
        assert str(response.PatientName) == PATIENT.name
        assert response.PatientBirthDate == PATIENT.birth_date
        assert response.RetrieveAETitle == QR_AE
        assert response.InstitutionName == "Clinic A"
        assert response.ModalitiesInStudy == "CT"
    counts = sorted(int(r.NumberOfStudyRelatedInstances) for r in responses)
    assert counts == [2, 3, 4]
    assert elapsed < 10, f"C-FIND took {elapsed:.1f} s"

    patients, log = _findscu(
        world, world.root / "find-patient", "QueryRetrieveLevel=PATIENT",
        f"PatientName={PATIENT.name}", "PatientID", "NumberOfPatientRelatedStudies",
        patient_root=True,
    )  # fmt: skip
    assert len(patients) == 1, log[-3000:]
    assert patients[0].PatientID == PATIENT.patient_id
    assert int(patients[0].NumberOfPatientRelatedStudies) == 3


def test_an_unknown_patient_gives_no_match_and_d_refuses_with_its_reason(world: World) -> None:
    responses, log = _findscu(
        world, world.root / "find-none", "QueryRetrieveLevel=STUDY", "PatientID=NOPE-000-111",
        "StudyInstanceUID",
    )  # fmt: skip
    assert responses == []
    assert "Success" in log, log[-2000:]  # A's definitive "no match": an empty success

    output = _agent_cli(
        "request", "find", "--config", str(world.b.config_file), "--org", "org-d",
        "--patient-id", PATIENT.patient_id, "--json", "--timeout", "8",
    )  # fmt: skip
    result = json.loads(output)
    assert result["matches"] == []
    (refusal,) = result["refusals"]
    assert refusal["org"] == "org-d" and refusal["kind"] == "refused"
    assert "does not let org-b query" in refusal["reason"]


def test_c_answers_only_after_a_person_at_c_approved(world: World) -> None:
    b_config, c_config = str(world.b.config_file), str(world.c.config_file)
    asked = json.loads(
        _agent_cli("request", "find", "--config", b_config, "--org", "org-c",
                   "--patient-id", PATIENT.patient_id, "--json", "--timeout", "8")
    )  # fmt: skip
    assert asked["matches"] == []
    (refusal,) = asked["refusals"]
    assert (refusal["kind"], refusal["reason"]) == (
        "awaiting_approval", "org-c: waiting for approval at org-c"
    )  # fmt: skip
    waiting = json.loads(_agent_cli("request", "waiting", "--config", c_config, "--json"))
    assert asked["request_id"] in {w["request_id"] for w in waiting}
    assert all(w["requester_org"] == "org-b" for w in waiting)
    _agent_cli("request", "approve", "--config", c_config, asked["request_id"])
    status = json.loads(
        _agent_cli("request", "status", "--config", b_config, asked["request_id"], "--json")
    )
    assert status["refusals"] == []
    assert {m["study_uid"] for m in status["matches"]} == {
        s.study_instance_uid for s in world.studies
    }


def _orthanc_datasets(pacs: Orthanc, study_uid: str) -> list[Dataset]:
    import io

    import httpx

    out = []
    for instance_id in pacs.rest("GET", "/instances"):
        data = httpx.get(f"{pacs.url}/instances/{instance_id}/file", timeout=10).content
        ds = dcmread(io.BytesIO(data))
        if ds.StudyInstanceUID == study_uid:
            out.append(ds)
    return out


def _orthanc_pixels(pacs: Orthanc, study_uid: str) -> dict[str, bytes]:
    import io

    import httpx

    out: dict[str, bytes] = {}
    for instance_id in pacs.rest("GET", "/instances"):
        data = httpx.get(f"{pacs.url}/instances/{instance_id}/file", timeout=10).content
        ds = dcmread(io.BytesIO(data))
        if ds.StudyInstanceUID == study_uid:
            out[str(ds.SOPInstanceUID)] = bytes(ds.PixelData)
    return out


def _find_before_retrieve(world: World, study_uid: str) -> None:
    """What a viewer does before a C-MOVE or C-GET: the C-FIND that shows the study (a retrieve
    names a study the agent has answered for), so a test of a retrieve runs alone too."""
    _wait_until_online(world)
    responses, log = _findscu(
        world, world.root / f"find-{study_uid}", "QueryRetrieveLevel=STUDY",
        f"PatientID={PATIENT.patient_id}", "StudyInstanceUID",
    )  # fmt: skip
    assert study_uid in {str(r.StudyInstanceUID) for r in responses}, log[-3000:]


def test_c_move_brings_the_study_into_bs_pacs_byte_identical(world: World) -> None:
    study = world.studies[2]  # 4 instances
    _find_before_retrieve(world, study.study_instance_uid)
    started = time.monotonic()
    result = subprocess.run(
        ["movescu", "-d", "-S", "-aet", VIEWER_AE, "-aec", QR_AE, "-aem", "ORTHANC",
         "-to", "90", "-ta", "90", "-td", "90",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study_instance_uid}",
         "127.0.0.1", str(world.qr_port)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    # real counts while the instances arrive: 3, 2, 1, 0 remaining, then 4 completed
    remaining = [int(n) for n in re.findall(r"Remaining Suboperations\s*:\s*(\d+)", log)]
    completed = [int(n) for n in re.findall(r"Completed Suboperations\s*:\s*(\d+)", log)]
    assert remaining[:4] == [3, 2, 1, 0], log[-3000:]
    assert completed[-1] == 4, log[-3000:]
    got = _orthanc_pixels(world.pacs_b, study.study_instance_uid)
    assert got == pixel_bytes(study.files)
    assert elapsed < 60


def test_c_get_brings_the_study_over_the_same_association(world: World) -> None:
    study = world.studies[0]  # 2 instances
    _find_before_retrieve(world, study.study_instance_uid)
    out = world.root / "get"
    out.mkdir()
    result = subprocess.run(
        ["getscu", "-d", "-S", "-aet", VIEWER_AE, "-aec", QR_AE, "-od", str(out),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study_instance_uid}",
         "127.0.0.1", str(world.qr_port)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert pixel_bytes(sorted(out.iterdir())) == pixel_bytes(study.files), log[-3000:]
    # and it is in B's PACS too (the inbound path)
    assert _orthanc_pixels(world.pacs_b, study.study_instance_uid) == pixel_bytes(study.files)


def test_sub_operations_keep_a_compressed_syntax_when_taken_else_decompress_losslessly(
    world: World,
) -> None:
    """JPEG 2000 lossless studies, C-MOVE to a dcmtk storescp: one that takes uncompressed only
    gets them decompressed (same pixels, and B's log says so); one that takes JPEG 2000 gets
    them as they are."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    responses, log = _findscu(
        world, world.root / "find-j2k", "QueryRetrieveLevel=STUDY",
        f"PatientID={J2K_PATIENT.patient_id}", "StudyInstanceUID",
    )  # fmt: skip
    assert len(responses) == 2, log[-3000:]
    original = {
        str(ds.SOPInstanceUID): ds.pixel_array.tobytes()
        for s in world.j2k_studies for ds in map(dcmread, s.files)
    }  # fmt: skip
    for study, options, syntax in (
        (world.j2k_studies[0], [], ExplicitVRLittleEndian),  # uncompressed only (default)
        (world.j2k_studies[1], ["+xv"], JPEG2000Lossless),  # takes JPEG 2000 lossless
    ):
        folder = world.root / f"storescp-{study.study_instance_uid}"
        folder.mkdir()
        storescp = subprocess.Popen(
            ["storescp", *options, "-aet", "STORESCP", "-od", str(folder),
             str(world.storescp_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(world.storescp_port)
            code, log = _movescu(world, study.study_instance_uid, "STORESCP")
            assert code == 0, log[-3000:]
        finally:
            storescp.terminate()
            storescp.wait(timeout=10)
        files = [dcmread(p) for p in sorted(folder.iterdir())]
        assert len(files) == 2, log[-3000:]
        assert {ds.file_meta.TransferSyntaxUID for ds in files} == {syntax}
        for ds in files:
            assert ds.pixel_array.tobytes() == original[str(ds.SOPInstanceUID)]
    assert world.b.log_file.read_text().count("decompressed losslessly") == 2


def _movescu(world: World, study_uid: str, destination: str = "ORTHANC") -> tuple[int, str]:
    result = subprocess.run(
        ["movescu", "-d", "-S", "-aet", VIEWER_AE, "-aec", QR_AE, "-aem", destination,
         "-to", "90", "-ta", "90", "-td", "90",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
         "127.0.0.1", str(world.qr_port)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_e_answers_de_identified_and_a_move_brings_that_very_study_uid(world: World) -> None:
    """E's [answering] rule and its share to B are de-identified (issue 12)."""
    out = world.root / "find-deid"
    responses, log = _findscu(
        world, out, "QueryRetrieveLevel=STUDY", f"PatientID={DEID_PATIENT.patient_id}",
        "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "AccessionNumber",
        "InstitutionName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
    )  # fmt: skip
    originals = {s.study_instance_uid for s in world.mr_studies}
    assert len(responses) == 2, log[-3000:]
    needles = [
        DEID_PATIENT.name, "Quillfeather", "Agnes", DEID_PATIENT.patient_id,
        DEID_PATIENT.birth_date, *originals, "ACC-MR-0", "ACC-MR-1",
    ]  # fmt: skip
    for path in out.glob("rsp*.dcm"):
        assert _hits(path.read_bytes(), needles) == [], path
    pseudonyms = {str(r.StudyInstanceUID) for r in responses}
    assert all(uid.startswith("2.25.") for uid in pseudonyms) and not pseudonyms & originals
    assert {r.InstitutionName for r in responses} == {"Lab E"}
    assert {r.ModalitiesInStudy for r in responses} == {"MR"}
    patient_ids = {r.PatientID for r in responses}
    assert len(patient_ids) == 1 and patient_ids != {DEID_PATIENT.patient_id}
    original_date = dcmread(world.mr_studies[0].files[0]).StudyDate
    assert all(r.StudyDate and r.StudyDate != original_date for r in responses)  # shifted
    assert all(r.PatientBirthDate == "" for r in responses)

    pseudonym = str(responses[0].StudyInstanceUID)
    code, log = _movescu(world, pseudonym)
    assert code == 0, log[-3000:]
    completed = [int(n) for n in re.findall(r"Completed Suboperations\s*:\s*(\d+)", log)]
    assert completed[-1] == 2, log[-3000:]
    arrived = _orthanc_datasets(world.pacs_b, pseudonym)
    assert len(arrived) == 2
    for ds in arrived:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID in patient_ids and str(ds.PatientName) != DEID_PATIENT.name
        assert ds.StudyDate == responses[0].StudyDate
        assert not {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)} & originals

    # a pseudonym E never gave B: refused by E, with its reason
    with sqlite3.connect(world.b.data_dir / "state.db") as conn:
        conn.execute(
            "INSERT OR REPLACE INTO remote_studies (study_uid, source_org, instances, "
            "request_id, seen_at) VALUES ('2.25.1234567', 'org-e', 1, 'made-up', 0)"
        )
    code, log = _movescu(world, "2.25.1234567")
    assert "gave org-b no study" in log, log[-3000:]


def test_a_retrieve_that_outlives_the_association_completes_in_the_background_after_a_kill(
    world: World,
) -> None:
    b = world.b
    world.federation.stop_agent(b)
    b.config_file.write_text(
        b.config_file.read_text().replace(
            "retrieve_timeout_seconds = 60", "retrieve_timeout_seconds = 0.5"
        )
    )
    world.federation.start_agent(b)
    _wait_for_port(world.qr_port)
    study = world.studies[1]  # 3 instances
    result = subprocess.run(
        ["movescu", "-d", "-S", "-aet", VIEWER_AE, "-aec", QR_AE, "-aem", "ORTHANC",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.study_instance_uid}",
         "127.0.0.1", str(world.qr_port)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert "continuing in the background" in log, log[-3000:]
    # B's agent is killed while the rest is on its way; the restarted agent follows it again
    world.federation.stop_agent(b, signal.SIGKILL)
    world.federation.start_agent(b)

    def retrieve_row() -> dict[str, object]:
        rows = json.loads(_agent_cli("request", "list", "--config", str(b.config_file), "--json"))
        return next(r for r in rows if r["kind"] == "retrieve" and r["retrieve_state"])

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = retrieve_row()
        if row["retrieve_state"] == "completed-in-background":
            break
        time.sleep(0.5)
    assert (row["retrieve_state"], row["arrived"], row["expected"]) == (
        "completed-in-background", 3, 3,
    ), row  # fmt: skip
    status = json.loads(
        _agent_cli("request", "status", "--config", str(b.config_file), str(row["request_id"]),
                   "--json")
    )  # fmt: skip
    assert status["retrieve"] == {"state": "completed-in-background", "arrived": 3, "expected": 3}
    assert _orthanc_pixels(world.pacs_b, study.study_instance_uid) == pixel_bytes(study.files)


def test_a_offline_is_refused_with_its_last_contact_and_a_held_request_completes(
    world: World,
) -> None:
    # E answers "no match" (it lists MR only), which would make the empty answer definitive
    for handle in (world.a, world.e):
        assert handle.process is not None
        handle.process.terminate()
    for handle in (world.a, world.e):
        world.federation.stop_agent(handle)
    time.sleep(11)  # the hub counts A offline once its long poll is 10 s silent
    responses, log = _findscu(
        world, world.root / "find-offline", "QueryRetrieveLevel=STUDY",
        f"PatientID={PATIENT.patient_id}", "StudyInstanceUID",
    )  # fmt: skip
    assert responses == []
    assert "org-a is offline: last contact" in log, log[-3000:]

    held = json.loads(
        _agent_cli(
            "request",
            "find",
            "--config",
            str(world.b.config_file),
            "--org",
            "org-a",
            "--patient-id",
            PATIENT.patient_id,
            "--hold",
            "--json",
            "--timeout",
            "1",
        )
    )
    assert held["matches"] == [] and held["refusals"][0]["kind"] == "no_answer"
    world.federation.start_agent(world.a)
    deadline = time.monotonic() + 40
    matches: list[object] = []
    while time.monotonic() < deadline and not matches:
        time.sleep(1)
        status = json.loads(
            _agent_cli(
                "request",
                "status",
                "--config",
                str(world.b.config_file),
                held["request_id"],
                "--json",
            )
        )
        matches = status["matches"]
    assert len(matches) == 3


def test_the_hub_keeps_no_patient_identity(world: World) -> None:
    """Runs last: everything above went through the hub."""
    needles = [PATIENT.name, "Ravensworth", "Tobias", PATIENT.patient_id, PATIENT.birth_date,
               DEID_PATIENT.name, "Quillfeather", DEID_PATIENT.patient_id,
               DEID_PATIENT.birth_date]  # fmt: skip
    hub_dir = world.federation.hub_dir
    files = [p for p in hub_dir.rglob("*") if p.is_file()]
    # nor the original UIDs of the studies E answered and sent de-identified
    deid_uids = [s.study_instance_uid for s in world.mr_studies]
    leaks = {str(p): h for p in files if (h := _hits(p.read_bytes(), needles + deid_uids))}
    assert leaks == {}, f"patient identity found at the hub: {leaks}"
    hub_log = world.federation.root / "hub.log"
    assert "request routed" in hub_log.read_text()  # control: the log has the requests
    assert _hits(hub_log.read_bytes(), needles) == []
    assert any(p.name == "hub.db" for p in files)  # control: the database was scanned
    # nor do the agents' logs (the query keys and answers are PHI at both ends too)
    for handle in (world.a, world.b, world.c, world.d, world.e):
        text = handle.log_file.read_bytes()
        assert b"request answered" in text or b"federated" in text or handle is world.d
        assert _hits(text, needles) == [], f"patient identity in {handle.org}'s log"
