"""User API: the audit log (own organization for org admins), verify, FHIR AuditEvent export."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from hub.api.access import AuditReadDep, MetricsReadDep
from hub.api.deps import OrgPath, ServicesDep, SessionDep
from hub.api.inputs import ShortText
from hub.audit import fhir
from hub.audit import query as audit_query
from hub.audit.chain import AuditBroken, VerifyReport, verify_chain
from hub.errors import Conflict

router = APIRouter(prefix="/api/v1", tags=["audit"])

Limit = Annotated[int, Query(ge=1, le=audit_query.MAX_PAGE)]
Seq = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Text = ShortText


@router.get("/audit")
def audit_all(
    actor: AuditReadDep, session: SessionDep, services: ServicesDep,
    action: Text = None, who: Text = None,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    before_seq: Seq = None, limit: Limit = 100,
) -> list[audit_query.EventView]:  # fmt: skip
    """Newest first: every organization for a network admin, your own for an org admin."""
    services.audit_buffer.sync()
    return audit_query.query(
        session, actor, action=action, who=who, since=since, until=until,
        before_seq=before_seq, limit=limit,
    )  # fmt: skip


@router.get("/orgs/{org}/audit")
def audit_org(
    org: OrgPath, actor: AuditReadDep, session: SessionDep, services: ServicesDep,
    action: Text = None, who: Text = None,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    before_seq: Seq = None, limit: Limit = 100,
) -> list[audit_query.EventView]:  # fmt: skip
    services.audit_buffer.sync()
    return audit_query.query(
        session, actor, org=org, action=action, who=who, since=since, until=until,
        before_seq=before_seq, limit=limit,
    )  # fmt: skip


@router.get("/orgs/{org}/audit/fhir")
def audit_org_fhir(
    org: OrgPath, actor: AuditReadDep, session: SessionDep, services: ServicesDep,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    before_seq: Seq = None, limit: Limit = 100,
) -> dict[str, Any]:  # fmt: skip
    """The same events as FHIR R4 AuditEvent resources in a collection Bundle."""
    services.audit_buffer.sync()
    events = audit_query.query(
        session, actor, org=org, since=since, until=until, before_seq=before_seq, limit=limit
    )
    return fhir.bundle(events)


@router.get("/audit/fhir")
def audit_all_fhir(
    actor: AuditReadDep, session: SessionDep, services: ServicesDep,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    before_seq: Seq = None, limit: Limit = 100,
) -> dict[str, Any]:  # fmt: skip
    services.audit_buffer.sync()
    events = audit_query.query(
        session, actor, since=since, until=until, before_seq=before_seq, limit=limit
    )
    return fhir.bundle(events)


@router.get("/audit/verify")
def audit_verify(actor: MetricsReadDep, session: SessionDep, services: ServicesDep) -> VerifyReport:
    """Check the whole chain and its signed checkpoints (network admins)."""
    services.audit_buffer.sync()
    try:
        return verify_chain(session, services.signing_key.public_key())
    except AuditBroken as exc:
        raise Conflict(f"the audit log fails verification: {exc}") from None
