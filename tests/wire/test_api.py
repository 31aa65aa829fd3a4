from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from wire.api import (
    EnrollRequest,
    Heartbeat,
    Problem,
    SiteKey,
    sign_encryption_key,
    verify_site_key,
)
from wire.errors import SignatureInvalid

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca(cn: str = "Hexchange CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Hexchange", cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _site_cert(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    site_key: ec.EllipticCurvePrivateKey,
    *,
    org: str = "clinic-a",
    site: str = "main",
    not_after: datetime = NOW + timedelta(days=30),
) -> str:
    ca_cert, ca_key = ca
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(org, site))
        .issuer_name(ca_cert.subject)
        .public_key(site_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _site_key(
    cert_pem: str, signer: ec.EllipticCurvePrivateKey, enc: X25519PrivateKey, **overrides: str
) -> SiteKey:
    fields = {
        "org": "clinic-a",
        "site": "main",
        "key_id": "enc-1",
        "public_key": base64.b64encode(_raw(enc)).decode(),
        "signature": sign_encryption_key(signer, _raw(enc)),
        "certificate_pem": cert_pem,
    }
    fields.update(overrides)
    return SiteKey(**fields)


@pytest.fixture
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return _ca()


def test_verify_site_key_accepts(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    site = ec.generate_private_key(ec.SECP256R1())
    enc = X25519PrivateKey.generate()
    recipient = verify_site_key(_site_key(_site_cert(ca, site), site, enc), ca[0], now=NOW)
    assert recipient.key_id == "enc-1"
    assert _raw_pub(recipient.public_key) == _raw(enc)


def _raw_pub(key: object) -> bytes:
    assert isinstance(key, X25519PublicKey)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_rejects_key_signed_by_another_key(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    site = ec.generate_private_key(ec.SECP256R1())
    impostor = ec.generate_private_key(ec.SECP256R1())
    enc = X25519PrivateKey.generate()
    with pytest.raises(SignatureInvalid):
        verify_site_key(_site_key(_site_cert(ca, site), impostor, enc), ca[0], now=NOW)


def test_rejects_swapped_public_key(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    site = ec.generate_private_key(ec.SECP256R1())
    enc, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    swapped = _site_key(
        _site_cert(ca, site), site, enc, public_key=base64.b64encode(_raw(other)).decode()
    )
    with pytest.raises(SignatureInvalid):
        verify_site_key(swapped, ca[0], now=NOW)


def test_rejects_cert_from_another_ca(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    rogue_ca = _ca()  # same subject name, different key
    site = ec.generate_private_key(ec.SECP256R1())
    enc = X25519PrivateKey.generate()
    with pytest.raises(SignatureInvalid, match="not issued"):
        verify_site_key(_site_key(_site_cert(rogue_ca, site), site, enc), ca[0], now=NOW)


def test_rejects_expired_cert(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    site = ec.generate_private_key(ec.SECP256R1())
    enc = X25519PrivateKey.generate()
    pem = _site_cert(ca, site, not_after=NOW - timedelta(seconds=1))
    with pytest.raises(SignatureInvalid, match="not valid"):
        verify_site_key(_site_key(pem, site, enc), ca[0], now=NOW)


def test_rejects_key_claiming_another_site(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> None:
    site = ec.generate_private_key(ec.SECP256R1())
    enc = X25519PrivateKey.generate()
    pem = _site_cert(ca, site, org="clinic-a", site="main")
    with pytest.raises(SignatureInvalid, match="claims"):
        verify_site_key(_site_key(pem, site, enc, org="hospital-b"), ca[0], now=NOW)


def test_models_forbid_extra_and_check_keys() -> None:
    enc = X25519PrivateKey.generate()
    good = {
        "token": "t",
        "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----",
        "encryption_public_key": base64.b64encode(_raw(enc)).decode(),
        "encryption_key_signature": base64.b64encode(b"sig").decode(),
    }
    EnrollRequest.model_validate(good)
    with pytest.raises(ValidationError):
        EnrollRequest.model_validate({**good, "site": "x"})
    with pytest.raises(ValidationError):
        EnrollRequest.model_validate(
            {**good, "encryption_public_key": base64.b64encode(b"short").decode()}
        )
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(
            {"agent_version": "1", "queue_depth": -1, "bytes_pending": 0, "disk_free_bytes": 0}
        )
    problem = Problem(title="Not found", status=404, detail="no such bundle")
    assert problem.type == "about:blank"
