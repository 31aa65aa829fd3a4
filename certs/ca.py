"""The network certificate authority: an ECDSA P-256 key and a self-signed CA certificate."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.errors import CertsError, CSRError
from certs.identity import is_valid_name, site_uri
from certs.keys import certificate_pem, load_certificate, load_private_key, private_key_pem

CA_LIFETIME = timedelta(days=3650)
SITE_CERT_LIFETIME = timedelta(days=7)
SERVER_CERT_LIFETIME = timedelta(days=90)
BACKDATE = timedelta(minutes=5)
MAX_CSR_BYTES = 16 * 1024

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _utcnow(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return now


def check_csr(csr_pem: bytes) -> ec.EllipticCurvePublicKey:
    """The CSR's public key, after every check the CA makes before signing.

    The network's key type is ECDSA P-256 (site keys sign TLS handshakes, bundle headers and
    the site's encryption key, all with ECDSA/SHA-256). Any other key (Ed25519, RSA, another
    curve) is refused here, before any certificate exists, any journal line is written or any
    token is spent.
    """
    if len(csr_pem) > MAX_CSR_BYTES:
        raise CSRError(f"CSR is too large (over {MAX_CSR_BYTES} bytes)")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CSRError(f"CSR is not a valid PEM certificate request: {exc}") from None
    try:
        public_key = csr.public_key()
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported key/algorithm surfaces as assorted errors
        raise CSRError(f"CSR cannot be checked: {exc}") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CSRError(
            f"CSR key must be ECDSA P-256, not {_key_kind(public_key)}; "
            "generate the site key with `hexchange-agent enroll` (it makes a P-256 key)"
        )
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise CSRError(f"CSR key must be ECDSA P-256, not EC {public_key.curve.name}")
    if not valid:
        raise CSRError("CSR self-signature does not verify")
    return public_key


def _key_kind(public_key: object) -> str:
    return type(public_key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"


class CertificateAuthority:
    """Holds the CA key and certificate and issues site and server certificates."""

    def __init__(self, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        if certificate.public_key() != key.public_key():
            raise CertsError("CA private key does not match the CA certificate")
        self._certificate = certificate
        self._key = key

    @classmethod
    def create(
        cls, name: str, *, now: datetime | None = None, lifetime: timedelta = CA_LIFETIME
    ) -> CertificateAuthority:
        if not name.strip():
            raise CertsError("CA name must not be empty")
        moment = _utcnow(now)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hexchange"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - BACKDATE)
            .not_valid_after(moment + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        return cls(load_certificate(cert_pem), load_private_key(key_pem))

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self._certificate)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self._key)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 DER signature over `data` (used for enrollment tokens)."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def _leaf_builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        moment: datetime,
        lifetime: timedelta,
    ) -> x509.CertificateBuilder:
        not_after = min(moment + lifetime, self._certificate.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )

    def sign_site_csr(
        self,
        csr_pem: bytes,
        *,
        org: str,
        site: str,
        lifetime: timedelta = SITE_CERT_LIFETIME,
        now: datetime | None = None,
    ) -> x509.Certificate:
        """Issue a site client certificate for org/site; the CSR's own subject is ignored."""
        if not is_valid_name(org):
            raise CSRError(f"invalid org name {org!r}: use [a-z0-9-], 1-63 chars")
        if not is_valid_name(site):
            raise CSRError(f"invalid site name {site!r}: use [a-z0-9-], 1-63 chars")
        public_key = check_csr(csr_pem)
        moment = _utcnow(now)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.COMMON_NAME, site),
            ]
        )
        return (
            self._leaf_builder(subject, public_key, moment, lifetime)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(site_uri(org, site))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def issue_server_certificate(
        self,
        hostnames: Sequence[str],
        ip_addresses: Sequence[str] = ("127.0.0.1",),
        *,
        lifetime: timedelta = SERVER_CERT_LIFETIME,
        now: datetime | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A fresh key and a serverAuth certificate for the hub's hostnames and IPs."""
        if isinstance(hostnames, str) or isinstance(ip_addresses, str):
            raise TypeError("hostnames and ip_addresses must be sequences of strings")
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        try:
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        except ValueError as exc:
            raise CertsError(f"invalid IP address: {exc}") from None
        if not names:
            raise CertsError("a server certificate needs at least one hostname or IP address")
        common_name = hostnames[0] if hostnames else ip_addresses[0]
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            self._leaf_builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                key.public_key(),
                _utcnow(now),
                lifetime,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return cert, key
