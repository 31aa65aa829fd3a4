"""hub.tls_scope against a real uvicorn server in a thread, with a throwaway PKI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub import tls_scope
from hub.tls_scope import HAS_HTTPTOOLS, TLSScopeH11Protocol, protocol_class, tls_extension_for

PROTOCOLS: list[type[Any]] = [TLSScopeH11Protocol]
if HAS_HTTPTOOLS:
    PROTOCOLS.append(tls_scope.TLSScopeHttpToolsProtocol)


# --- test PKI -------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(
    out: Path,
    stem: str,
    subject: x509.Name,
    issuer: Issued | None,
    *,
    ca: bool = False,
    server_ip: str | None = None,
    client: bool = False,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if server_ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_path = out / f"{stem}.crt"
    key_path = out / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert, key, cert_path, key_path)


@dataclass(frozen=True)
class PKI:
    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued  # client cert from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    out = tmp_path_factory.mktemp("pki")
    ca = _issue(out, "ca", _name("Test Hub CA"), None, ca=True)
    other_ca = _issue(out, "other-ca", _name("Other CA"), None, ca=True)
    return PKI(
        ca=ca,
        server=_issue(out, "server", _name("hub"), ca, server_ip="127.0.0.1"),
        client=_issue(out, "site-a", _name("site-a", "org-a"), ca, client=True),
        stranger=_issue(out, "stranger", _name("site-x", "org-x"), other_ca, client=True),
    )


# --- server ---------------------------------------------------------------------------


SEEN_PATHS: list[str] = []  # every path echo_tls_app served


async def echo_tls_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raw ASGI app: reply with the tls extension (or null) and the client address."""
    assert scope["type"] == "http"
    SEEN_PATHS.append(scope["path"])
    while (await receive()).get("more_body"):
        pass
    body = json.dumps(
        {
            "tls": scope.get("extensions", {}).get("tls"),
            "client": list(scope["client"]),
            "scheme": scope["scheme"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def running_server(
    pki: PKI | None,
    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED,
    protocol: type[Any] = TLSScopeH11Protocol,
) -> Iterator[str]:
    """Serve echo_tls_app in a background thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tls: dict[str, Any] = {}
    if pki is not None:
        tls = {
            "ssl_certfile": str(pki.server.cert_path),
            "ssl_keyfile": str(pki.server.key_path),
            "ssl_ca_certs": str(pki.ca.cert_path),
            "ssl_cert_reqs": cert_reqs,
        }
    config = uvicorn.Config(
        echo_tls_app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        lifespan="off",
        log_level="warning",
        **tls,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive(), "uvicorn exited during startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 5 s"
            time.sleep(0.01)
        yield f"{'https' if pki else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def client_context(pki: PKI, identity: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if identity is not None:
        ctx.load_cert_chain(identity.cert_path, identity.key_path)
    return ctx


def pem_to_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(
        serialization.Encoding.DER
    )


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_verified_client_cert_in_scope_on_every_keepalive_request(
    pki: PKI, protocol: type[Any]
) -> None:
    with (
        running_server(pki, ssl.CERT_REQUIRED, protocol) as url,
        httpx.Client(verify=client_context(pki, pki.client), timeout=5) as client,
    ):
        first = client.get(f"{url}/one").json()
        second = client.get(f"{url}/two").json()

    assert first["client"] == second["client"], "expected one keep-alive connection"
    for reply in (first, second):
        assert reply["scheme"] == "https"
        tls = reply["tls"]
        assert set(tls) == {
            "server_cert",
            "client_cert_chain",
            "client_cert_name",
            "client_cert_error",
            "tls_version",
            "cipher_suite",
        }
        assert len(tls["client_cert_chain"]) == 1
        assert pem_to_der(tls["client_cert_chain"][0]) == pki.client.der
        assert "CN=site-a" in tls["client_cert_name"]
        assert "O=org-a" in tls["client_cert_name"]
        assert tls["client_cert_error"] is None
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert tls["cipher_suite"] in tls_scope._CIPHER_SUITES.values()
        assert pem_to_der(tls["server_cert"]) == pki.server.der


def test_tls12_version_and_cipher_suite_numbers(pki: PKI) -> None:
    ctx = client_context(pki, pki.client)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    with running_server(pki) as url, httpx.Client(verify=ctx, timeout=5) as client:
        tls = client.get(url).json()["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] == 0xC02B


def test_optional_client_cert_absent(pki: PKI) -> None:
    with (
        running_server(pki, ssl.CERT_OPTIONAL) as url,
        httpx.Client(verify=client_context(pki, None), timeout=5) as client,
    ):
        tls = client.get(url).json()["tls"]
    assert tls is not None
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] in (0x0303, 0x0304)


def test_optional_client_cert_present(pki: PKI) -> None:
    with (
        running_server(pki, ssl.CERT_OPTIONAL) as url,
        httpx.Client(verify=client_context(pki, pki.client), timeout=5) as client,
    ):
        tls = client.get(url).json()["tls"]
    assert pem_to_der(tls["client_cert_chain"][0]) == pki.client.der


@pytest.mark.parametrize(
    "max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_client_cert_from_another_ca_is_refused_at_handshake(
    pki: PKI, max_version: ssl.TLSVersion
) -> None:
    ctx = client_context(pki, pki.stranger)
    ctx.maximum_version = max_version
    with (
        running_server(pki, ssl.CERT_REQUIRED) as url,
        httpx.Client(verify=ctx, timeout=5) as client,
    ):
        if max_version is ssl.TLSVersion.TLSv1_2:
            # The server checks the client certificate before its Finished, so the handshake
            # fails (asyncio's server side closes without an alert: the client sees an EOF).
            with pytest.raises(httpx.ConnectError):
                client.get(f"{url}/stranger")
        else:
            # TLS 1.3: the client completes its side first and may see the server's alert
            # (or just the closed connection) only when it reads the response.
            with pytest.raises(httpx.TransportError):
                client.get(f"{url}/stranger")
    assert "/stranger" not in SEEN_PATHS, "the app must never see the rejected client"


def test_plain_http_gets_no_tls_extension() -> None:
    with running_server(None) as url, httpx.Client(timeout=5) as client:
        reply = client.get(url).json()
    assert reply["scheme"] == "http"
    assert reply["tls"] is None


def test_tls_extension_for_no_ssl_object() -> None:
    assert tls_extension_for(None) is None


def test_protocol_class() -> None:
    assert protocol_class() is TLSScopeH11Protocol
    assert protocol_class("h11") is TLSScopeH11Protocol
    if HAS_HTTPTOOLS:
        assert protocol_class("httptools") is tls_scope.TLSScopeHttpToolsProtocol
        assert protocol_class("auto") is tls_scope.TLSScopeHttpToolsProtocol
    else:
        assert protocol_class("auto") is TLSScopeH11Protocol
        with pytest.raises(ImportError):
            protocol_class("httptools")
    with pytest.raises(ValueError, match="unsupported"):
        protocol_class("zttp")
