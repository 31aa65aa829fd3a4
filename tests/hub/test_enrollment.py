"""Enrollment through the public listener: one-time, unexpired tokens bound to a site."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlmodel import select

from certs.keys import new_site_key
from certs.registry import CADirectory
from certs.tls import client_ssl_context
from certs.tokens import issue_token
from hub.bootstrap import load_receipt_key
from hub.models import Site
from tests.hub.conftest import Hub, enroll_request
from wire.api import EnrollResponse

PROBLEM_JSON = "application/problem+json"


def _subject(cert: x509.Certificate) -> tuple[str, str]:
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    site = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return str(org), str(site)


def _published_sites(hub: Hub, org: str) -> list[str]:
    with hub.session() as session:
        rows = session.exec(select(Site).where(Site.org == org)).all()
        return [row.site for row in rows if row.certificate_pem]


def test_enrollment_returns_a_certificate_the_ca_and_the_receipt_key(hub: Hub) -> None:
    site = hub.enroll("org-a", "site-a")
    assert _subject(site.cert) == ("org-a", "site-a")
    assert site.response.ca_pem.encode() == hub.ca_file.read_bytes()
    site.cert.verify_directly_issued_by(site.ca_cert)
    receipt_public = load_receipt_key(hub.settings.receipt_key_file).public_key()
    assert site.receipt_public_key.public_numbers() == receipt_public.public_numbers()
    assert site.client.get("/node/v1/whoami").json()["site"] == "site-a"
    assert site.own_key_id()  # the encryption key is published under a key id


def test_a_token_works_once(hub: Hub) -> None:
    token = hub.token("org-a", "site-a")
    first = hub.post_enroll(enroll_request(token, "org-a", "site-a").request)
    assert first.status_code == 200, first.text
    EnrollResponse.model_validate(first.json())

    second = hub.post_enroll(enroll_request(token, "org-a", "site-a").request)
    assert second.status_code == 403, second.text
    assert second.headers["content-type"].startswith(PROBLEM_JSON)
    assert "already used" in second.json()["detail"]
    # Only the first enrollment produced a certificate.
    issued = [r for r in CADirectory(hub.settings.ca_dir).list_issued() if r.site == "site-a"]
    assert len(issued) == 1


def test_an_expired_token_is_refused(hub: Hub) -> None:
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = hub.token("org-a", "site-a", ttl=dt.timedelta(hours=1), now=two_hours_ago)
    response = hub.post_enroll(enroll_request(token, "org-a", "site-a").request)
    assert response.status_code == 403, response.text
    assert "expired" in response.json()["detail"]
    assert _published_sites(hub, "org-a") == []
    assert CADirectory(hub.settings.ca_dir).list_issued() == []


def test_a_token_from_another_ca_is_refused(hub: Hub, tmp_path: Path) -> None:
    other = CADirectory(tmp_path / "other-ca")
    token = issue_token(other.init("Other network"), org="org-a", site="site-a")
    response = hub.post_enroll(enroll_request(token, "org-a", "site-a").request)
    assert response.status_code == 403, response.text
    assert "signature" in response.json()["detail"]


def test_the_token_decides_the_name_not_the_csr(hub: Hub) -> None:
    token = hub.token("org-a", "site-x")
    # The agent asks for another org and site in its CSR.
    attempt = enroll_request(token, "org-evil", "site-y")
    response = hub.post_enroll(attempt.request)
    assert response.status_code == 200, response.text
    body = EnrollResponse.model_validate(response.json())
    assert (body.org, body.site) == ("org-a", "site-x")
    site = hub.site_from(attempt, body)
    assert _subject(site.cert) == ("org-a", "site-x")
    assert site.client.get("/node/v1/whoami").json()["site"] == "site-x"
    assert _published_sites(hub, "org-a") == ["site-x"]
    assert _published_sites(hub, "org-evil") == []


def test_an_encryption_key_not_signed_by_the_csr_key_is_refused(hub: Hub) -> None:
    token = hub.token("org-a", "site-a")
    attempt = enroll_request(token, "org-a", "site-a", key_signer=new_site_key())
    response = hub.post_enroll(attempt.request)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "not signed by the key in the CSR" in response.json()["detail"]
    # Checked before anything was signed: no key published, no certificate issued, and the
    # token is still good for a correct request.
    assert _published_sites(hub, "org-a") == []
    assert CADirectory(hub.settings.ca_dir).list_issued() == []
    retry = hub.post_enroll(enroll_request(token, "org-a", "site-a").request)
    assert retry.status_code == 200, retry.text


def test_malformed_enrollment_requests_are_problem_json(hub: Hub) -> None:
    attempt = enroll_request(hub.token("org-a", "site-a"), "org-a", "site-a")
    body = attempt.request.model_dump(mode="json")
    body["encryption_public_key"] = "not base64!"
    with httpx.Client(verify=client_ssl_context(hub.ca_file), timeout=10.0) as client:
        response = client.post(hub.public_url + "/api/v1/enroll", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "encryption_public_key" in response.json()["detail"]
    # The token survived the malformed attempt.
    assert hub.post_enroll(attempt.request).status_code == 200
