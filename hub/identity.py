"""Who is calling the node API: taken from the verified TLS client certificate, never a header."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlmodel import Session, select

from certs.errors import CertsError
from certs.identity import SiteIdentity, site_identity_from_pem
from hub.errors import Forbidden, NotAuthenticated
from hub.models import Site
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


def current_site(request: Request) -> SiteIdentity:
    registry = request.app.state.ca_directory
    identity = identity_from_scope(request.scope, is_revoked=registry.is_revoked)
    # Revoking a site's newest certificate revokes the site: an older, unrevoked certificate
    # of the same site can then neither call the node API nor renew itself back in.
    with Session(request.app.state.engine) as session:
        current = session.exec(
            select(Site.certificate_serial).where(
                Site.org == identity.org, Site.site == identity.site
            )
        ).first()
    if current and registry.is_revoked(int(current, 16)):
        raise Forbidden(
            f"site {identity.org}/{identity.site} is revoked; ask the network admin for a new "
            "enrollment token"
        )
    return identity


current_site.permission = Permission.SITE  # type: ignore[attr-defined]  # read by the matrix

SiteDep = Annotated[SiteIdentity, Depends(current_site)]
