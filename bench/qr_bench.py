"""Federated query/retrieve latency on loopback, with real processes (issue 12).

One hub; answering organizations org-a1..org-a10 (one agent each, all on one Orthanc holding
the patient's studies); three sites of org-b whose Q/R SCPs forward to the first 1, 3 and 10
of them; B's Orthanc as the C-MOVE destination. Measured from a viewer's side (pynetdicom SCU):

- C-FIND (study root, by PatientID) to the last merged response, per number of answering
  organizations, `--finds` times each (target: p95 < 3 s with agents online);
- C-MOVE of a study of 4 instances to B's Orthanc: to the first sub-operation (the first
  instance stored in B's PACS) and to the end, `--moves` studies.

    .venv/bin/python bench/qr_bench.py [--finds 20] [--moves 4] [--write]

`--write` appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.factories.dicom import FakePatient, make_ct_study
from tests.factories.orthanc import Orthanc, start_orthanc
from tests.federation import AgentHandle, Federation
from tests.ports import free_port

PATIENT = FakePatient(name="Benchmark^Bernadette", patient_id="BENCH-0001", birth_date="19600101")
SIZES = (1, 3, 10)
VIEWER = "VIEWER"


def _append(handle: AgentHandle, text: str) -> None:
    handle.config_file.write_text(handle.config_file.read_text() + "\n" + text)


def _qr_config(ae: str, port: int, orgs: list[str], pacs_b: Orthanc) -> str:
    quoted = ", ".join(f'"{o}"' for o in orgs)
    return (
        f'[query_retrieve]\nae_title = "{ae}"\nport = {port}\nallowed_calling_aes = ["{VIEWER}"]\n'
        f"ask_orgs = [{quoted}]\nfind_timeout_seconds = 15\nretrieve_timeout_seconds = 120\n"
        f'move_destinations = {{ ORTHANC = "127.0.0.1:{pacs_b.dicom_port}" }}\n'
    )


def _find(port: int, ae: str) -> tuple[float, int]:
    scu = AE(ae_title=VIEWER)
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = PATIENT.patient_id
    identifier.StudyInstanceUID = ""
    started = time.perf_counter()
    assoc = scu.associate("127.0.0.1", port, ae_title=ae)
    assert assoc.is_established, "the Q/R SCP refused the association"
    matches = 0
    for status, found in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
        if status and status.Status in (0xFF00, 0xFF01) and found is not None:
            matches += 1
    assoc.release()
    return time.perf_counter() - started, matches


def _move(port: int, ae: str, study_uid: str) -> tuple[float, float, int]:
    scu = AE(ae_title=VIEWER)
    scu.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    scu.dimse_timeout = 300
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    started = time.perf_counter()
    assoc = scu.associate("127.0.0.1", port, ae_title=ae)
    assert assoc.is_established
    first = None
    completed = 0
    for status, _ in assoc.send_c_move(
        identifier, "ORTHANC", StudyRootQueryRetrieveInformationModelMove
    ):
        if status is None:
            break
        if status.Status == 0xFF00 and first is None:
            first = time.perf_counter() - started
        completed = int(getattr(status, "NumberOfCompletedSuboperations", completed) or 0)
    assoc.release()
    return first or float("nan"), time.perf_counter() - started, completed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--finds", type=int, default=20)
    parser.add_argument("--moves", type=int, default=4)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="qr-bench-"))
    federation = Federation(root / "fed", quiet_period=0.5)
    servers: list[Orthanc] = []
    try:
        federation.start_hub()
        answer_ports = {f"org-a{i}": free_port() for i in range(1, max(SIZES) + 1)}
        qr_ports = {n: free_port() for n in SIZES}
        b_port = free_port()
        pacs_a = start_orthanc(
            root / "pacs-a",
            {org: (org.replace("-", "").upper(), port) for org, port in answer_ports.items()},
        )
        servers.append(pacs_a)
        pacs_b = start_orthanc(
            root / "pacs-b",
            {"b1": ("BENCHB1", b_port), **{f"qr{n}": (f"QR{n}", qr_ports[n]) for n in SIZES}},
        )
        servers.append(pacs_b)
        agents: list[AgentHandle] = []
        orgs = list(answer_ports)
        for n in SIZES:
            handle = federation.add_agent(
                "org-b", f"b{n}", ae_title=f"BENCHB{n}",
                dicom_port=b_port if n == 1 else free_port(), start=False, inbound=n == 1,
                inbound_pacs=(pacs_b.ae_title, pacs_b.dicom_port) if n == 1 else None,
            )  # fmt: skip
            _append(handle, _qr_config(f"QR{n}", qr_ports[n], orgs[:n], pacs_b))
            agents.append(handle)
        for org, port in answer_ports.items():
            handle = federation.add_agent(
                org, "site", ae_title=org.replace("-", "").upper(), dicom_port=port,
                destinations=[("org-b", "identified")], inbound=False, start=False,
            )  # fmt: skip
            _append(
                handle,
                f'[pacs]\nhost = "127.0.0.1"\nport = {pacs_a.dicom_port}\n'
                f'ae_title = "{pacs_a.ae_title}"\nretrieve = "move"\nschedule = "off"\n\n'
                f'[answering]\ninstitution_name = "{org}"\n[[answering.rules]]\norg = "org-b"\n',
            )
            agents.append(handle)
        studies = [
            make_ct_study(root / f"s{i}", instances=4, patient=PATIENT, accession=f"B{i}")
            for i in range(max(args.moves, 1))
        ]
        pacs_a.load([f for s in studies for f in s.files])
        for handle in agents:
            federation.start_agent(handle, timeout=60)
        time.sleep(3)  # every agent's first long poll is open
        _find(qr_ports[1], "QR1")  # warm up (key fetches, first associations)

        finds: dict[int, list[float]] = {}
        for n in SIZES:
            times = []
            for _ in range(args.finds):
                seconds, matches = _find(qr_ports[n], f"QR{n}")
                assert matches == len(studies), f"{matches} matches with {n} orgs"
                times.append(seconds)
            finds[n] = times
        moves = [_move(qr_ports[1], "QR1", s.study_instance_uid) for s in studies[: args.moves]]
    finally:
        federation.stop()
        for server in servers:
            server.stop()

    lines = [
        "",
        "## federated query/retrieve (issue 12)",
        "",
        f"Run: `.venv/bin/python bench/qr_bench.py --finds {args.finds} --moves {args.moves}` "
        f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC).",
        "",
        f"Machine: `{' '.join(platform.uname())}`; Python {platform.python_version()}. Real "
        "processes on loopback: hub (SQLite), 13 agents, 2 Orthancs, all on this machine; "
        "agents online (long polling). Other jobs shared the machine.",
        "",
        f"C-FIND (study root, by PatientID; the patient has {len(studies)} studies; every "
        "answering organization uses the same Orthanc, so each answers the same studies and "
        "B merges them by study UID) from the viewer's association request to the final "
        "response (pynetdicom SCU in the bench process):",
        "",
        "| answering orgs | runs | p50 s | p95 s | max s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        t = finds[n]
        lines.append(
            f"| {n} | {len(t)} | {statistics.median(t):.3f} | {_pct(t, 0.95):.3f} | {max(t):.3f} |"
        )
    lines += [
        "",
        "C-MOVE of a 4-instance CT study from org-a1 to B's Orthanc (A pulls it from its "
        "PACS at priority 0, seals, uploads; B downloads, stores, passes it on):",
        "",
        "| study | to first instance s | to the end s | completed |",
        "|---:|---:|---:|---:|",
    ]
    for i, (first, total, done) in enumerate(moves, 1):
        lines.append(f"| {i} | {first:.2f} | {total:.2f} | {done} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(Path(__file__).parent / "RESULTS.md", "a") as out:
            out.write(text)
    subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
