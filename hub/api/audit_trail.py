"""Every user-API request is audited, reads included: who, what (method and route), which
organization, from where, and the outcome. Pure ASGI middleware: it reads the principal that
`Allow` left in the request state and queues the event once the response status is known
(`hub.audit.buffer` appends the queue in batches)."""

from __future__ import annotations

from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.audit.buffer import AccessEvent
from hub.services import Services

log = structlog.get_logger("hexchange.hub.audit")


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 404, 429):
        return "denied"
    return "error"


class AuditTrail:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            principal = scope.get("state", {}).get("principal")
            if principal is not None:
                self._record(scope, principal, status)

    def _record(self, scope: Scope, principal: Any, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "?"
        params = scope.get("path_params") or {}
        org = params.get("org") if isinstance(params.get("org"), str) else principal.org
        # what a route adds (e.g. the matching keys of a DICOMweb query, never their values)
        extra = str((scope.get("state") or {}).get("audit_detail") or "")[:500]
        self.services.audit_buffer.put(
            AccessEvent(
                actor=principal.actor,
                action=f"{scope['method']} {template}",
                subject=str(scope.get("path", ""))[:200],
                detail=f"status {status}" + (f"; {extra}" if extra else ""),
                org=(org or "")[:63],
                address=principal.address,
                outcome=_outcome(status),
            )
        )
