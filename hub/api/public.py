"""Public listener (server TLS only): enrollment (health is in `meta`)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from hub import enrollment
from hub.api.access import PublicRoute
from hub.api.deps import SessionDep
from wire.api import EnrollRequest, EnrollResponse

router = APIRouter(prefix="/api/v1", tags=["public"])


@router.post("/enroll", dependencies=[PublicRoute])
def enroll(body: EnrollRequest, request: Request, session: SessionDep) -> EnrollResponse:
    state = request.app.state
    lifetime = timedelta(seconds=state.settings.site_cert_lifetime_s)
    return enrollment.enroll(
        session, state.ca_directory, body, state.receipt_public_pem, lifetime=lifetime
    )
