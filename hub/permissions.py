"""Permissions and what each role holds: one table, read by the routes and by the tests.

Every route declares exactly one permission (see `hub.api.access`). A principal without the
permission gets 403; one with it but outside the organization named in the path gets 404, so a
foreign organization's existence is not confirmed.
"""

from __future__ import annotations

from enum import StrEnum

from hub.errors import Forbidden, NotFound
from hub.principals import Principal, Role


class Permission(StrEnum):
    PUBLIC = "public"  # no login: health, enrollment, login
    SITE = "site"  # node API: the caller is a site, by its mutual-TLS certificate
    SELF = "self"  # any signed-in person: own account, own API tokens
    ORG_CREATE = "org:create"
    ORG_READ = "org:read"
    SITE_READ = "site:read"
    SITE_MANAGE = "site:manage"  # create sites, enrollment tokens, revoke, remove
    FLEET_READ = "fleet:read"
    POLICY_READ = "policy:read"
    POLICY_WRITE = "policy:write"
    AUDIT_READ = "audit:read"
    USER_READ = "user:read"
    USER_MANAGE = "user:manage"
    BUNDLE_READ = "bundle:read"
    METRICS_READ = "metrics:read"
    API_DOCS = "docs:read"
    REQUEST_READ = "request:read"  # the federated request log (hub/requests)
    COLLECTION_READ = "collection:read"  # DICOMweb reads of collections one may see
    COLLECTION_MANAGE = "collection:manage"  # create, grant, publish, STOW-RS


_ADMIN_OF_ORG = frozenset(
    {
        Permission.SELF,
        Permission.ORG_READ,
        Permission.SITE_READ,
        Permission.SITE_MANAGE,
        Permission.FLEET_READ,
        Permission.POLICY_READ,
        Permission.POLICY_WRITE,
        Permission.AUDIT_READ,
        Permission.USER_READ,
        Permission.USER_MANAGE,
        Permission.BUNDLE_READ,
        Permission.API_DOCS,
        Permission.REQUEST_READ,
        Permission.COLLECTION_READ,
        Permission.COLLECTION_MANAGE,
    }
)

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.NETWORK_ADMIN: _ADMIN_OF_ORG | {Permission.ORG_CREATE, Permission.METRICS_READ},
    Role.ORG_ADMIN: _ADMIN_OF_ORG,
    Role.CLINICIAN: frozenset(
        {
            Permission.SELF,
            Permission.ORG_READ,
            Permission.SITE_READ,
            Permission.BUNDLE_READ,
            Permission.REQUEST_READ,
        }
    ),
    Role.RESEARCHER: frozenset({Permission.SELF, Permission.COLLECTION_READ}),
}

# Permissions that a route checks against the organization in its path (`{org}`).
ORG_SCOPED = frozenset(
    {
        Permission.ORG_READ,
        Permission.SITE_READ,
        Permission.SITE_MANAGE,
        Permission.FLEET_READ,
        Permission.POLICY_READ,
        Permission.POLICY_WRITE,
        Permission.AUDIT_READ,
        Permission.USER_READ,
        Permission.USER_MANAGE,
        Permission.BUNDLE_READ,
        Permission.REQUEST_READ,
    }
)


def holds(principal: Principal, permission: Permission) -> bool:
    if permission is Permission.PUBLIC:
        return True
    if permission is Permission.SITE:
        return principal.kind == "site"
    return principal.role is not None and permission in GRANTS[principal.role]


def authorize(principal: Principal, permission: Permission, org: str | None = None) -> None:
    """Raise Forbidden (no such permission) or NotFound (an organization not theirs)."""
    if not holds(principal, permission):
        raise Forbidden(f"your role may not do this ({permission.value} is needed)")
    if org is not None and permission in ORG_SCOPED and not principal.sees_org(org):
        raise NotFound(f"no organization {org!r} that you can see")


def visible_orgs(principal: Principal) -> set[str] | None:
    """The organizations a principal's org-scoped reads cover; None means all of them."""
    if principal.is_network_admin:
        return None
    return {principal.org} if principal.org else set()
