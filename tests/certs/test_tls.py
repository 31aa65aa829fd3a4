"""Real TLS handshakes over 127.0.0.1 between the hub context and agent contexts."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs.identity import SiteIdentity, site_identity_from_der
from certs.registry import CADirectory
from certs.tls import client_ssl_context, client_ssl_context_from_pem, server_ssl_context
from tests.factories.pki import TestNetwork, foreign_ca_site

TIMEOUT = 5.0


@dataclass
class Outcome:
    server_identity: SiteIdentity | None = None
    server_error: BaseException | None = None
    client_received: bytes = b""
    client_error: BaseException | None = None


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str = "localhost"
) -> Outcome:
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                der = tls.getpeercert(binary_form=True)
                if der:
                    outcome.server_identity = site_identity_from_der(der)
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome.server_error = exc
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            client_ctx.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            outcome.client_received = tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        outcome.client_error = exc
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    return outcome


@pytest.fixture
def hub_context(network: TestNetwork) -> ssl.SSLContext:
    return server_ssl_context(
        network.hub_cert_file,
        network.hub_key_file,
        client_ca_file=network.ca_file,
        require_client_cert=True,
    )


@pytest.mark.parametrize("from_pem", [False, True])
def test_hub_accepts_site_certificate_from_network_ca(
    network: TestNetwork, hub_context: ssl.SSLContext, from_pem: bool
) -> None:
    clinic = network.site("acme", "clinic-a")
    if from_pem:
        client = client_ssl_context_from_pem(clinic.ca_pem, clinic.cert_pem, clinic.key_pem)
    else:
        client = client_ssl_context(
            clinic.ca_file, cert_file=clinic.cert_file, key_file=clinic.key_file
        )
    outcome = _handshake(hub_context, client)
    assert outcome.server_error is None and outcome.client_error is None
    assert outcome.client_received == b"ok"
    assert outcome.server_identity is not None
    assert (outcome.server_identity.org, outcome.server_identity.site) == ("acme", "clinic-a")
    assert outcome.server_identity.serial == clinic.cert.serial_number


def test_hub_rejects_site_certificate_from_foreign_ca(
    network: TestNetwork, hub_context: ssl.SSLContext, tmp_path: Path
) -> None:
    stranger = foreign_ca_site(tmp_path, "acme", "clinic-a")
    client = client_ssl_context(
        network.ca_file, cert_file=stranger.cert_file, key_file=stranger.key_file
    )
    outcome = _handshake(hub_context, client)
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.server_identity is None
    assert outcome.client_received != b"ok"


def test_hub_rejects_client_without_certificate(
    network: TestNetwork, hub_context: ssl.SSLContext
) -> None:
    outcome = _handshake(hub_context, client_ssl_context(network.ca_file))
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.client_received != b"ok"


def test_agent_refuses_hub_from_foreign_ca_or_wrong_name(
    network: TestNetwork, hub_context: ssl.SSLContext, tmp_path: Path
) -> None:
    clinic = network.site("acme", "clinic-a")
    client = client_ssl_context(
        clinic.ca_file, cert_file=clinic.cert_file, key_file=clinic.key_file
    )

    foreign = CADirectory(tmp_path / "impostor")
    foreign.init("Impostor CA")
    cert_pem, key_pem = foreign.server_certificate(["localhost"], ["127.0.0.1"])
    (tmp_path / "impostor-hub.pem").write_bytes(cert_pem)
    (tmp_path / "impostor-hub.key").write_bytes(key_pem)
    impostor = server_ssl_context(tmp_path / "impostor-hub.pem", tmp_path / "impostor-hub.key")
    outcome = _handshake(impostor, client)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)

    outcome = _handshake(hub_context, client, hostname="not-the-hub.example")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_contexts_require_tls12_or_later(network: TestNetwork) -> None:
    server = server_ssl_context(network.hub_cert_file, network.hub_key_file)
    client = client_ssl_context(network.ca_file)
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
