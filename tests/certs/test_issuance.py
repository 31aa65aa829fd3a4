from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.ca import CertificateAuthority
from certs.errors import CertificateIdentityError, CertsError, CSRError
from certs.identity import (
    site_identity_from_certificate,
    site_identity_from_der,
    site_identity_from_pem,
)
from certs.keys import (
    build_csr,
    certificate_pem,
    load_certificate,
    load_private_key,
    new_site_key,
    private_key_pem,
    verify_issued_by,
)
from tests.factories.pki import TestNetwork, foreign_ca_site

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Issuance Test CA", now=NOW - timedelta(days=1))


def _csr_with_subject(
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, org: str, cn: str
) -> bytes:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


def test_ca_certificate_is_a_constrained_ca(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert cert.not_valid_after_utc - NOW > timedelta(days=3600)
    reloaded = CertificateAuthority.load(ca.cert_pem, ca.key_pem)
    assert reloaded.certificate == cert


def test_site_certificate_names_org_and_site_and_chains_to_ca(network: TestNetwork) -> None:
    clinic = network.site("acme", "clinic-a")
    cert = clinic.cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:hexchange:site:acme/clinic-a"
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "clinic-a"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    verify_issued_by(cert, network.ca.certificate)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=7, minutes=5)
    identity = site_identity_from_pem(clinic.cert_pem)
    assert (identity.org, identity.site, identity.serial) == (
        "acme",
        "clinic-a",
        cert.serial_number,
    )
    assert site_identity_from_der(cert.public_bytes(serialization.Encoding.DER)) == identity


def test_csr_subject_cannot_choose_org_or_site(ca: CertificateAuthority) -> None:
    # The CSR claims another org and site; the CA names whatever the token/caller says.
    csr = build_csr(new_site_key(), org="evil", site="hub-admin")
    cert = ca.sign_site_csr(csr, org="acme", site="clinic-a", now=NOW)
    identity = site_identity_from_certificate(cert)
    assert (identity.org, identity.site) == ("acme", "clinic-a")
    assert "evil" not in cert.subject.rfc4514_string()


def test_only_p256_csr_keys_are_signed(ca: CertificateAuthority) -> None:
    # The network signs with ECDSA P-256 everywhere (TLS, headers, the encryption key), so a
    # CSR with any other key is refused before a certificate exists, naming the key found.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for key, found in ((ed25519.Ed25519PrivateKey.generate(), "Ed25519"), (rsa_key, "RSA")):
        with pytest.raises(CSRError, match=f"must be ECDSA P-256, not {found}"):
            ca.sign_site_csr(_csr_with_subject(key, "x", "y"), org="acme", site="s1")


@pytest.mark.parametrize(
    ("org", "site"), [("Acme", "s1"), ("acme", "-s1"), ("acme", "a/b"), ("", "s")]
)
def test_invalid_names_refused(ca: CertificateAuthority, org: str, site: str) -> None:
    with pytest.raises(CSRError):
        ca.sign_site_csr(build_csr(new_site_key(), org="a", site="b"), org=org, site=site)


def test_identity_mismatch_between_subject_and_san_refused(ca: CertificateAuthority) -> None:
    key = new_site_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "clinic-b"),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("urn:hexchange:site:acme/clinic-a")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateIdentityError, match="does not match"):
        site_identity_from_certificate(cert)
    server_cert, _ = ca.issue_server_certificate(["hub.example"])
    with pytest.raises(CertificateIdentityError):
        site_identity_from_certificate(server_cert)


def test_verify_issued_by_refuses_foreign_and_expired(network: TestNetwork, tmp_path: Path) -> None:
    stranger = foreign_ca_site(tmp_path, "acme", "clinic-a")
    with pytest.raises(CertsError, match="not issued by the network CA"):
        verify_issued_by(stranger.cert, network.ca.certificate)
    clinic = network.site("acme", "clinic-a", lifetime=timedelta(hours=1))
    with pytest.raises(CertsError, match="expired"):
        verify_issued_by(
            clinic.cert, network.ca.certificate, now=datetime.now(UTC) + timedelta(hours=2)
        )


def test_server_certificate_has_dns_and_ip(ca: CertificateAuthority) -> None:
    cert, key = ca.issue_server_certificate(["hub.example", "localhost"], ["127.0.0.1", "::1"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.example", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.public_key() == key.public_key()


def test_key_and_certificate_pem_round_trip() -> None:
    key = new_site_key()
    assert load_private_key(private_key_pem(key)).private_numbers() == key.private_numbers()
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CertsError, match="P-256"):
        load_private_key(rsa_pem)
    with pytest.raises(CertsError):
        load_certificate(b"not a certificate")
    ca = CertificateAuthority.create("PEM CA")
    assert load_certificate(certificate_pem(ca.certificate)) == ca.certificate
