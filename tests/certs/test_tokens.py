from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.ca import CertificateAuthority
from certs.errors import CSRError, TokenError
from certs.keys import build_csr, new_site_key
from certs.registry import CADirectory
from certs.tokens import issue_token, verify_token
from tests.factories.pki import TestNetwork

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Token Test CA", now=NOW - timedelta(days=1))


def test_token_round_trip(ca: CertificateAuthority) -> None:
    token = issue_token(ca, org="acme", site="clinic-a", ttl=timedelta(minutes=30), now=NOW)
    claims = verify_token(token, ca.public_key, now=NOW + timedelta(minutes=29))
    assert (claims.org, claims.site) == ("acme", "clinic-a")
    assert claims.expires_at == NOW + timedelta(minutes=30)
    assert len(claims.token_id) == 32
    other = issue_token(ca, org="acme", site="clinic-a", now=NOW)
    assert verify_token(other, ca.public_key, now=NOW).token_id != claims.token_id


def test_expired_token_refused(ca: CertificateAuthority) -> None:
    token = issue_token(ca, org="acme", site="clinic-a", ttl=timedelta(hours=1), now=NOW)
    with pytest.raises(TokenError, match=r"expired.*ask the network admin for a new token"):
        verify_token(token, ca.public_key, now=NOW + timedelta(hours=1, seconds=1))


def test_tampered_payload_refused(ca: CertificateAuthority) -> None:
    prefix, payload, signature = issue_token(ca, org="acme", site="clinic-a", now=NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["site"] = "clinic-b"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(f"{prefix}.{forged}.{signature}", ca.public_key, now=NOW)


def test_token_from_another_ca_refused(ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create("Other CA", now=NOW)
    token = issue_token(other, org="acme", site="clinic-a", now=NOW)
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(token, ca.public_key, now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "hxe1", "hxe1.a.b.c", "hxe2.abc.def", "hxe1.!!!.abc", "hxe1." + "A" * 3000 + ".AA"],
)
def test_malformed_token_refused(ca: CertificateAuthority, token: str) -> None:
    with pytest.raises(TokenError, match="malformed"):
        verify_token(token, ca.public_key, now=NOW)


def test_token_used_twice_refused_across_instances(network: TestNetwork) -> None:
    ca = network.ca
    token = issue_token(ca, org="acme", site="clinic-a")
    network.ca_dir.enroll(token, build_csr(new_site_key(), org="acme", site="clinic-a"))
    with pytest.raises(TokenError, match="already used"):
        network.ca_dir.enroll(token, build_csr(new_site_key(), org="acme", site="clinic-a"))
    second = CADirectory(Path(network.ca_dir.path))
    with pytest.raises(TokenError, match="already used"):
        second.enroll(token, build_csr(new_site_key(), org="acme", site="clinic-a"))


def _with_broken_signature(csr_pem: bytes) -> bytes:
    csr = x509.load_pem_x509_csr(csr_pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s value
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def test_bad_csr_does_not_burn_token(network: TestNetwork) -> None:
    token = issue_token(network.ca, org="acme", site="clinic-a")
    good = build_csr(new_site_key(), org="acme", site="clinic-a")
    with pytest.raises(CSRError, match="not a valid PEM"):
        network.ca_dir.enroll(token, b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n")
    with pytest.raises(CSRError, match="self-signature"):
        network.ca_dir.enroll(token, _with_broken_signature(good))
    assert network.ca_dir.list_issued() == []
    cert = network.ca_dir.enroll(token, good)
    assert [r.serial for r in network.ca_dir.list_issued()] == [cert.serial_number]
