"""Delivery: the recipient org's site downloads, opens and acks; nobody else sees it."""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hub.conftest import EnrolledSite, Hub
from wire.envelope import open_data_key, open_stream, parse_header, verify_header


def test_recipient_downloads_opens_and_acks(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, site_c = sites
    payload = os.urandom(4 * 1024 + 17)
    sealed = site_a.seal(payload, ["org-b"], chunk_size=1024)
    site_a.push(sealed)
    bundle_id = sealed.bundle_id

    listed = site_b.deliveries()
    assert [d["bundle_id"] for d in listed] == [bundle_id]
    delivery = listed[0]
    assert (delivery["sender_org"], delivery["sender_site"]) == ("org-a", "site-a")
    assert delivery["mode"] == "identified"
    assert delivery["chunk_count"] == 5
    assert delivery["payload_bytes"] == len(payload)

    response = site_b.client.get(f"/node/v1/deliveries/{bundle_id}/header")
    assert response.status_code == 200, response.text
    header = parse_header(response.content)
    assert header.digest() == sealed.header.digest()
    # The receiver checks the sender's signature with the certificate the hub lists.
    sender_cert = x509.load_pem_x509_certificate(delivery["sender_certificate_pem"].encode())
    sender_cert.verify_directly_issued_by(site_b.ca_cert)
    sender_key = sender_cert.public_key()
    assert isinstance(sender_key, ec.EllipticCurvePublicKey)
    verify_header(header, sender_key)

    chunks = []
    for index in range(header.manifest.chunk_count):
        response = site_b.client.get(f"/node/v1/deliveries/{bundle_id}/chunks/{index}")
        assert response.status_code == 200, response.text
        chunks.append(response.content)
    out_of_range = site_b.client.get(f"/node/v1/deliveries/{bundle_id}/chunks/5")
    assert out_of_range.status_code == 404
    data_key = open_data_key(header, key_id=site_b.own_key_id(), private_key=site_b.encryption_key)
    assert b"".join(open_stream(header, data_key, chunks)) == payload

    # Org C was never addressed: nothing listed, nothing to fetch, nothing to ack.
    assert site_c.deliveries() == []
    assert site_c.client.get(f"/node/v1/deliveries/{bundle_id}/header").status_code == 404
    assert site_c.client.get(f"/node/v1/deliveries/{bundle_id}/chunks/0").status_code == 404
    assert site_c.client.post(f"/node/v1/deliveries/{bundle_id}/ack").status_code == 404

    assert site_b.client.post(f"/node/v1/deliveries/{bundle_id}/ack").status_code == 204
    assert site_b.deliveries() == []
    # Acking again is harmless (an agent may retry after a lost response).
    assert site_b.client.post(f"/node/v1/deliveries/{bundle_id}/ack").status_code == 204
    assert site_b.deliveries() == []
    assert site_c.deliveries() == []


def test_an_incomplete_bundle_is_not_delivered(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    sealed = site_a.seal(os.urandom(3000), ["org-b"], chunk_size=1024)
    assert site_a.put_header(sealed).status_code == 200
    for index, data in sealed.chunks.items():
        assert site_a.put_chunk(sealed.bundle_id, index, data).status_code == 204
    # Every chunk is there but the sender has not completed: not yet a delivery.
    assert site_b.deliveries() == []
    assert site_b.client.get(f"/node/v1/deliveries/{sealed.bundle_id}/header").status_code == 404
    assert site_a.complete(sealed.bundle_id).status_code == 200
    assert [d["bundle_id"] for d in site_b.deliveries()] == [sealed.bundle_id]


def test_every_site_of_the_recipient_org_sees_the_delivery_until_one_acks(hub: Hub) -> None:
    sender = hub.enroll("org-a", "site-a")
    b1, b2 = hub.enroll("org-b", "site-1"), hub.enroll("org-b", "site-2")
    hub.allow("org-a", "site-a", "org-b")
    sealed = sender.seal(os.urandom(1500), ["org-b"])
    assert len(sealed.header.stanzas) == 2  # wrapped to both published keys of org-b
    sender.push(sealed)
    assert [d["bundle_id"] for d in b1.deliveries()] == [sealed.bundle_id]
    assert [d["bundle_id"] for d in b2.deliveries()] == [sealed.bundle_id]
    assert b2.client.post(f"/node/v1/deliveries/{sealed.bundle_id}/ack").status_code == 204
    assert b1.deliveries() == []
