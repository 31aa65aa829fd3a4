"""Enrollment: a one-time token and the agent's CSR become a short-lived site certificate."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlmodel import Session, select

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


def enroll(
    session: Session, registry: CADirectory, request: EnrollRequest, receipt_public_pem: str
) -> EnrollResponse:
    try:
        raw_key = base64.b64decode(request.encryption_public_key, validate=True)
        signature = base64.b64decode(request.encryption_key_signature, validate=True)
    except ValueError as exc:
        raise EnrollmentRefused("encryption key or its signature is not valid base64") from exc
    if len(raw_key) != 32:
        raise EnrollmentRefused("the encryption public key must be a raw 32-byte X25519 key")
    try:
        cert = registry.enroll(request.token, request.csr_pem.encode())
    except CertsError as exc:
        raise EnrollmentRefused(str(exc)) from exc
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    try:
        public_key.verify(signature, encryption_key_message(raw_key), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        registry.revoke(cert.serial_number, reason="enrollment aborted: bad key signature")
        raise EnrollmentRefused(
            "the encryption key is not signed by the key in the CSR; the token is used up, "
            "ask for a new one"
        ) from exc
    identity = site_identity_from_certificate(cert)
    site = ensure_site(session, identity.org, identity.site)
    cert_pem = cert.public_bytes(Encoding.PEM).decode()
    site.certificate_pem = cert_pem
    site.certificate_serial = f"{cert.serial_number:x}"
    session.add(
        SiteCertificate(
            serial=site.certificate_serial,
            org=identity.org,
            site=identity.site,
            certificate_pem=cert_pem,
        )
    )
    site.encryption_public_key = request.encryption_public_key
    site.encryption_key_signature = request.encryption_key_signature
    site.encryption_key_id = hashlib.sha256(raw_key).hexdigest()[:32]
    site.enrolled_at = utcnow()
    session.add(site)
    audit.record(
        session,
        actor=f"site:{identity.org}/{identity.site}",
        action="site.enroll",
        subject=site.certificate_serial,
    )
    session.commit()
    ca_pem = registry.load().cert_pem.decode()
    return EnrollResponse(
        certificate_pem=cert_pem,
        ca_pem=ca_pem,
        org=identity.org,
        site=identity.site,
        hub_receipt_public_key_pem=receipt_public_pem,
    )


def renew(
    session: Session, registry: CADirectory, current_pem: str, request: RenewRequest
) -> RenewResponse:
    """A fresh certificate for a new key of the same site; the encryption key is re-signed."""
    from cryptography import x509

    current = x509.load_pem_x509_certificate(current_pem.encode())
    identity = site_identity_from_certificate(current)
    site = session.exec(
        select(Site).where(Site.org == identity.org, Site.site == identity.site)
    ).first()
    if site is None or site.encryption_public_key is None:
        raise EnrollmentRefused(f"site {identity.org}/{identity.site} is not enrolled here")
    try:
        signature = base64.b64decode(request.encryption_key_signature, validate=True)
    except ValueError as exc:
        raise EnrollmentRefused("the encryption key signature is not valid base64") from exc
    try:
        cert = registry.renew(current, request.csr_pem.encode())
    except CertsError as exc:
        raise EnrollmentRefused(str(exc)) from exc
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    raw_key = base64.b64decode(site.encryption_public_key)
    try:
        public_key.verify(signature, encryption_key_message(raw_key), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        registry.revoke(cert.serial_number, reason="renewal aborted: bad key signature")
        raise EnrollmentRefused(
            "the encryption key is not signed by the key in the CSR; renewal refused"
        ) from exc
    cert_pem = cert.public_bytes(Encoding.PEM).decode()
    site.certificate_pem = cert_pem
    site.certificate_serial = f"{cert.serial_number:x}"
    session.add(
        SiteCertificate(
            serial=site.certificate_serial,
            org=identity.org,
            site=identity.site,
            certificate_pem=cert_pem,
        )
    )
    site.encryption_key_signature = request.encryption_key_signature
    session.add(site)
    audit.record(
        session,
        actor=f"site:{identity.org}/{identity.site}",
        action="site.renew",
        subject=site.certificate_serial,
    )
    session.commit()
    return RenewResponse(certificate_pem=cert_pem)
