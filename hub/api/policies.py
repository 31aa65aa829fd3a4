"""User API: sharing policy per site: versions, diff, rollback, dry run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import Field

from hub.api.access import PolicyReadDep, PolicyWriteDep
from hub.api.deps import OrgPath, SessionDep, SitePath
from hub.api.inputs import ApiInput
from hub.policy import dryrun
from hub.policy import service as policies
from wire.policy import PolicyRule, SitePolicy

router = APIRouter(prefix="/api/v1/orgs/{org}/sites/{site}/policy", tags=["policy"])

Version = Annotated[int, Path(ge=0, le=2**31 - 1)]


class PolicyIn(ApiInput):
    rules: list[PolicyRule] = Field(max_length=256)
    reason: str = Field(min_length=1, max_length=500)
    expected_version: int | None = Field(
        default=None, ge=0, description="refuse the save if someone changed the policy meanwhile"
    )


class RollbackIn(ApiInput):
    to_version: int = Field(ge=0, le=2**31 - 1)
    reason: str = Field(default="", max_length=500)


class DryRunIn(ApiInput):
    rules: list[PolicyRule] = Field(max_length=256)
    days: int = Field(default=30, ge=1, le=dryrun.MAX_DAYS)


@router.get("")
def show(org: OrgPath, site: SitePath, actor: PolicyReadDep, session: SessionDep) -> SitePolicy:
    return policies.show(session, actor, org, site)


@router.put("")
def save(
    org: OrgPath, site: SitePath, body: PolicyIn, actor: PolicyWriteDep, session: SessionDep
) -> SitePolicy:
    """Save the full rule set as a new version (kept forever, audited with the reason)."""
    return policies.save(
        session, actor, org, site, body.rules, reason=body.reason,
        expected_version=body.expected_version,
    )  # fmt: skip


@router.get("/versions")
def versions(
    org: OrgPath, site: SitePath, actor: PolicyReadDep, session: SessionDep
) -> list[policies.VersionView]:
    return policies.list_versions(session, actor, org, site)


@router.get("/versions/{version}")
def version(
    org: OrgPath, site: SitePath, version: Version, actor: PolicyReadDep, session: SessionDep
) -> policies.VersionView:
    return policies.get_version(session, actor, org, site, version)


@router.get("/diff")
def diff(
    org: OrgPath, site: SitePath, actor: PolicyReadDep, session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=0, le=2**31 - 1)],
    to_version: Annotated[int, Query(alias="to", ge=0, le=2**31 - 1)],
) -> policies.PolicyDiff:  # fmt: skip
    return policies.diff(session, actor, org, site, from_version, to_version)


@router.post("/rollback")
def rollback(
    org: OrgPath, site: SitePath, body: RollbackIn, actor: PolicyWriteDep, session: SessionDep
) -> SitePolicy:
    return policies.rollback(session, actor, org, site, body.to_version, reason=body.reason)


@router.post("/dry-run")
def dry_run(
    org: OrgPath, site: SitePath, body: DryRunIn, actor: PolicyReadDep, session: SessionDep
) -> dryrun.DryRun:
    """What these rules would have sent over the last `days`, beside the current version."""
    return dryrun.dry_run(session, actor, org, site, body.rules, days=body.days)
