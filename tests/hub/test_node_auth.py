"""Who may call the node API: only verified, unrevoked sites, each only as itself."""

from __future__ import annotations

from pathlib import Path

import httpx

from certs.tls import client_ssl_context
from tests.factories.pki import foreign_ca_site
from tests.hub.conftest import EnrolledSite, Hub

PROBLEM_JSON = "application/problem+json"
NODE_REQUESTS = [
    ("GET", "/node/v1/whoami"),
    ("GET", "/node/v1/deliveries"),
    ("GET", "/node/v1/orgs/org-a/keys"),
    ("PUT", "/node/v1/bundles/" + "0" * 32),
    ("POST", "/node/v1/bundles/" + "0" * 32 + "/complete"),
]


def _never_succeeds(client: httpx.Client, method: str, path: str) -> str:
    """Send one request; return how it was refused. Fails the test if it succeeded."""
    try:
        response = client.request(method, path, content=b"{}")
    except httpx.TransportError as exc:  # handshake refused or connection reset by the hub
        return f"transport error {type(exc).__name__}"
    assert response.status_code == 401, (method, path, response.status_code, response.text)
    return "401"


def test_whoami_names_the_site_from_its_certificate(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a = sites[0]
    response = site_a.client.get("/node/v1/whoami")
    assert response.status_code == 200
    assert response.json() == {"org": "org-a", "site": "site-a", "serial": f"{site_a.serial:x}"}


def test_node_api_refuses_a_client_without_certificate(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    anonymous = hub.client(hub.node_url)  # trusts the hub, presents no certificate
    for method, path in NODE_REQUESTS:
        _never_succeeds(anonymous, method, path)
    # The same paths work for an enrolled site over the same listener (the refusal is real).
    assert sites[0].client.get("/node/v1/whoami").status_code == 200


def test_node_api_refuses_a_certificate_from_another_ca(
    hub: Hub, sites: tuple[EnrolledSite, ...], tmp_path: Path
) -> None:
    # Same org/site names as an enrolled site, but issued by an unrelated CA.
    stranger = foreign_ca_site(tmp_path, "org-a", "site-a")
    context = client_ssl_context(
        hub.ca_file, cert_file=stranger.cert_file, key_file=stranger.key_file
    )
    with httpx.Client(base_url=hub.node_url, verify=context, timeout=10.0) as client:
        for method, path in NODE_REQUESTS:
            outcome = _never_succeeds(client, method, path)
            assert outcome.startswith("transport error"), "foreign CA must fail the handshake"


def test_site_cannot_upload_a_bundle_in_another_sites_name(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    # A seals a bundle whose signed manifest says it comes from org-b/site-b.
    forged = site_a.seal(b"x" * 3000, ["org-c"], sender=("org-b", "site-b"))
    response = site_a.put_header(forged)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "org-b/site-b" in response.json()["detail"]
    # Even signed with B's own key, A's certificate still does not make it B.
    forged_b = site_a.seal(
        b"x" * 3000, ["org-c"], sender=("org-b", "site-b"), signing_key=site_b.signing_key
    )
    assert site_a.put_header(forged_b).status_code == 403
    # Nothing was stored: the bundle is unknown, to B as well.
    for bundle_id in (forged.bundle_id, forged_b.bundle_id):
        assert site_b.status(bundle_id).status_code == 404
        assert site_a.put_chunk(bundle_id, 0, forged.chunks[0]).status_code == 404


def test_site_cannot_add_chunks_to_or_complete_another_sites_bundle(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    sealed = site_b.seal(b"y" * 2500, ["org-c"])
    assert site_b.put_header(sealed).status_code == 200
    assert site_a.put_chunk(sealed.bundle_id, 0, sealed.chunks[0]).status_code == 403
    assert site_a.complete(sealed.bundle_id).status_code == 403
    # A is neither sender nor recipient: the bundle's status is not even shown to it.
    assert site_a.status(sealed.bundle_id).status_code == 404
    assert site_b.status(sealed.bundle_id).json()["received_chunks"] == []


def test_site_reads_only_its_own_organizations_deliveries(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, site_c = sites
    to_b = site_c.seal(b"for b" * 500, ["org-b"])
    to_a = site_c.seal(b"for a" * 500, ["org-a"])
    site_c.push(to_b)
    site_c.push(to_a)

    assert [d["bundle_id"] for d in site_a.deliveries()] == [to_a.bundle_id]
    assert [d["bundle_id"] for d in site_b.deliveries()] == [to_b.bundle_id]
    assert site_c.deliveries() == []  # the sender is not a recipient

    # A asks for B's delivery directly: it does not exist for A.
    paths = [
        ("GET", f"/node/v1/deliveries/{to_b.bundle_id}/header"),
        ("GET", f"/node/v1/deliveries/{to_b.bundle_id}/chunks/0"),
        ("POST", f"/node/v1/deliveries/{to_b.bundle_id}/ack"),
        ("GET", f"/node/v1/bundles/{to_b.bundle_id}"),
    ]
    for method, path in paths:
        response = site_a.client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
    # A's failed ack did not acknowledge B's delivery.
    assert [d["bundle_id"] for d in site_b.deliveries()] == [to_b.bundle_id]
    assert site_b.client.get(f"/node/v1/deliveries/{to_b.bundle_id}/header").status_code == 200


def test_public_listener_does_not_serve_node_endpoints(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    public = hub.public_client()  # server TLS only: no client certificate is asked for
    assert public.get("/api/v1/health").status_code == 200
    for method, path in NODE_REQUESTS:
        response = public.request(method, path, content=b"{}")
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        body = response.json()
        assert body["status"] == 404
        assert "node API" in body["detail"]
    # and the node listener serves nothing of the public API (nor its schema)
    site_a = sites[0]
    for path in ("/api/v1/health", "/api/v1/orgs", "/openapi.json", "/docs", "/redoc"):
        response = site_a.client.get(path)
        assert response.status_code == 404, (path, response.text)


def test_revoked_certificate_is_refused_on_the_very_next_request(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    assert site_a.client.get("/node/v1/whoami").status_code == 200  # keep-alive connection open
    # The network admin revokes A's certificate from another process (its own CADirectory).
    hub.registry().revoke(site_a.serial, reason="laptop stolen")
    response = site_a.client.get("/node/v1/whoami")
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "revoked" in response.json()["detail"]
    sealed = site_a.seal(b"z" * 100, ["org-b"], recipients=site_b.recipient_keys("org-b"))
    assert site_a.put_header(sealed).status_code == 403
    assert site_a.client.get("/node/v1/deliveries").status_code == 403
    # Other sites are unaffected.
    assert site_b.client.get("/node/v1/whoami").status_code == 200
