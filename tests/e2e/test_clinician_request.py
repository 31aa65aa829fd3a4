"""A clinician's request goes before bulk sharing, end to end with real processes.

Agent A shares everything with org B at the rule's bulk priority, uploaded only in an off-peak
window that is hours away. A study pushed by a modality therefore waits. A study the operator
pulls on request (`hexchange-agent pull`, default priority 10) from the clinic PACS (Orthanc)
is sent at once and reaches org B, while the bulk study still waits.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.factories.dicom import make_ct_study, pixel_bytes
from tests.factories.orthanc import OrthancUnavailable, start_orthanc
from tests.federation import BIN, Federation, storescu

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk storescu not installed"),
]


def _window_hours_away() -> str:
    start = dt.datetime.now() + dt.timedelta(hours=6)
    end = start + dt.timedelta(minutes=30)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_a_pulled_study_overtakes_bulk_waiting_for_off_peak(tmp_path: Path) -> None:
    federation = Federation(tmp_path / "fed", quiet_period=1.0)
    orthanc = None
    try:
        a, b = federation.start_clinic_and_archive()
        try:
            orthanc = start_orthanc(tmp_path / "pacs", {"agent-a": (a.ae_title, a.dicom_port)})
        except OrthancUnavailable as exc:
            pytest.skip(str(exc))
        text = a.config_file.read_text()
        text = text.replace(
            "[upload]\n", f'[upload]\noffpeak_windows = ["{_window_hours_away()}"]\n'
        )
        text += (
            f'\n[pacs]\nhost = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
            f'ae_title = "{orthanc.ae_title}"\nretrieve = "move"\nschedule = "off"\n'
        )
        a.config_file.write_text(text)
        federation.start_agent(a)

        bulk = make_ct_study(tmp_path / "bulk", instances=3)
        assert storescu(a.dicom_port, a.ae_title, bulk.files).returncode == 0
        asked = make_ct_study(tmp_path / "asked", instances=4)
        orthanc.load(asked.files)

        def queued() -> list[dict[str, object]]:
            out = subprocess.run(
                [
                    str(BIN / "hexchange-agent"),
                    "queue",
                    "--config",
                    str(a.config_file),
                    "--json",
                    "--all",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            return list(json.loads(out.stdout))

        federation.wait_for(lambda: len(queued()) == 1, 30, "the bulk study sealed")
        pulled = subprocess.run(
            [
                str(BIN / "hexchange-agent"),
                "pull",
                "--config",
                str(a.config_file),
                "--study-uid",
                asked.study_instance_uid,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        federation.wait_for(lambda: len(b.received_files()) == 4, 60, "the requested study at B")
        assert pixel_bytes(b.received_files()) == pixel_bytes(asked.files)

        time.sleep(2)  # the bulk study is still waiting for its window
        rows = {str(r["study_uid"]): r for r in queued()}
        assert rows[bulk.study_instance_uid]["state"] == "sealed"
        assert rows[bulk.study_instance_uid]["priority"] == 100
        assert rows[asked.study_instance_uid]["state"] == "delivered"
        assert rows[asked.study_instance_uid]["priority"] == 10
        assert len(b.received_files()) == 4
    finally:
        federation.stop()
        if orthanc is not None:
            orthanc.stop()
