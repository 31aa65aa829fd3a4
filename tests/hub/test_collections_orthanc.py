"""Orthanc with its DICOMweb plugin (Debian orthanc-dicomweb), configured with the hub as a
DICOMweb server (a researcher's API token, the network CA): it searches a collection and
retrieves a study into its own store, byte for byte what the hub holds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from tests.factories.collections import deidentified_study, make_collection
from tests.factories.orthanc import OrthancUnavailable, start_orthanc
from tests.hub.conftest import Hub

NAME = "teaching"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def test_orthanc_retrieves_a_collection_study(hub: Hub, tmp_path: Path) -> None:
    if not PLUGIN.exists():
        pytest.fail("the Orthanc DICOMweb plugin is missing: apt-get install orthanc-dicomweb")
    admin = hub.person("netadmin", "network-admin")
    reader = hub.person("rita", "researcher", "org-b")
    with hub.session() as session:
        make_collection(session, hub.settings, NAME, "org-b")
    assert admin.post(f"/api/v1/collections/{NAME}/grants", json={"username": "rita"}).is_success
    made = deidentified_study(3)
    for data in made.files:  # the admin's STOW-RS, as a curator would
        boundary = "b0undary"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data + f"\r\n--{boundary}--\r\n".encode()
        )  # fmt: skip
        stored = admin.post(
            f"/dicomweb/collections/{NAME}/studies", content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                     f"boundary={boundary}"},
        )  # fmt: skip
        assert stored.status_code == 200, stored.text

    token = reader.headers["Authorization"]
    config: dict[str, Any] = {
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {
                "hub": {
                    "Url": f"{hub.public_url}/dicomweb/collections/{NAME}/",
                    "HttpHeaders": {"Authorization": token},
                }
            },
        },
        "HttpsCACertificates": str(hub.ca_file),
        "HttpsVerifyPeers": True,
    }
    try:
        orthanc = start_orthanc(tmp_path / "orthanc", {}, plugins=[str(PLUGIN)],
                                extra_config=config)  # fmt: skip
    except OrthancUnavailable as exc:
        pytest.fail(str(exc))
    try:
        found = orthanc.rest("POST", "/dicom-web/servers/hub/qido", json={"Uri": "/studies"})
        # Orthanc's own flavour of the answer: {"Value": "<uid>"} per attribute
        assert [s["0020000D"]["Value"] for s in found] == [made.study_uid]
        orthanc.rest(
            "POST", "/dicom-web/servers/hub/retrieve",
            json={"Resources": [{"Study": made.study_uid}]},
        )  # fmt: skip
        assert orthanc.sop_uids() == set(made.sop_uids)
        # what Orthanc stored is what the hub serves (its own DICOMweb, read back)
        own = DICOMwebClient(url=f"{orthanc.url}/dicom-web")
        for sop in made.sop_uids:
            got = own.retrieve_instance(made.study_uid, made.series_uid, sop)
            original = dcmread(io.BytesIO(made.files[made.sop_uids.index(sop)]))
            assert got.PixelData == original.PixelData
            assert str(got.PatientName) == str(original.PatientName)
    finally:
        orthanc.stop()
