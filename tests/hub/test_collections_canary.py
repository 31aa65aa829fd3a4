"""The canary: a study with a unique marker in every attribute of PS3.15 Table E.1-1, in a
private block and burned into the pixels goes through a site's de-identification (the agent's
`deidentify_file`: basic profile, Clean Pixel Data with OCR) into a collection. A crawl of every
DICOMweb answer a researcher can get finds none of the markers and none of the original UIDs;
the burned-in text is blanked. The untouched canary sent to the collection is quarantined by
the hub's own check, and nothing of it is served."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import requests
from pydicom import dcmread

from deidentify.engine import PseudonymKeys
from deidentify.pixels import PixelPolicy, TesseractBackend
from deidentify.profile import Option, Profile
from node_agent.deid_step import PixelStage, deidentify_file
from tests.factories.canary import canary_instance
from tests.factories.collections import make_collection, part10
from tests.hub.conftest import Hub

NAME = "canary"


def _session(hub: Hub, client: Any) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(hub.ca_file)
    session.headers["Authorization"] = client.headers["Authorization"]
    hub._closers.append(session.close)
    return session


def _stow(session: requests.Session, url: str, data: bytes) -> requests.Response:
    boundary = "canary-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return session.post(
        url,
        data=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                 f"boundary={boundary}"},
    )  # fmt: skip


def test_canary_study_leaves_no_marker_in_any_dicomweb_answer(hub: Hub, tmp_path: Path) -> None:
    canary = canary_instance()
    source, target = tmp_path / "canary.dcm", tmp_path / "deid.dcm"
    canary.ds.save_as(source, enforce_file_format=True)
    profile = Profile(frozenset({Option.CLEAN_PIXEL_DATA}))
    deidentify_file(
        source, target, profile, PseudonymKeys(b"canary-site-key-" * 2),
        PixelStage(PixelPolicy.default(), TesseractBackend()),
    )  # fmt: skip
    admin = _session(hub, hub.person("netadmin", "network-admin"))
    reader = _session(hub, hub.person("rita", "researcher", "org-b"))
    with hub.session() as session:
        make_collection(session, hub.settings, NAME, "org-b", profile=["clean-pixel-data"])
    grant = admin.post(
        f"{hub.public_url}/api/v1/collections/{NAME}/grants", json={"username": "rita"}
    )
    assert grant.status_code == 204, grant.text
    base = f"{hub.public_url}/dicomweb/collections/{NAME}"

    refused = _stow(admin, base + "/studies", part10(canary.ds))  # the hub checks again
    assert refused.status_code == 409, refused.text
    stored = _stow(admin, base + "/studies", target.read_bytes())
    assert stored.status_code == 200, stored.text

    answers: list[bytes] = []

    def get(url: str, accept: str | None = None) -> requests.Response:
        response = reader.get(url, headers={"Accept": accept} if accept else {})
        assert response.status_code == 200, (url, response.text)
        answers.append(response.content)
        return response

    studies = get(base + "/studies?includefield=all").json()
    assert len(studies) == 1
    get(base + "/series?includefield=all")
    instances = get(base + "/instances?includefield=all").json()
    study = studies[0]["0020000D"]["Value"][0]
    get(f"{base}/studies/{study}/metadata")
    retrieved: list[bytes] = []
    for item in instances:
        url = item["00081190"]["Value"][0]
        whole = get(url)
        retrieved.append(whole.content)
        meta = get(url + "/metadata").json()[0]
        get(meta["7FE00010"]["BulkDataURI"])
        get(url + "/frames/1")
        get(url + "/rendered", "image/png")
        get(url + "/thumbnail", "image/jpeg")
    get(f"{base}/studies/{study}")
    crawl = b"\n".join(answers)
    folded = crawl.lower()
    leaked = [m for m in canary.markers if m.lower().encode() in folded]
    assert leaked == [], f"{len(leaked)} markers served, e.g. {leaked[:5]}"
    old_uids = [u for u in canary.uids if u.encode() in crawl]
    assert old_uids == [], f"{len(old_uids)} original UIDs served"
    assert b"CANARYBURN" not in crawl and b"Canary" not in crawl

    # the burned-in text is blanked in what is served
    served = dcmread(io.BytesIO(target.read_bytes()))
    assert len(retrieved) == 1 and str(served.SOPInstanceUID).encode() in crawl  # it was read
    box = canary.burned_box
    assert box is not None
    region = served.pixel_array[box.top : box.top + box.height, box.left : box.left + box.width]
    assert np.ptp(region) == 0, "the burned-in text region still varies"
    assert str(served.BurnedInAnnotation) == "NO"
