"""Web UI: the log of federated requests between organizations (no patient identity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from hub.api.access import UiAllow
from hub.api.deps import SessionDep
from hub.permissions import Permission
from hub.principals import Principal
from hub.requests import service as requests
from hub.sites import service as sites
from hub.ui.web import UiRoute, render

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

RequestReadUi = Annotated[Principal, Depends(UiAllow(Permission.REQUEST_READ))]
Name = Annotated[str, Query(max_length=63, pattern=r"^([a-z0-9][a-z0-9-]{0,62})?$")]

# what each state of an asked organization means to a clinician reading the log
STATE_HELP = {
    "pending": "waiting for the organization's agent to pick it up",
    "delivered": "the organization's agent is working on it",
    "answered": "answered",
    "offline": "the organization's agent was offline (see last contact)",
    "expired": "no answer before the request expired",
}


@router.get("/requests")
def requests_page(
    request: Request, actor: RequestReadUi, session: SessionDep, org: Name = ""
) -> Response:
    """Requests the organization made or was asked: who asked whom, when, state and counts."""
    orgs = [o.id for o in sites.list_orgs(session, actor)]
    org = org or actor.org or (orgs[0] if orgs else "")
    rows = requests.request_log(session, actor, org, limit=200) if org else []
    return render(request, "requests.html", rows=rows, org=org, orgs=orgs, state_help=STATE_HELP)
