"""The hub's composition root: `create_app(settings)` builds everything from settings."""

from __future__ import annotations

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from certs.registry import CADirectory
from hub import errors, exposure, limits, quotas
from hub.bootstrap import load_receipt_key
from hub.db import create_schema, make_engine
from hub.routes import node, public
from hub.settings import HubSettings
from hub.storage import LocalBlobStore
from wire.api import one_line

log = structlog.get_logger("hexchange.hub")

_STATUS = {
    errors.NotAuthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidRequest: 422,
    errors.EnrollmentRefused: 403,
}


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"type": "about:blank", "title": title, "status": status, "detail": detail},
        media_type="application/problem+json",
    )


def create_app(settings: HubSettings) -> FastAPI:
    """Build the hub application. Nothing is created at import time."""
    app = FastAPI(title="Hexchange hub", version="0.1.0", **exposure.fastapi_docs_kwargs(settings))
    engine = make_engine(settings.db_url)
    create_schema(engine)
    registry = CADirectory(settings.ca_dir)
    receipt_key = load_receipt_key(settings.receipt_key_file)
    app.state.settings = settings
    app.state.engine = engine
    app.state.blobs = LocalBlobStore(settings.blob_dir)
    app.state.ca_directory = registry
    app.state.receipt_key = receipt_key
    app.state.receipt_public_pem = receipt_public_pem(receipt_key)

    @app.exception_handler(errors.HubError)
    async def _hub_error(request: Request, exc: errors.HubError) -> JSONResponse:
        status = _STATUS.get(type(exc), 400)
        log.info(
            "request refused", path=one_line(request.url.path, 200), status=status, reason=exc.title
        )
        return _problem(status, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())
        return _problem(422, "Invalid request", f"these fields are missing or invalid: {fields}")

    limits.install(app, json_cap=settings.max_json_body)
    exposure.install(app, settings)
    quotas.install(app)
    app.include_router(public.router)
    app.include_router(node.router)
    return app


def receipt_public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
