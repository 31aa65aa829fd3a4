"""Who is calling the node API: taken from the verified TLS client certificate, never a header."""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlmodel import Session, col, select

from certs.errors import CertsError
from certs.identity import SiteIdentity, site_identity_from_pem
from hub.errors import Forbidden, NotAuthenticated
from hub.models import Site, SiteCertificate, aware
from hub.permissions import Permission


def identity_from_scope(scope: MutableMapping[str, Any], *, is_revoked: Any) -> SiteIdentity:
    """Read the ASGI TLS extension filled by `hub.tls_scope` and map it to a site identity."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls or not tls.get("client_cert_chain"):
        raise NotAuthenticated(
            "this endpoint needs a client certificate issued by the network CA; "
            "enroll the agent (hexchange-agent enroll) and call the node API port"
        )
    if tls.get("client_cert_error"):
        raise NotAuthenticated("the client certificate was not verified by the server")
    leaf_pem = next(iter(tls["client_cert_chain"]))
    try:
        identity = site_identity_from_pem(
            leaf_pem.encode() if isinstance(leaf_pem, str) else leaf_pem
        )
    except CertsError as exc:
        raise NotAuthenticated(f"the client certificate names no Hexchange site: {exc}") from exc
    if is_revoked(identity.serial):
        raise Forbidden(
            f"certificate serial {identity.serial:x} was revoked; ask the network admin to "
            "issue a new enrollment token for this site"
        )
    return identity


def client_certificate_pem(scope: MutableMapping[str, Any]) -> str:
    """PEM of the verified client certificate of this connection (after `identity_from_scope`)."""
    leaf = next(iter(scope["extensions"]["tls"]["client_cert_chain"]))
    return leaf.decode() if isinstance(leaf, bytes) else str(leaf)


def check_current_certificate(
    session: Session, identity: SiteIdentity, *, overlap: dt.timedelta, is_revoked: Any
) -> None:
    """Only the site's CURRENT certificate authenticates (a renewal or re-enrollment replaces
    it). The one it replaced is still accepted for `overlap` after the replacement was
    issued (requests in flight, a renewal answer lost on the way), never an older one.
    Revoking the current certificate revokes the site."""
    site = session.exec(
        select(Site).where(Site.org == identity.org, Site.site == identity.site)
    ).first()
    if site is None or not site.certificate_serial:
        raise Forbidden(f"site {identity.org}/{identity.site} is not enrolled at this hub")
    current = site.certificate_serial
    if is_revoked(int(current, 16)):
        raise Forbidden(
            f"site {identity.org}/{identity.site} is revoked; ask the network admin for a new "
            "enrollment token"
        )
    caller = f"{identity.serial:x}"
    if caller == current:
        return
    current_row = session.get(SiteCertificate, current)
    if current_row is not None:
        issued = aware(current_row.issued_at)
        previous = session.exec(
            select(SiteCertificate.serial)
            .where(
                SiteCertificate.org == identity.org,
                SiteCertificate.site == identity.site,
                col(SiteCertificate.issued_at) < current_row.issued_at,
            )
            .order_by(col(SiteCertificate.issued_at).desc())
            .limit(1)
        ).first()
        if previous == caller and dt.datetime.now(dt.UTC) - issued <= overlap:
            return
    raise Forbidden(
        f"certificate serial {caller} is not the current certificate of "
        f"{identity.org}/{identity.site}: it was replaced by a renewal or a re-enrollment; "
        "use the newest certificate (the agent does this itself) or ask the network admin for "
        "a new enrollment token"
    )


def current_site(request: Request) -> SiteIdentity:
    state = request.app.state
    registry = state.ca_directory
    identity = identity_from_scope(request.scope, is_revoked=registry.is_revoked)
    overlap = dt.timedelta(seconds=state.settings.renewal_overlap_s)
    with Session(state.engine) as session:
        check_current_certificate(
            session, identity, overlap=overlap, is_revoked=registry.is_revoked
        )
    return identity


current_site.permission = Permission.SITE  # type: ignore[attr-defined]  # read by the matrix

SiteDep = Annotated[SiteIdentity, Depends(current_site)]
