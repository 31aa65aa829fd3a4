"""Adversarial cases against a real hub (both listeners, real TLS), each asserting the refusal
AND that nothing the hub keeps changed (files under its data folder, rows of every table).

To add a case: append an `Attack` to `ATTACKS` (one request, refused, no change), or write a
test below for an attack that needs several steps (renewal, expiry, quotas, disconnects).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from rich.console import Console
from sqlmodel import select

from certs.keys import build_csr, new_site_key
from certs.tls import client_ssl_context
from hub.bootstrap import init_hub
from hub.fleet_view import site_table
from hub.models import Bundle, QuotaRefusal, Site
from hub.settings import HubSettings
from tests.hub.conftest import EnrolledSite, Hub, enroll_request, raw_public, running_hub
from tests.ports import free_port
from tests.security.conftest import (
    HubFactory,
    assert_unchanged,
    fleet,
    raw_request,
    snapshot,
)
from wire.api import RenewRequest, sign_encryption_key

MIB = 1024 * 1024
PIECE = b"A" * 65536


@dataclass
class Target:
    """What every single-request attack may use: a hub with two sites and one started bundle."""

    hub: Hub
    a: EnrolledSite
    b: EnrolledSite
    c: EnrolledSite  # org-c: no bundle is addressed to it
    bundle_id: str
    public_ctx: ssl.SSLContext
    node_ctx_a: ssl.SSLContext
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Target], int | None]  # the HTTP status, None if the hub closed the connection
    refused_with: frozenset[int | None]
    detail_has: str = ""


def _stream(total: int) -> Iterator[bytes]:
    for _ in range(total // len(PIECE)):
        yield PIECE


def _chunked(total: int) -> Iterator[bytes]:
    for piece in _stream(total):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)


def _raw(
    port_of: str, method: str, path: str, headers: dict[str, str], body: Iterator[bytes], total: int
) -> Callable[[Target], int | None]:
    def run(t: Target) -> int | None:
        port = t.hub.settings.public_port if port_of == "public" else t.hub.settings.node_port
        ctx = t.public_ctx if port_of == "public" else t.node_ctx_a
        head = f"{method} {path.format(bundle=t.bundle_id)} HTTP/1.1\r\nHost: localhost\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        response = raw_request(port, ctx, head, body)
        # The hub answered before the client could push its whole body.
        assert response.sent < total, f"the hub took all {response.sent} bytes before refusing"
        t.extra["last"] = response.body
        return response.status

    return run


def _enroll_with_key(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> Callable[[Target], int]:
    def run(t: Target) -> int:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site-x")]))
            .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
        )
        attempt = enroll_request(t.hub.token("org-a", "site-x"), "org-a", "site-x")
        body = attempt.request.model_copy(
            update={"csr_pem": csr.public_bytes(Encoding.PEM).decode()}
        )
        response = t.hub.post_enroll(body)
        t.extra["last"] = response.content
        return response.status_code

    return run


def _heartbeat(**fields: object) -> Callable[[Target], int]:
    def run(t: Target) -> int:
        body = {
            "agent_version": "1.0",
            "queue_depth": 0,
            "bytes_pending": 0,
            "disk_free_bytes": 1,
            **fields,
        }
        response = t.a.client.post(
            "/node/v1/heartbeat",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
        t.extra["last"] = response.content
        return response.status_code

    return run


def _call(
    who: str, method: str, path: str, content: bytes = b"", headers: dict[str, str] | None = None
) -> Callable[[Target], int | None]:
    def run(t: Target) -> int | None:
        if who == "public":
            client = t.hub.public_client()
        elif who == "anon-node":
            client = t.hub.client(t.hub.node_url)
        else:
            client = {"a": t.a.client, "b": t.b.client, "c": t.c.client}[who]
        try:
            response = client.request(
                method, path.format(bundle=t.bundle_id), content=content, headers=headers
            )
        except httpx.TransportError:  # refused at the TLS handshake
            return None
        t.extra["last"] = response.content
        return response.status_code

    return run


JSON = {"content-type": "application/json"}
OCTETS = {"content-type": "application/octet-stream"}
SPOOF = {
    "x-forwarded-for": "10.0.0.1",
    "x-forwarded-proto": "https",
    "x-ssl-client-cert": "-----BEGIN CERTIFICATE-----",
    "x-client-dn": "O=org-a,CN=site-a",
}
_413 = frozenset({413})
_404 = frozenset({404})
_422 = frozenset({422})
_403 = frozenset({403})
_401 = frozenset({401})

ATTACKS = [
    # -- bodies over their route's cap, refused before they are read ----------------------
    Attack(
        "enroll: 10 MiB declared body",
        _raw(
            "public",
            "POST",
            "/api/v1/enroll",
            {"content-type": "application/json", "content-length": str(10 * MIB)},
            _stream(10 * MIB),
            10 * MIB,
        ),
        _413,
        "over the limit",
    ),
    Attack(
        "enroll: 10 MiB chunked body",
        _raw(
            "public",
            "POST",
            "/api/v1/enroll",
            {"content-type": "application/json", "transfer-encoding": "chunked"},
            _chunked(10 * MIB),
            10 * MIB,
        ),
        _413,
        "over the limit",
    ),
    Attack(
        "enroll: absurd content-length",
        _raw(
            "public",
            "POST",
            "/api/v1/enroll",
            {"content-type": "application/json", "content-length": "9" * 30},
            iter(()),
            1,
        ),
        _413 | {400, None},
    ),
    Attack(
        "heartbeat: 3 MiB declared body",
        _raw(
            "node",
            "POST",
            "/node/v1/heartbeat",
            {"content-type": "application/json", "content-length": str(3 * MIB)},
            _stream(3 * MIB),
            3 * MIB,
        ),
        _413,
    ),
    Attack(
        "header: 8 MiB chunked body",
        _raw(
            "node",
            "PUT",
            "/node/v1/bundles/{bundle}",
            {"content-type": "application/octet-stream", "transfer-encoding": "chunked"},
            _chunked(8 * MIB),
            8 * MIB,
        ),
        _413,
    ),
    Attack(
        "chunk: 12 MiB chunked body",
        _raw(
            "node",
            "PUT",
            "/node/v1/bundles/{bundle}/chunks/0",
            {"content-type": "application/octet-stream", "transfer-encoding": "chunked"},
            _chunked(12 * MIB),
            12 * MIB,
        ),
        _413,
    ),
    Attack(
        "chunk: body over its bundle's chunk size, under the route's cap",
        _call("a", "PUT", "/node/v1/bundles/{bundle}/chunks/0", b"x" * 5000, OCTETS),
        _413,
        "over the limit of 1040 bytes",
    ),
    # -- JSON that parses but must not be accepted -----------------------------------------
    Attack(
        "enroll: deeply nested JSON",
        _call("public", "POST", "/api/v1/enroll", b"[" * 30000 + b"]" * 30000, JSON),
        _422 | {400},
    ),
    Attack(
        "enroll: Ed25519 CSR",
        _enroll_with_key(ed25519.Ed25519PrivateKey.generate()),
        _403,
        "ECDSA P-256, not Ed25519",
    ),
    Attack(
        "enroll: RSA CSR",
        _enroll_with_key(rsa.generate_private_key(65537, 2048)),
        _403,
        "ECDSA P-256, not RSA",
    ),
    Attack(
        "enroll: forged token",
        _call(
            "public",
            "POST",
            "/api/v1/enroll",
            json.dumps(
                {
                    "token": "hxe1.e30.AAAA",
                    "csr_pem": build_csr(new_site_key(), org="a", site="b").decode(),
                    "encryption_public_key": base64.b64encode(b"k" * 32).decode(),
                    "encryption_key_signature": base64.b64encode(b"s" * 64).decode(),
                }
            ).encode(),
            JSON,
        ),
        _403 | _422,
    ),
    Attack(
        "heartbeat: rich markup and terminal escapes",
        _heartbeat(last_error="[bold red]HUB DOWN[/] \x1b[2J\x1b]0;pwned\x07"),
        _422,
    ),
    Attack("heartbeat: agent_version with markup", _heartbeat(agent_version="[blink]9"), _422),
    Attack("heartbeat: absurd queue depth", _heartbeat(queue_depth=10**40), _422),
    Attack("heartbeat: negative bytes", _heartbeat(bytes_pending=-1), _422),
    Attack("heartbeat: float overflow", _heartbeat(oldest_item_age_s=1e308), _422),
    Attack("heartbeat: bidi override in error", _heartbeat(last_error="ok \u202eevil"), _422),
    # -- identity and authorization -----------------------------------------------------
    Attack(
        "node route on public listener with spoofed identity headers",
        _call("public", "GET", "/node/v1/whoami", headers=SPOOF),
        _404,  # the public listener serves no node route at all
    ),
    Attack(
        "node listener without certificate, spoofed headers",
        _call("anon-node", "GET", "/node/v1/whoami", headers=SPOOF),
        _401 | {None},
    ),
    Attack(
        "chunk into another site's bundle",
        _call("b", "PUT", "/node/v1/bundles/{bundle}/chunks/0", b"x" * 100, OCTETS),
        _403,
    ),
    Attack(
        "status of a bundle not addressed to the org",
        _call("c", "GET", "/node/v1/bundles/{bundle}"),
        _404,
    ),
    Attack(
        "delivery header of a bundle not addressed to the org",
        _call("c", "GET", "/node/v1/deliveries/{bundle}/header"),
        _404 | _403,
    ),
    Attack(
        "traversal in bundle id",
        _call("a", "PUT", "/node/v1/bundles/..%2F..%2Fca%2Fca.key", b"x", OCTETS),
        _404 | _422,
    ),
    Attack(
        "traversal in org id", _call("a", "GET", "/node/v1/orgs/..%2F..%2Fetc/keys"), _404 | _422
    ),
    Attack(
        "negative chunk index",
        _call("a", "PUT", "/node/v1/bundles/{bundle}/chunks/-1", b"x", OCTETS),
        _422,
    ),
    Attack(
        "huge chunk index",
        _call("a", "PUT", "/node/v1/bundles/{bundle}/chunks/" + "9" * 40, b"x", OCTETS),
        _422,
    ),
    # -- what the hub shows about itself ------------------------------------------------
    Attack("OpenAPI schema on the public listener", _call("public", "GET", "/openapi.json"), _404),
    Attack("/docs on the public listener", _call("public", "GET", "/docs"), _404),
    Attack("/redoc on the node listener", _call("a", "GET", "/redoc"), _404),
    Attack("OpenAPI schema on the node listener", _call("a", "GET", "/openapi.json"), _404),
]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One hub (SQLite) shared by the single-request attacks: each leaves it unchanged."""
    tmp = tmp_path_factory.mktemp("attacks")
    settings = HubSettings(
        data_dir=tmp / "hub-data", node_port=free_port(), public_port=free_port()
    )
    init_hub(settings)
    hub = Hub(settings=settings, backend="sqlite", workdir=tmp / "work")
    with running_hub(settings):
        a, b = fleet(hub)
        c = hub.enroll("org-c", "site-c")
        sealed = a.seal(b"p" * 5000, ["org-b"])
        assert a.put_header(sealed).status_code == 200
        yield Target(
            hub=hub,
            a=a,
            b=b,
            c=c,
            bundle_id=sealed.bundle_id,
            public_ctx=client_ssl_context(hub.ca_file),
            node_ctx_a=client_ssl_context(a.ca_file, cert_file=a.cert_file, key_file=a.key_file),
        )
        hub.close()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_and_changes_nothing(target: Target, attack: Attack) -> None:
    before = snapshot(target.hub)
    status = attack.run(target)
    assert status in attack.refused_with, (status, target.extra.get("last"))
    if attack.detail_has:
        assert attack.detail_has in bytes(target.extra["last"]).decode()  # type: ignore[arg-type]
    assert_unchanged(before, snapshot(target.hub))
    # ... and the hub still serves its sites.
    assert target.a.client.get("/node/v1/whoami").status_code == 200


# --- attacks in several steps -----------------------------------------------------------


def _renew(site: EnrolledSite, client: httpx.Client | None = None, key=None) -> httpx.Response:  # type: ignore[no-untyped-def]
    new_key = key or new_site_key()
    signer = new_key if isinstance(new_key, ec.EllipticCurvePrivateKey) else new_site_key()
    csr = (
        build_csr(new_key, org=site.org, site=site.site)
        if isinstance(new_key, ec.EllipticCurvePrivateKey)
        else x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site.site)]))
        .sign(new_key, None)
        .public_bytes(Encoding.PEM)
    )
    request = RenewRequest(
        csr_pem=csr.decode(),
        encryption_key_signature=sign_encryption_key(signer, raw_public(site.encryption_key)),
    )
    response = (client or site.client).post("/node/v1/renew", json=request.model_dump(mode="json"))
    response.new_key = new_key  # type: ignore[attr-defined]
    return response


def _client_for(hub: Hub, site: EnrolledSite, response: httpx.Response, tmp: Path) -> httpx.Client:
    from certs.keys import private_key_pem

    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "c.pem").write_text(response.json()["certificate_pem"])
    (tmp / "c.key").write_bytes(private_key_pem(response.new_key))  # type: ignore[attr-defined]
    return hub.client(hub.node_url, cert_file=tmp / "c.pem", key_file=tmp / "c.key")


def test_after_renewal_the_previous_certificate_neither_authenticates_nor_renews(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = start_hub(renewal_overlap_s=0)
    a, _ = fleet(hub)
    renewed = _renew(a)
    assert renewed.status_code == 200, renewed.text
    before = snapshot(hub)
    whoami = a.client.get("/node/v1/whoami")
    assert whoami.status_code == 403
    assert "not the current certificate" in whoami.json()["detail"]
    assert _renew(a).status_code == 403  # a stolen old certificate cannot extend itself
    assert_unchanged(before, snapshot(hub))
    current = _client_for(hub, a, renewed, tmp_path / "new")
    assert current.get("/node/v1/whoami").status_code == 200


def test_the_previous_certificate_has_a_short_stated_overlap_and_older_ones_none(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    overlap = 3
    hub = start_hub(renewal_overlap_s=overlap)
    a, _ = fleet(hub)
    first = _renew(a)
    assert first.status_code == 200, first.text
    # In the overlap the replaced certificate still works (a request in flight, a lost answer).
    assert a.client.get("/node/v1/whoami").status_code == 200
    second_client = _client_for(hub, a, first, tmp_path / "second")
    second = _renew(a, client=second_client)
    assert second.status_code == 200, second.text
    # Two renewals on, the first certificate is refused at once; the second is in its overlap.
    assert a.client.get("/node/v1/whoami").status_code == 403
    assert second_client.get("/node/v1/whoami").status_code == 200
    time.sleep(overlap + 0.5)
    assert second_client.get("/node/v1/whoami").status_code == 403
    assert _client_for(hub, a, second, tmp_path / "third").get("/node/v1/whoami").status_code == 200


def test_a_lost_renewal_answer_can_be_retried_within_the_overlap_only(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = start_hub(renewal_overlap_s=30)
    a, _ = fleet(hub)
    lost = _renew(a)  # the hub issued it; say the answer never reached the agent
    assert lost.status_code == 200, lost.text
    retried = _renew(a)  # the agent still holds only the previous certificate
    assert retried.status_code == 200, retried.text
    assert _client_for(hub, a, retried, tmp_path / "new").get("/node/v1/whoami").status_code == 200
    # The certificate from the lost answer is now the previous one, the agent's original is
    # two renewals old: refused at once, overlap or not.
    assert a.client.get("/node/v1/whoami").status_code == 403
    assert _client_for(hub, a, lost, tmp_path / "lost").get("/node/v1/whoami").status_code == 200


def test_an_ed25519_renewal_is_refused_before_anything_is_issued(start_hub: HubFactory) -> None:
    hub = start_hub()
    a, _ = fleet(hub)
    before = snapshot(hub)
    response = _renew(a, key=ed25519.Ed25519PrivateKey.generate())
    assert response.status_code == 403, response.text
    assert "ECDSA P-256, not Ed25519" in response.json()["detail"]
    assert_unchanged(before, snapshot(hub))  # issued.jsonl, site row, audit: all untouched
    assert a.client.get("/node/v1/whoami").status_code == 200  # still the current certificate


def test_a_refused_enrollment_leaves_the_token_unspent(start_hub: HubFactory) -> None:
    hub = start_hub()
    token = hub.token("org-a", "site-a")
    attempt = enroll_request(token, "org-a", "site-a")
    ed_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site-a")]))
        .sign(ed25519.Ed25519PrivateKey.generate(), None)
    )
    bad = attempt.request.model_copy(update={"csr_pem": ed_csr.public_bytes(Encoding.PEM).decode()})
    before = snapshot(hub)
    response = hub.post_enroll(bad)
    assert response.status_code == 403
    assert_unchanged(before, snapshot(hub))
    assert hub.post_enroll(attempt.request).status_code == 200  # the same token still works


def test_a_header_signed_by_an_expired_certificate_is_refused_when_the_hub_sees_it(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    lifetime = 8
    hub = start_hub(site_cert_lifetime_s=lifetime, renewal_overlap_s=0)
    a, _ = fleet(hub)
    expires = a.cert.not_valid_after_utc
    # Sealed (signed) while the first certificate is valid; the manifest's time says so too.
    sealed = a.seal(b"q" * 2000, ["org-b"])
    # renewed half way: the new certificate outlives the first by ~4 s, time enough on a busy
    # machine to present it after the first has expired (2 s was not)
    time.sleep(4)
    renewed = _renew(a)
    assert renewed.status_code == 200, renewed.text
    current = _client_for(hub, a, renewed, tmp_path / "new")
    wait = (expires - dt.datetime.now(dt.UTC)).total_seconds() + 1.2
    time.sleep(max(wait, 0))
    new_cert = x509.load_pem_x509_certificate(renewed.json()["certificate_pem"].encode())
    assert new_cert.not_valid_after_utc > (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)), (
        "the renewal came too late to test with: the new certificate expires too soon"
    )
    before = snapshot(hub)
    response = current.put(
        f"/node/v1/bundles/{sealed.bundle_id}", content=sealed.header.to_bytes(), headers=OCTETS
    )
    assert response.status_code == 403, response.text
    assert "expired" in response.json()["detail"]
    assert_unchanged(before, snapshot(hub))
    # The expired certificate itself no longer gets through the TLS handshake either.
    with pytest.raises(httpx.TransportError):
        hub.client(hub.node_url, cert_file=a.cert_file, key_file=a.key_file).get("/node/v1/whoami")


def test_pending_bundle_quota_is_a_429_naming_the_limit_and_shown_to_the_admin(
    start_hub: HubFactory,
) -> None:
    hub = start_hub(quota_pending_bundles=1)
    a, _ = fleet(hub)
    assert a.put_header(a.seal(b"1" * 100, ["org-b"])).status_code == 200
    second = a.seal(b"2" * 100, ["org-b"])
    before = snapshot(hub)
    response = a.put_header(second)
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["limit"] == "pending_bundles"
    assert_unchanged(before, snapshot(hub), allow={"quota_refusal"})
    with hub.session() as session:
        assert session.get(Bundle, second.bundle_id) is None
        refusal = session.get(QuotaRefusal, ("org-a", "site-a"))
        assert refusal is not None and refusal.limit_name == "pending_bundles"
        console = Console(record=True, width=400, file=io.StringIO())
        console.print(site_table(session, hub.registry()))
    assert "pending_bundles x1" in console.export_text()


def test_one_bundle_over_the_byte_quota_is_a_413(start_hub: HubFactory) -> None:
    hub = start_hub(quota_bytes_per_day=10_000)
    a, _ = fleet(hub)
    before = snapshot(hub)
    response = a.put_header(a.seal(b"x" * 20_000, ["org-b"], chunk_size=8192))
    assert response.status_code == 413, response.text
    assert response.json()["limit"] == "bytes_per_day"
    assert_unchanged(before, snapshot(hub), allow={"quota_refusal"})


def test_a_client_gone_mid_chunk_is_one_log_line_not_a_traceback(
    start_hub: HubFactory, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    hub = start_hub()
    a, _ = fleet(hub)
    sealed = a.seal(b"z" * 4000, ["org-b"], chunk_size=4096)
    assert a.put_header(sealed).status_code == 200
    ctx = client_ssl_context(a.ca_file, cert_file=a.cert_file, key_file=a.key_file)
    head = (
        f"PUT /node/v1/bundles/{sealed.bundle_id}/chunks/0 HTTP/1.1\r\nHost: localhost\r\n"
        "content-type: application/octet-stream\r\ncontent-length: 4000\r\n\r\n"
    )
    response = raw_request(hub.settings.node_port, ctx, head, iter([b"z" * 100]), timeout=0.5)
    assert response.status is None  # the client went away before the hub could answer
    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline and "client disconnected" not in out:
        time.sleep(0.1)
        out += capfd.readouterr().out
    assert "client disconnected mid-request" in out
    assert "org-a/site-a" in out and f"/node/v1/bundles/{sealed.bundle_id}/chunks/0" in out
    everything = out + caplog.text
    assert "Traceback" not in everything and "Exception in ASGI application" not in everything
    assert a.status(sealed.bundle_id).json()["received_chunks"] == []  # nothing half-stored


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_and_non_aead_suites_are_refused(start_hub: HubFactory) -> None:
    hub = start_hub()
    a, _ = fleet(hub)
    for port in (hub.settings.node_port, hub.settings.public_port):
        old = client_ssl_context(a.ca_file, cert_file=a.cert_file, key_file=a.key_file)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError):
            raw_request(port, old, "GET / HTTP/1.1\r\n\r\n")
    # TLS 1.2 with a CBC suite: uvicorn's default context would take it, the project's not.
    cbc = client_ssl_context(a.ca_file, cert_file=a.cert_file, key_file=a.key_file)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        raw_request(hub.settings.node_port, cbc, "GET /node/v1/whoami HTTP/1.1\r\n\r\n")
    gcm = client_ssl_context(a.ca_file, cert_file=a.cert_file, key_file=a.key_file)
    gcm.maximum_version = ssl.TLSVersion.TLSv1_2
    gcm.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    head = "GET /node/v1/whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    assert raw_request(hub.settings.node_port, gcm, head).status == 200


def test_the_api_schema_is_for_signed_in_admins_on_the_public_listener_only(
    start_hub: HubFactory,
) -> None:
    hub = start_hub()
    a, _ = fleet(hub)
    public = hub.public_client()
    for path in ("/openapi.json", "/docs", "/redoc"):  # no anonymous schema or docs pages
        assert public.get(path).status_code == 404
    assert public.get("/api/v1/openapi.json").status_code == 401
    clinician = hub.person("dr-who", "clinician", "org-a")
    assert clinician.get("/api/v1/openapi.json").status_code == 403
    admin = hub.person("root", "network-admin")
    assert admin.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/openapi.json", "/api/v1/openapi.json", "/docs", "/redoc"):
        assert a.client.get(path).status_code == 404


def test_site_list_shows_hostile_stored_values_as_inert_text(start_hub: HubFactory) -> None:
    """Even rows that bypassed the wire (an old hub, a hand edit) cannot drive the terminal."""
    hub = start_hub()
    fleet(hub)
    with hub.session() as session:
        site_a, site_b = session.exec(select(Site).order_by(Site.org)).all()
        site_a.last_heartbeat = json.dumps(
            {"agent_version": "1", "queue_depth": 10**400, "bytes_pending": 0, "disk_free_bytes": 0}
        )
        site_b.last_heartbeat = json.dumps(
            {
                "agent_version": "1",
                "queue_depth": 1,
                "bytes_pending": 1,
                "disk_free_bytes": 1,
                "last_error": "[bold red]FAKE[/] \x1b[2J\x1b]0;t\x07 \u202e",
            }
        )
        site_b.certificate_serial = "[link=http://x]\x1b[31mab"
        site_b.name = "[link=http://x]\x1b[31mab"
        session.add_all([site_a, site_b])
        session.commit()
        console = Console(record=True, width=400, file=io.StringIO(), force_terminal=True)
        console.print(site_table(session, hub.registry()))
    rendered = console.export_text(styles=False)
    assert "invalid heartbeat" in rendered  # absurd number: re-validated, no crash
    for hostile in ("\x1b[2J", "\x1b]0;", "\x07", "\u202e", "\x1b[31m"):
        assert hostile not in rendered
    assert "[link=http://x]" in rendered  # shown literally, not interpreted
