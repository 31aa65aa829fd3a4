"""Enrollment: a one-time token and the agent's CSR become a short-lived site certificate."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

from certs.ca import SITE_CERT_LIFETIME, check_csr
from certs.errors import CertsError
from certs.identity import site_identity_from_certificate
from certs.registry import CADirectory
from hub import audit
from hub.errors import EnrollmentRefused
from hub.models import Organization, Site, SiteCertificate, utcnow
from wire.api import (
    EnrollRequest,
    EnrollResponse,
    RenewRequest,
    RenewResponse,
    encryption_key_message,
)


def ensure_site(
    session: Session, org: str, site: str, *, org_name: str = "", site_name: str = ""
) -> Site:
    if session.get(Organization, org) is None:
        session.add(Organization(id=org, name=org_name or org))
        session.flush()
    row = session.exec(select(Site).where(Site.org == org, Site.site == site)).first()
    if row is None:
        row = Site(org=org, site=site, name=site_name or site)
        session.add(row)
        session.flush()
    return row


def _precheck(csr_pem: str, raw_key: bytes, signature: bytes, what: str) -> None:
    """Everything that can be checked before the CA signs, journals or spends a token: the
    CSR parses, holds an ECDSA P-256 key and is self-signed, and that key signed the site's
    encryption key. A refusal here leaves no certificate and the token unspent."""
    try:
        public_key = check_csr(csr_pem.encode())
    except CertsError as exc:
        raise EnrollmentRefused(f"{what} refused: {exc}; nothing was issued") from exc
    try:
        public_key.verify(signature, encryption_key_message(raw_key), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise EnrollmentRefused(
            f"the encryption key is not signed by the key in the CSR; {what} refused, "
            "nothing was issued" + ("; the token is still valid" if what == "enrollment" else "")
        ) from exc


def _abort(registry: CADirectory, cert: x509.Certificate, what: str) -> None:
    """A certificate was issued but its site could not be recorded: revoke it at once, so no
    certificate that nobody received stays valid."""
    with contextlib.suppress(CertsError):
        registry.revoke(cert.serial_number, reason=f"{what} aborted before the answer was sent")


def _install_certificate(
    session: Session, site: Site, cert: x509.Certificate, *, action: str
) -> str:
    """Make `cert` the site's current certificate, keep it in the history, audit it."""
    cert_pem = cert.public_bytes(Encoding.PEM).decode()
    site.certificate_pem = cert_pem
    site.certificate_serial = f"{cert.serial_number:x}"
    session.add(
        SiteCertificate(
            serial=site.certificate_serial, org=site.org, site=site.site, certificate_pem=cert_pem
        )
    )
    session.add(site)
    audit.record(
        session,
        actor=f"site:{site.org}/{site.site}",
        action=action,
        subject=site.certificate_serial,
    )
    return cert_pem


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise EnrollmentRefused(f"the {what} is not valid base64") from exc


def enroll(
    session: Session,
    registry: CADirectory,
    request: EnrollRequest,
    receipt_public_pem: str,
    *,
    lifetime: dt.timedelta = SITE_CERT_LIFETIME,
) -> EnrollResponse:
    """Token + CSR -> site certificate. Atomic: every check runs before the CA signs and the
    token is spent; if recording the site then fails, the new certificate is revoked."""
    raw_key = _b64(request.encryption_public_key, "encryption key")
    signature = _b64(request.encryption_key_signature, "encryption key signature")
    if len(raw_key) != 32:
        raise EnrollmentRefused("the encryption public key must be a raw 32-byte X25519 key")
    _precheck(request.csr_pem, raw_key, signature, "enrollment")
    try:
        cert = registry.enroll(request.token, request.csr_pem.encode(), lifetime=lifetime)
    except CertsError as exc:
        raise EnrollmentRefused(str(exc)) from exc
    try:
        identity = site_identity_from_certificate(cert)
        site = ensure_site(session, identity.org, identity.site)
        site.encryption_public_key = request.encryption_public_key
        site.encryption_key_signature = request.encryption_key_signature
        site.encryption_key_id = hashlib.sha256(raw_key).hexdigest()[:32]
        site.enrolled_at = utcnow()
        cert_pem = _install_certificate(session, site, cert, action="site.enroll")
        session.commit()
    except BaseException:
        session.rollback()
        _abort(registry, cert, "enrollment")
        raise
    return EnrollResponse(
        certificate_pem=cert_pem,
        ca_pem=registry.load().cert_pem.decode(),
        org=identity.org,
        site=identity.site,
        hub_receipt_public_key_pem=receipt_public_pem,
    )


def renew(
    session: Session,
    registry: CADirectory,
    current_pem: str,
    request: RenewRequest,
    *,
    lifetime: dt.timedelta = SITE_CERT_LIFETIME,
) -> RenewResponse:
    """A fresh certificate for a new key of the same site; the encryption key is re-signed.
    Atomic as `enroll`: checked before signing, revoked again if it cannot be recorded."""
    current = x509.load_pem_x509_certificate(current_pem.encode())
    identity = site_identity_from_certificate(current)
    site = session.exec(
        select(Site).where(Site.org == identity.org, Site.site == identity.site)
    ).first()
    if site is None or site.encryption_public_key is None:
        raise EnrollmentRefused(f"site {identity.org}/{identity.site} is not enrolled here")
    signature = _b64(request.encryption_key_signature, "encryption key signature")
    raw_key = base64.b64decode(site.encryption_public_key)
    _precheck(request.csr_pem, raw_key, signature, "renewal")
    try:
        cert = registry.renew(current, request.csr_pem.encode(), lifetime=lifetime)
    except CertsError as exc:
        raise EnrollmentRefused(str(exc)) from exc
    try:
        site.encryption_key_signature = request.encryption_key_signature
        cert_pem = _install_certificate(session, site, cert, action="site.renew")
        session.commit()
    except BaseException:
        session.rollback()
        _abort(registry, cert, "renewal")
        raise
    return RenewResponse(certificate_pem=cert_pem)
