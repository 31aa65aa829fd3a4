"""The hub's composition root: `create_app(settings)` builds the services once and mounts the
HTTP adapters on two apps that share them: the node API (mutual-TLS listener) and the public
API (enrollment, people, organizations, policy, audit, metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import errors, quotas
from hub.api import (
    audit_api,
    collections_api,
    dicomweb,
    limits,
    meta,
    node,
    orgs,
    people,
    policies,
    public,
    requests_api,
)
from hub.api.audit_trail import AuditTrail
from hub.api.dicomweb_cors import DicomwebCors
from hub.collections.media import NotAcceptable
from hub.collections.worker import start_worker, stop_worker
from hub.services import Services, build_services
from hub.settings import HubSettings
from hub.ui import router as ui_router
from wire.api import one_line

log = structlog.get_logger("hexchange.hub")

_STATUS = {
    errors.NotAuthenticated: 401,
    errors.SignInRequired: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidRequest: 422,
    errors.EnrollmentRefused: 403,
    errors.TooManyRequests: 429,
    NotAcceptable: 406,
}


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"type": "about:blank", "title": title, "status": status, "detail": detail},
        media_type="application/problem+json",
    )


def _status_of(exc: errors.HubError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


def _base_app(services: Services, title: str) -> FastAPI:
    app = FastAPI(title=title, version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    app.state.settings = services.settings
    app.state.engine = services.engine
    app.state.blobs = services.blobs
    app.state.ca_directory = services.ca
    app.state.receipt_key = services.signing_key
    app.state.receipt_public_pem = services.signing_public_pem

    @app.exception_handler(errors.HubError)
    async def _hub_error(request: Request, exc: errors.HubError) -> JSONResponse:
        status = _status_of(exc)
        log.info(
            "request refused", path=one_line(request.url.path, 200), status=status, reason=exc.title
        )
        response = _problem(status, exc.title, exc.detail)
        if isinstance(exc, errors.TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hexchange"'
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            where = "the node API listener" if request.url.path.startswith("/node/") else ""
            detail = (
                f"no such endpoint here; {where} serves /node/v1 (mutual TLS)"
                if where
                else "no such endpoint on this listener"
            )
            return _problem(404, "Not found", detail)
        return _problem(exc.status_code, "HTTP error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()[:10]
        )  # field names and the rule broken, never the value sent
        return _problem(422, "Invalid request", f"these fields are missing or invalid: {problems}")

    limits.install(app, json_cap=services.settings.max_json_body)
    quotas.install(app)
    return app


def create_app(settings: HubSettings, services: Services | None = None) -> FastAPI:
    """Build the hub. Returns the public app; `app.state.node_app` is the node API's app.

    Nothing is created at import time; every CLI command builds the same `Services`.
    """
    services = services or build_services(settings)
    node_app = _base_app(services, "Hexchange hub node API")
    node_app.include_router(node.router)
    node_app.include_router(requests_api.node_router)

    app = _base_app(services, "Hexchange hub")
    # DICOMweb first: its paths (/dicomweb/...) overlap no other router's, and it takes the
    # most requests, so they are matched before the other routers' routes are tried
    for router in (
        dicomweb.router, meta.router, public.router, people.router, orgs.router,
        policies.router, audit_api.router, ui_router, collections_api.router,
    ):  # fmt: skip
        app.include_router(router)
    app.include_router(requests_api.user_router)
    app.add_middleware(AuditTrail, services=services)
    if settings.dicomweb_cors_origins:
        app.add_middleware(DicomwebCors, origins=settings.dicomweb_cors_origins)
    app.state.node_app = node_app

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        start_worker(services)  # the collection ingest worker runs while the hub serves
        try:
            yield
        finally:
            await asyncio.to_thread(stop_worker, services)

    app.router.lifespan_context = lifespan
    return app
