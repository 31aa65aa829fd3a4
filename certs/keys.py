"""Site keys, CSRs, PEM (de)serialisation and chain checks against the network CA."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs.errors import CertsError, CSRError
from certs.identity import is_valid_name, site_uri


def new_site_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: ec.EllipticCurvePrivateKey, *, org: str, site: str) -> bytes:
    """A PEM CSR naming org/site. The CA ignores the subject; it is informational."""
    if not is_valid_name(org) or not is_valid_name(site):
        raise CSRError(f"invalid org/site name {org!r}/{site!r}: use [a-z0-9-], max 63 chars")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                    x509.NameAttribute(NameOID.COMMON_NAME, site),
                ]
            )
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(site_uri(org, site))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM. Write it to a 0600 file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM private key; it must be ECDSA P-256."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertsError(f"cannot load private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertsError("private key is not an ECDSA P-256 key")
    return key


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertsError(f"cannot load certificate: {exc}") from None


def verify_issued_by(
    cert: x509.Certificate, ca_cert: x509.Certificate, *, now: datetime | None = None
) -> None:
    """Raise CertsError unless `cert` is signed by `ca_cert` and valid at `now`."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertsError(f"certificate was not issued by the network CA: {exc}") from None
    moment = now or datetime.now(UTC)
    if moment < cert.not_valid_before_utc:
        raise CertsError(f"certificate is not valid until {cert.not_valid_before_utc.isoformat()}")
    if moment > cert.not_valid_after_utc:
        raise CertsError(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
