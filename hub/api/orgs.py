"""User API: organizations, sites, enrollment tokens, fleet, bundle index."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from hub.api.access import (
    BundleReadDep,
    FleetReadDep,
    OrgCreateDep,
    OrgReadDep,
    SiteManageDep,
    SiteReadDep,
)
from hub.api.deps import OrgPath, ServicesDep, SessionDep, SitePath
from hub.api.inputs import ApiInput
from hub.fleet import service as fleet
from hub.index import service as index
from hub.sites import service as sites

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"

router = APIRouter(prefix="/api/v1", tags=["organizations"])


class OrgIn(ApiInput):
    id: str = Field(min_length=1, max_length=63)
    name: str = Field(default="", max_length=200)


class SiteIn(ApiInput):
    site: str = Field(min_length=1, max_length=63)
    name: str = Field(default="", max_length=200)


class TokenIn(ApiInput):
    ttl_minutes: int = Field(default=60, ge=1, le=sites.MAX_TOKEN_TTL_MINUTES)


class IssuedTokenOut(BaseModel):
    token: str = Field(description="shown once: the hub keeps only its id")
    enroll_command: str
    hub_public_url: str
    info: sites.TokenView


class RevokeIn(ApiInput):
    reason: str = Field(default="", max_length=200)


@router.get("/orgs")
def list_orgs(actor: OrgReadDep, session: SessionDep) -> list[sites.OrgView]:
    return sites.list_orgs(session, actor)


@router.post("/orgs", status_code=201)
def create_org(body: OrgIn, actor: OrgCreateDep, session: SessionDep) -> sites.OrgView:
    return sites.create_org(session, actor, body.id, body.name)


@router.get("/orgs/{org}/sites")
def list_sites(
    org: OrgPath, actor: SiteReadDep, session: SessionDep, services: ServicesDep
) -> list[sites.SiteView]:
    return sites.list_sites(session, services.ca, actor, org)


@router.post("/orgs/{org}/sites", status_code=201)
def create_site(
    org: OrgPath, body: SiteIn, actor: SiteManageDep, session: SessionDep, services: ServicesDep
) -> sites.SiteView:
    return sites.create_site(session, services.ca, actor, org, body.site, body.name)


@router.get("/orgs/{org}/sites/{site}")
def get_site(
    org: OrgPath, site: SitePath, actor: SiteReadDep, session: SessionDep, services: ServicesDep
) -> sites.SiteView:
    return sites.get_site(session, services.ca, actor, org, site)


@router.delete("/orgs/{org}/sites/{site}", status_code=204)
def remove_site(
    org: OrgPath, site: SitePath, actor: SiteManageDep, session: SessionDep,
    services: ServicesDep,
) -> Response:  # fmt: skip
    sites.remove_site(session, services.ca, actor, org, site)
    return Response(status_code=204)


@router.post("/orgs/{org}/sites/{site}/revoke")
def revoke_site(
    org: OrgPath, site: SitePath, body: RevokeIn, actor: SiteManageDep, session: SessionDep,
    services: ServicesDep,
) -> sites.SiteView:  # fmt: skip
    return sites.revoke_site(session, services.ca, actor, org, site, body.reason)


@router.post("/orgs/{org}/sites/{site}/enrollment-tokens", status_code=201)
def issue_token(
    org: OrgPath, site: SitePath, body: TokenIn, actor: SiteManageDep, session: SessionDep,
    services: ServicesDep,
) -> IssuedTokenOut:  # fmt: skip
    issued = sites.issue_enrollment_token(session, services.ca, actor, org, site, body.ttl_minutes)
    settings = services.settings
    return IssuedTokenOut(
        token=issued.token,
        enroll_command=issued.enroll_command,
        hub_public_url=settings.public_url,
        info=issued.view,
    )


@router.get("/orgs/{org}/enrollment-tokens")
def list_tokens(
    org: OrgPath, actor: SiteManageDep, session: SessionDep, services: ServicesDep,
    site: Annotated[str | None, Query(max_length=63, pattern=NAME)] = None,
) -> list[sites.TokenView]:  # fmt: skip
    return sites.list_enrollment_tokens(session, services.ca, actor, org, site)


@router.delete("/orgs/{org}/enrollment-tokens/{token_id}")
def cancel_token(
    org: OrgPath, token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    actor: SiteManageDep, session: SessionDep, services: ServicesDep,
) -> sites.TokenView:  # fmt: skip
    return sites.cancel_enrollment_token(session, services.ca, actor, org, token_id)


@router.get("/fleet")
def fleet_all(
    actor: FleetReadDep, session: SessionDep, services: ServicesDep
) -> list[fleet.FleetRow]:
    """Every site of the caller's organizations (all of them for a network admin)."""
    return fleet.fleet(session, services.ca, actor)


@router.get("/orgs/{org}/fleet")
def fleet_org(
    org: OrgPath, actor: FleetReadDep, session: SessionDep, services: ServicesDep
) -> list[fleet.FleetRow]:
    return fleet.fleet(session, services.ca, actor, org)


@router.get("/orgs/{org}/sites/{site}/heartbeats")
def heartbeats(
    org: OrgPath, site: SitePath, actor: FleetReadDep, session: SessionDep,
    since: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[fleet.BeatView]:  # fmt: skip
    return fleet.history(session, actor, org, site, since=since, limit=limit)


@router.get("/orgs/{org}/bundles")
def bundles(
    org: OrgPath, actor: BundleReadDep, session: SessionDep,
    direction: Literal["any", "sent", "received"] = "any",
    site: Annotated[str | None, Query(max_length=63, pattern=NAME)] = None,
    state: Literal["receiving", "complete"] | None = None,
    mode: Literal["identified", "deidentified"] | None = None,
    modality: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_]{1,16}$")] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=index.MAX_PAGE)] = 100,
) -> list[index.BundleView]:  # fmt: skip
    return index.search(
        session, actor, org, direction=direction, site=site, state=state, mode=mode,
        modality=modality, since=since, until=until, limit=limit,
    )  # fmt: skip
