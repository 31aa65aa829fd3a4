"""Organizations and sites as admins manage them. No FastAPI: API, CLI and UI share these."""

from __future__ import annotations

import datetime as dt
import functools
import json
import shlex
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import delete
from sqlmodel import Session, col, select

from certs.errors import CertsError
from certs.identity import is_valid_name
from certs.registry import CADirectory
from certs.tokens import TokenClaims, issue_token, verify_token
from hub import audit
from hub.errors import Conflict, InvalidRequest, NotFound
from hub.models import Organization, SharingPolicy, Site, SiteCertificate, aware
from hub.permissions import Permission, authorize, visible_orgs
from hub.principals import Principal
from hub.sites.models import EnrollmentToken
from wire.collection_key import COLLECTION_PREFIX, collection_named

MAX_TOKEN_TTL_MINUTES = 7 * 24 * 60
NAME_RULE = "1-63 lowercase letters, digits and hyphens, starting with a letter or digit"


def _check_id(label: str, value: str) -> None:
    if not is_valid_name(value):
        raise InvalidRequest(f"{label} {value!r} is not a valid id: use {NAME_RULE}")


@dataclass(frozen=True)
class OrgView:
    id: str
    name: str
    created_at: dt.datetime
    sites: int


@dataclass(frozen=True)
class SiteView:
    org: str
    site: str
    name: str
    enrolled_at: dt.datetime | None
    certificate_serial: str | None
    certificate_expires_at: dt.datetime | None
    revoked: bool
    last_seen_at: dt.datetime | None


@dataclass(frozen=True)
class TokenView:
    token_id: str
    org: str
    site: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    state: str  # unused | used | cancelled | expired


@dataclass(frozen=True)
class IssuedToken:
    token: str
    enroll_command: str
    view: TokenView


# --- organizations ----------------------------------------------------------------------


def create_org(session: Session, actor: Principal, org_id: str, name: str = "") -> OrgView:
    authorize(actor, Permission.ORG_CREATE)
    _check_id("organization id", org_id)
    if collection_named(org_id) is not None:
        raise InvalidRequest(
            f"organization ids may not start with {COLLECTION_PREFIX!r} (research collections "
            "are named so); choose another id"
        )
    if session.get(Organization, org_id) is not None:
        raise Conflict(f"organization {org_id!r} exists")
    row = Organization(id=org_id, name=(name.strip() or org_id)[:200])
    session.add(row)
    audit.record(session, actor=actor.actor, action="org.create", subject=org_id, org=org_id)
    session.commit()
    return OrgView(id=org_id, name=row.name, created_at=aware(row.created_at), sites=0)


def require_org(session: Session, actor: Principal, org: str, permission: Permission) -> None:
    authorize(actor, permission, org)
    if session.get(Organization, org) is None:
        raise NotFound(f"no organization {org!r} that you can see")


def list_orgs(session: Session, actor: Principal) -> list[OrgView]:
    authorize(actor, Permission.ORG_READ)
    query = select(Organization).order_by(Organization.id)
    orgs = visible_orgs(actor)
    if orgs is not None:
        query = query.where(col(Organization.id).in_(orgs))
    out = []
    for row in session.exec(query):
        count = len(session.exec(select(Site.id).where(Site.org == row.id)).all())
        out.append(OrgView(id=row.id, name=row.name, created_at=aware(row.created_at), sites=count))
    return out


# --- sites ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def certificate_expiry(pem: str | None) -> dt.datetime | None:
    """When a stored certificate expires (parsed once per certificate and process)."""
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    except ValueError:
        return None


def site_view(row: Site, ca: CADirectory) -> SiteView:
    serial = row.certificate_serial
    return SiteView(
        org=row.org,
        site=row.site,
        name=row.name,
        enrolled_at=aware(row.enrolled_at) if row.enrolled_at else None,
        certificate_serial=serial,
        certificate_expires_at=certificate_expiry(row.certificate_pem),
        revoked=bool(serial) and ca.is_revoked(int(serial, 16)),  # type: ignore[arg-type]
        last_seen_at=aware(row.last_seen_at) if row.last_seen_at else None,
    )


def _site_row(session: Session, org: str, site: str) -> Site:
    row = session.exec(select(Site).where(Site.org == org, Site.site == site)).first()
    if row is None:
        raise NotFound(f"no site {org}/{site}")
    return row


def create_site(
    session: Session, ca: CADirectory, actor: Principal, org: str, site: str, name: str = ""
) -> SiteView:
    require_org(session, actor, org, Permission.SITE_MANAGE)
    _check_id("site id", site)
    if session.exec(select(Site).where(Site.org == org, Site.site == site)).first() is not None:
        raise Conflict(f"site {org}/{site} exists")
    row = Site(org=org, site=site, name=(name.strip() or site)[:200])
    session.add(row)
    audit.record(session, actor=actor.actor, action="site.create", subject=f"{org}/{site}", org=org)
    session.commit()
    session.refresh(row)
    return site_view(row, ca)


def list_sites(session: Session, ca: CADirectory, actor: Principal, org: str) -> list[SiteView]:
    require_org(session, actor, org, Permission.SITE_READ)
    rows = session.exec(select(Site).where(Site.org == org).order_by(Site.site))
    return [site_view(r, ca) for r in rows]


def get_site(session: Session, ca: CADirectory, actor: Principal, org: str, site: str) -> SiteView:
    require_org(session, actor, org, Permission.SITE_READ)
    return site_view(_site_row(session, org, site), ca)


def _revoke_all(session: Session, ca: CADirectory, org: str, site: str, reason: str) -> list[str]:
    revoked = []
    serials = session.exec(
        select(SiteCertificate.serial).where(
            SiteCertificate.org == org, SiteCertificate.site == site
        )
    ).all()
    for serial in serials:
        try:
            if not ca.is_revoked(int(serial, 16)):
                ca.revoke(int(serial, 16), reason=reason)
                revoked.append(serial)
        except CertsError:
            continue
    return revoked


def revoke_site(
    session: Session, ca: CADirectory, actor: Principal, org: str, site: str, reason: str
) -> SiteView:
    """Revoke every certificate of the site: its next node API request is refused."""
    require_org(session, actor, org, Permission.SITE_MANAGE)
    row = _site_row(session, org, site)
    reason = " ".join(reason.split())[:200] or "revoked by an admin"
    revoked = _revoke_all(session, ca, org, site, reason)
    audit.record(
        session,
        actor=actor.actor,
        action="site.revoke",
        subject=f"{org}/{site}",
        detail=json.dumps({"serials": revoked, "reason": reason}),
        org=org,
    )
    session.commit()
    return site_view(row, ca)


def remove_site(session: Session, ca: CADirectory, actor: Principal, org: str, site: str) -> None:
    """Revoke and forget a site; its bundles and the audit log stay."""
    require_org(session, actor, org, Permission.SITE_MANAGE)
    row = _site_row(session, org, site)
    revoked = _revoke_all(session, ca, org, site, "site removed")
    for token in session.exec(
        select(EnrollmentToken).where(EnrollmentToken.org == org, EnrollmentToken.site == site)
    ):
        _cancel(session, ca, token, actor)
    session.exec(
        delete(SharingPolicy).where(col(SharingPolicy.org) == org, col(SharingPolicy.site) == site)
    )
    session.delete(row)
    audit.record(
        session,
        actor=actor.actor,
        action="site.remove",
        subject=f"{org}/{site}",
        detail=json.dumps({"serials": revoked}),
        org=org,
    )
    session.commit()


# --- enrollment tokens ------------------------------------------------------------------


def enroll_command(token: str) -> str:
    return f"hexchange-agent enroll --config /etc/hexchange/agent.toml --token {shlex.quote(token)}"


def _token_view(row: EnrollmentToken, used: set[str], now: dt.datetime) -> TokenView:
    if row.cancelled_at is not None:
        state = "cancelled"
    elif row.jti in used:
        state = "used"
    elif aware(row.expires_at) <= now:
        state = "expired"
    else:
        state = "unused"
    return TokenView(
        token_id=row.jti,
        org=row.org,
        site=row.site,
        created_by=row.created_by,
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at),
        state=state,
    )


def issue_enrollment_token(
    session: Session,
    ca: CADirectory,
    actor: Principal,
    org: str,
    site: str,
    ttl_minutes: int = 60,
) -> IssuedToken:
    """A one-time token for the site (shown once, only its id is kept)."""
    require_org(session, actor, org, Permission.SITE_MANAGE)
    _site_row(session, org, site)
    if not 1 <= ttl_minutes <= MAX_TOKEN_TTL_MINUTES:
        raise InvalidRequest(f"ttl_minutes must be between 1 and {MAX_TOKEN_TTL_MINUTES}")
    token = issue_token(ca.load(), org=org, site=site, ttl=dt.timedelta(minutes=ttl_minutes))
    claims = verify_token(token, ca.load().public_key)
    row = EnrollmentToken(
        jti=claims.token_id,
        org=org,
        site=site,
        created_by=actor.actor,
        expires_at=claims.expires_at,
    )
    session.add(row)
    audit.record(
        session,
        actor=actor.actor,
        action="token.issue",
        subject=f"{org}/{site}",
        detail=f"token {claims.token_id} valid {ttl_minutes} min",
        org=org,
    )
    session.commit()
    view = _token_view(row, set(), dt.datetime.now(dt.UTC))
    return IssuedToken(token=token, enroll_command=enroll_command(token), view=view)


def list_enrollment_tokens(
    session: Session, ca: CADirectory, actor: Principal, org: str, site: str | None = None
) -> list[TokenView]:
    require_org(session, actor, org, Permission.SITE_MANAGE)
    query = select(EnrollmentToken).where(EnrollmentToken.org == org)
    if site is not None:
        query = query.where(EnrollmentToken.site == site)
    used = ca.used_token_ids()
    now = dt.datetime.now(dt.UTC)
    rows = session.exec(query.order_by(col(EnrollmentToken.created_at).desc()))
    return [_token_view(r, used, now) for r in rows]


def _cancel(session: Session, ca: CADirectory, row: EnrollmentToken, actor: Principal) -> bool:
    if row.cancelled_at is not None or row.jti in ca.used_token_ids():
        return False
    claims = TokenClaims(
        org=row.org, site=row.site, token_id=row.jti, expires_at=aware(row.expires_at)
    )
    try:
        ca.consume_token(claims)  # the CA now refuses it, in every hub process
    except CertsError:
        return False
    row.cancelled_at = dt.datetime.now(dt.UTC)
    row.cancelled_by = actor.actor
    session.add(row)
    return True


def cancel_enrollment_token(
    session: Session, ca: CADirectory, actor: Principal, org: str, token_id: str
) -> TokenView:
    require_org(session, actor, org, Permission.SITE_MANAGE)
    row = session.get(EnrollmentToken, token_id)
    if row is None or row.org != org:
        raise NotFound(f"no enrollment token {token_id!r} in {org}")
    if not _cancel(session, ca, row, actor):
        raise Conflict("this token was already used or cancelled")
    audit.record(
        session,
        actor=actor.actor,
        action="token.cancel",
        subject=f"{row.org}/{row.site}",
        detail=f"token {token_id}",
        org=org,
    )
    session.commit()
    return _token_view(row, ca.used_token_ids(), dt.datetime.now(dt.UTC))
