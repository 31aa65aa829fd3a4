"""Certificate renewal over the node API: new key, same site, old signatures still verify."""

from __future__ import annotations

import datetime as dt

import httpx
from cryptography import x509

from certs.identity import site_identity_from_certificate
from certs.keys import build_csr, certificate_pem, new_site_key, private_key_pem
from certs.tls import client_ssl_context
from tests.hub.conftest import EnrolledSite, Hub, raw_public
from wire.api import OrgKeys, RenewRequest, RenewResponse, sign_encryption_key, verify_site_key


def _renew(site: EnrolledSite, key=None) -> httpx.Response:  # type: ignore[no-untyped-def]
    new_key = new_site_key()
    request = RenewRequest(
        csr_pem=build_csr(new_key, org="org-evil", site="other").decode(),
        encryption_key_signature=sign_encryption_key(
            key or new_key, raw_public(site.encryption_key)
        ),
    )
    response = site.client.post("/node/v1/renew", json=request.model_dump(mode="json"))
    response.new_key = new_key  # type: ignore[attr-defined]
    return response


def test_renewal_issues_a_new_certificate_for_the_same_site(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    # a bundle sealed (signed) with the first certificate, uploaded after renewal
    sealed_before = site_a.seal(b"x" * 3000, ["org-b"])

    response = _renew(site_a)
    assert response.status_code == 200, response.text
    cert = x509.load_pem_x509_certificate(
        RenewResponse.model_validate(response.json()).certificate_pem.encode()
    )
    identity = site_identity_from_certificate(cert)
    assert (identity.org, identity.site) == ("org-a", "site-a")  # not what the CSR asked
    assert cert.serial_number != site_a.serial

    # the new certificate works on the node API
    folder = site_a.cert_file.parent
    (folder / "new.pem").write_bytes(certificate_pem(cert))
    (folder / "new.key").write_bytes(private_key_pem(response.new_key))  # type: ignore[attr-defined]
    with httpx.Client(
        base_url=hub.node_url,
        verify=client_ssl_context(
            site_a.ca_file, cert_file=folder / "new.pem", key_file=folder / "new.key"
        ),
    ) as client:
        assert client.get("/node/v1/whoami").json()["serial"] == f"{cert.serial_number:x}"
        # the header signed before renewal still verifies and is accepted
        put = client.put(
            f"/node/v1/bundles/{sealed_before.bundle_id}", content=sealed_before.header.to_bytes()
        )
        assert put.status_code == 200, put.text

    # the published encryption key is now signed by the new certificate and still verifies
    keys = OrgKeys.model_validate(site_b.client.get("/node/v1/orgs/org-a/keys").json()).keys
    assert len(keys) == 1

    recipient = verify_site_key(keys[0], site_b.ca_cert, now=dt.datetime.now(dt.UTC))
    assert recipient.public_key.public_bytes_raw() == raw_public(site_a.encryption_key)


def test_renewal_with_a_foreign_key_signature_is_refused(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    response = _renew(site_a, key=new_site_key())  # encryption key signed by another key
    assert response.status_code == 403
    assert "not signed by the key in the CSR" in response.json()["detail"]


def test_revoked_site_cannot_renew_and_its_key_is_withdrawn(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    hub.registry().revoke(site_a.serial, reason="stolen laptop")
    assert _renew(site_a).status_code == 403
    keys = site_b.client.get("/node/v1/orgs/org-a/keys").json()["keys"]
    assert keys == []  # nobody encrypts to a revoked site any more


def test_revoking_the_newest_certificate_cannot_be_undone_with_an_older_one(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, _, _ = sites
    response = _renew(site_a)
    assert response.status_code == 200, response.text
    newest = x509.load_pem_x509_certificate(response.json()["certificate_pem"].encode())
    hub.registry().revoke(newest.serial_number, reason="site decommissioned")
    # the older certificate is not revoked itself, yet the site is
    assert site_a.client.get("/node/v1/whoami").status_code == 403
    assert _renew(site_a).status_code == 403
