"""Research collections over DICOMweb, with the real `dicomweb-client` against a running hub
(TLS, API tokens) on SQLite and PostgreSQL: STOW-RS by an admin, QIDO-RS matching and paging,
WADO-RS of studies, instances, metadata, frames, bulk data and thumbnails; the hub's own
verification quarantining what is not de-identified; grants (404 without, revoke at once)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from sqlmodel import select

from hub.collections import versions
from hub.collections.models import CollectionQuarantine
from tests.factories.collections import deidentified_study, make_collection, part10
from tests.hub.conftest import Hub

COLLECTION = "lung-study"


def _session(hub: Hub, client: Any) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    session.verify = str(hub.ca_file)
    session.headers["Authorization"] = client.headers["Authorization"]
    hub._closers.append(session.close)
    return session


def _dicomweb(hub: Hub, client: Any, name: str = COLLECTION) -> DICOMwebClient:
    return DICOMwebClient(
        url=f"{hub.public_url}/dicomweb/collections/{name}", session=_session(hub, client)
    )


@pytest.fixture
def people(hub: Hub) -> dict[str, Any]:
    admin = hub.person("netadmin", "network-admin")
    researcher = hub.person("rita", "researcher", "org-b")
    other = hub.person("otto", "researcher", "org-b")
    orgadmin = hub.person("olga", "org-admin", "org-a")
    with hub.session() as session:
        make_collection(session, hub.settings, COLLECTION, "org-a")
    response = admin.post(f"/api/v1/collections/{COLLECTION}/grants", json={"username": "rita"})
    assert response.status_code == 204, response.text
    return {"admin": admin, "researcher": researcher, "other": other, "orgadmin": orgadmin}


def test_stow_qido_wado_with_dicomweb_client(hub: Hub, people: dict[str, Any]) -> None:
    chest = deidentified_study(3, modality="CT", study_date="20240105", body_part="CHEST")
    head = deidentified_study(2, modality="MR", study_date="20250310", body_part="HEAD")
    admin = _dicomweb(hub, people["admin"])
    stored = admin.store_instances([dcmread(io.BytesIO(f)) for f in chest.files + head.files])
    assert len(stored.ReferencedSOPSequence) == 5
    assert "FailedSOPSequence" not in stored

    web = _dicomweb(hub, people["researcher"])
    studies = web.search_for_studies()
    assert {s["0020000D"]["Value"][0] for s in studies} == {chest.study_uid, head.study_uid}
    ct = web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
    assert [s["0020000D"]["Value"][0] for s in ct] == [chest.study_uid]
    assert ct[0]["00201208"]["Value"] == [3]
    in_range = web.search_for_studies(search_filters={"StudyDate": "20250101-20251231"})
    assert [s["0020000D"]["Value"][0] for s in in_range] == [head.study_uid]
    listed = web.search_for_studies(
        search_filters={"StudyInstanceUID": f"{chest.study_uid},{head.study_uid}"}
    )
    assert len(listed) == 2
    series = web.search_for_series(search_filters={"BodyPartExamined": "HE*"})
    assert [s["0020000E"]["Value"][0] for s in series] == [head.series_uid]
    assert web.search_for_series(search_filters={"BodyPartExamined": "?EAD"})
    assert web.search_for_series(search_filters={"Modality": "US"}) == []
    # a study attribute matched at series level is returned with each series
    dated = web.search_for_series(search_filters={"StudyDate": "20240105"})
    assert [s["00080020"]["Value"] for s in dated] == [["20240105"]]
    instances = web.search_for_instances(
        study_instance_uid=chest.study_uid, series_instance_uid=chest.series_uid
    )
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(chest.sop_uids)

    # includefield=all returns every stored (de-identified) attribute, without bulk values
    everything = web.search_for_instances(
        study_instance_uid=head.study_uid, get_remaining=False, fields=["all"]
    )
    assert "00120062" in everything[0] and everything[0]["00120062"]["Value"] == ["YES"]

    # WADO-RS: the very bytes stored, in the transfer syntax they were stored in
    retrieved = web.retrieve_study(chest.study_uid)
    assert sorted(str(d.SOPInstanceUID) for d in retrieved) == sorted(chest.sop_uids)
    one = web.retrieve_instance(chest.study_uid, chest.series_uid, chest.sop_uids[0])
    assert part10(one) == chest.files[0]
    big = deidentified_study(1, size=1024)  # 2 MiB: streamed from its file in pieces
    assert len(big.files[0]) > 1 << 20
    admin.store_instances([dcmread(io.BytesIO(big.files[0]))])
    streamed = web.retrieve_instance(big.study_uid, big.series_uid, big.sop_uids[0])
    assert part10(streamed) == big.files[0]
    metadata = web.retrieve_instance_metadata(chest.study_uid, chest.series_uid, chest.sop_uids[0])
    pixel = metadata["7FE00010"]
    assert "BulkDataURI" in pixel and "InlineBinary" not in pixel
    bulk = web.retrieve_bulkdata(pixel["BulkDataURI"])
    assert bulk[0] == one.PixelData
    frames = web.retrieve_instance_frames(
        chest.study_uid, chest.series_uid, chest.sop_uids[0], frame_numbers=[1]
    )
    assert frames[0] == one.PixelData
    study_meta = web.retrieve_study_metadata(chest.study_uid)
    assert len(study_meta) == 3

    # rendered thumbnails for a browser
    base = f"{hub.public_url}/dicomweb/collections/{COLLECTION}"
    path = f"/studies/{chest.study_uid}/series/{chest.series_uid}/instances/{chest.sop_uids[0]}"
    session = _session(hub, people["researcher"])
    png = session.get(base + path + "/thumbnail", headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (64, 64)
    jpeg = session.get(base + path + "/rendered", headers={"Accept": "image/jpeg"})
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"

    # a transfer syntax the hub does not hold: 406 with what it can send, never a silent change
    refused = session.get(
        base + path,
        headers={"Accept": 'multipart/related; type="application/dicom"; '
                 "transfer-syntax=1.2.840.10008.1.2.4.50"},
    )  # fmt: skip
    assert refused.status_code == 406
    assert "1.2.840.10008.1.2.1" in refused.json()["detail"]


def test_paging_is_said_never_silent(hub: Hub, people: dict[str, Any]) -> None:
    admin = _dicomweb(hub, people["admin"])
    uids = []
    for _ in range(3):
        made = deidentified_study(1)
        admin.store_instances([dcmread(io.BytesIO(made.files[0]))])
        uids.append(made.study_uid)
    session = _session(hub, people["researcher"])
    base = f"{hub.public_url}/dicomweb/collections/{COLLECTION}/studies"
    first = session.get(base, params={"limit": 2})
    assert first.status_code == 200 and len(first.json()) == 2
    assert "offset=2" in first.headers["Warning"]
    rest = session.get(base, params={"limit": 2, "offset": 2})
    assert len(rest.json()) == 1 and "Warning" not in rest.headers
    got = [s["0020000D"]["Value"][0] for s in first.json() + rest.json()]
    assert sorted(got) == sorted(uids)
    bad = session.get(base, params={"PatientWeight": "70"})
    assert bad.status_code == 400 and "cannot be matched" in bad.json()["detail"]


def test_identified_instance_is_quarantined_and_never_served(
    hub: Hub, people: dict[str, Any]
) -> None:
    made = deidentified_study(1)
    original = made.originals[0]
    admin = _dicomweb(hub, people["admin"])
    session = _session(hub, people["admin"])
    url = f"{hub.public_url}/dicomweb/collections/{COLLECTION}/studies"
    boundary = "hexchange-test"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + part10(original)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = session.post(
        url, data=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                 f"boundary={boundary}"},
    )  # fmt: skip
    assert response.status_code == 409, response.text
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0110]
    assert admin.search_for_instances() == []
    with hub.session() as db:
        row = db.exec(select(CollectionQuarantine)).one()
    codes = {f["code"] for f in json.loads(row.findings)}
    assert {"removed-attribute-present", "identity-not-marked"} <= codes
    assert original.PatientID not in row.findings and "Quixote" not in row.findings


def test_no_grant_is_404_everywhere_and_revoke_is_at_once(hub: Hub, people: dict[str, Any]) -> None:
    made = deidentified_study(1)
    _dicomweb(hub, people["admin"]).store_instances([dcmread(io.BytesIO(made.files[0]))])
    study, series, sop = made.study_uid, made.series_uid, made.sop_uids[0]
    paths = [
        "/studies", "/series", "/instances", f"/studies/{study}", f"/studies/{study}/series",
        f"/studies/{study}/metadata", f"/studies/{study}/series/{series}",
        f"/studies/{study}/series/{series}/instances",
        f"/studies/{study}/series/{series}/instances/{sop}",
        f"/studies/{study}/series/{series}/instances/{sop}/metadata",
        f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
        f"/studies/{study}/series/{series}/instances/{sop}/thumbnail",
        f"/studies/{study}/series/{series}/instances/{sop}/rendered",
        f"/studies/{study}/series/{series}/instances/{sop}/bulk/7FE00010",
    ]  # fmt: skip
    base = f"/dicomweb/collections/{COLLECTION}"
    other, researcher = people["other"], people["researcher"]
    for path in paths:
        denied = other.get(base + path)
        assert denied.status_code == 404, path
        assert study not in denied.text and COLLECTION in denied.text  # names only the asked
        assert researcher.get(base + path).status_code == 200, path
    assert other.get("/dicomweb/collections/no-such/studies").status_code == 404
    assert other.post(base + "/studies", content=b"").status_code in (403, 404)
    revoked = people["admin"].delete(f"/api/v1/collections/{COLLECTION}/grants/rita")
    assert revoked.status_code == 204
    assert researcher.get(base + "/studies").status_code == 404  # the very next request


def test_published_version_downloads_as_zip_with_manifest(hub: Hub, people: dict[str, Any]) -> None:
    made = deidentified_study(2)
    _dicomweb(hub, people["admin"]).store_instances([dcmread(io.BytesIO(f)) for f in made.files])
    published = people["admin"].post(
        f"/api/v1/collections/{COLLECTION}/versions", json={"note": "paper 1"}
    )
    assert published.status_code == 201, published.text
    v1 = published.json()
    later = deidentified_study(1)
    _dicomweb(hub, people["admin"]).store_instances([dcmread(io.BytesIO(later.files[0]))])
    download = people["researcher"].get(f"/api/v1/collections/{COLLECTION}/versions/1/download")
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["content_hash"] == v1["content_hash"] and v1["instance_count"] == 2
    names = [e["path"] for e in manifest["instances"]]
    assert sorted(archive.read(n) for n in names) == sorted(made.files)  # not the later one
    pairs = [(e["sop_instance_uid"], e["sha256"]) for e in manifest["instances"]]
    assert versions.content_hash(pairs) == v1["content_hash"]


def test_cors_for_a_viewer_on_another_origin(hub: Hub) -> None:
    # the running hub has no origins configured: no CORS headers, the API says nothing
    client = hub.public_client()
    preflight = client.options(
        f"/dicomweb/collections/{COLLECTION}/studies",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_the_browser_session_cookie_reads_too(hub: Hub, people: dict[str, Any]) -> None:
    made = deidentified_study(1)
    _dicomweb(hub, people["admin"]).store_instances([dcmread(io.BytesIO(made.files[0]))])
    hub.person("bea", "researcher", "org-b", password="a long browser password")
    granted = people["admin"].post(
        f"/api/v1/collections/{COLLECTION}/grants", json={"username": "bea"}
    )
    assert granted.status_code == 204
    browser = hub.public_client()
    login = browser.post(
        "/api/v1/auth/login", json={"username": "bea", "password": "a long browser password"}
    )
    assert login.status_code == 200, login.text
    studies = browser.get(f"/dicomweb/collections/{COLLECTION}/studies")
    assert studies.status_code == 200
    assert studies.json()[0]["0020000D"]["Value"] == [made.study_uid]
    stow = browser.post(f"/dicomweb/collections/{COLLECTION}/studies", content=b"")
    assert stow.status_code == 403  # a researcher never stores (and no CSRF header either)


def test_queries_are_audited_with_their_keys_not_values(hub: Hub, people: dict[str, Any]) -> None:
    import time

    from hub.models import AuditEvent

    search = f"/dicomweb/collections/{COLLECTION}/studies"
    response = people["researcher"].get(search, params={"PatientName": "Doe^Jane"})
    assert response.status_code == 204
    deadline = time.monotonic() + 10
    while True:
        with hub.session() as session:
            rows = session.exec(select(AuditEvent).where(AuditEvent.actor == "user:rita")).all()
        found = [r for r in rows if r.subject.endswith("/studies")]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found, "the query was not audited"
    assert "PatientName" in found[-1].detail and "Doe" not in found[-1].detail
