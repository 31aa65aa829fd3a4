"""Site identity: the (org, site) pair a certificate names, and how it is spelled."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from certs.errors import CertificateIdentityError

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SITE_URI_PREFIX = "urn:hexchange:site:"


@dataclass(frozen=True)
class SiteIdentity:
    org: str
    site: str
    serial: int
    not_after: datetime


def is_valid_name(value: str) -> bool:
    """True if `value` is a valid org or site name (lower-case DNS-label-like)."""
    return NAME_PATTERN.fullmatch(value) is not None


def site_uri(org: str, site: str) -> str:
    return f"{SITE_URI_PREFIX}{org}/{site}"


def parse_site_uri(uri: str) -> tuple[str, str]:
    """Split `urn:hexchange:site:{org}/{site}`; raise CertificateIdentityError if malformed."""
    if not uri.startswith(SITE_URI_PREFIX):
        raise CertificateIdentityError(f"not a Hexchange site URI: {uri!r}")
    org, sep, site = uri[len(SITE_URI_PREFIX) :].partition("/")
    if not sep or not is_valid_name(org) or not is_valid_name(site):
        raise CertificateIdentityError(f"malformed Hexchange site URI: {uri!r}")
    return org, site


def _single_attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if len(attrs) != 1:
        raise CertificateIdentityError(f"certificate subject must have exactly one {label}")
    value = attrs[0].value
    if not isinstance(value, str):
        raise CertificateIdentityError(f"certificate subject {label} is not text")
    return value


def site_identity_from_certificate(cert: x509.Certificate) -> SiteIdentity:
    """Read the site identity from the SAN URI and cross-check it against subject O and CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateIdentityError("certificate has no subjectAltName") from None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
    site_uris = [u for u in uris if u.startswith(SITE_URI_PREFIX)]
    if len(site_uris) != 1:
        raise CertificateIdentityError(
            f"certificate must carry exactly one Hexchange site URI, found {len(site_uris)}"
        )
    org, site = parse_site_uri(site_uris[0])
    subject_org = _single_attribute(cert, NameOID.ORGANIZATION_NAME, "O")
    subject_site = _single_attribute(cert, NameOID.COMMON_NAME, "CN")
    if (subject_org, subject_site) != (org, site):
        raise CertificateIdentityError(
            f"certificate subject O={subject_org}, CN={subject_site} does not match "
            f"its site URI {site_uris[0]}"
        )
    return SiteIdentity(
        org=org, site=site, serial=cert.serial_number, not_after=cert.not_valid_after_utc
    )


def site_identity_from_der(der: bytes) -> SiteIdentity:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateIdentityError(f"not a DER certificate: {exc}") from None
    return site_identity_from_certificate(cert)


def site_identity_from_pem(pem: bytes) -> SiteIdentity:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateIdentityError(f"not a PEM certificate: {exc}") from None
    return site_identity_from_certificate(cert)
