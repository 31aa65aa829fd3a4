"""Health, Prometheus metrics and the API schema (admins only: the schema maps the attack
surface). Interactive /docs and /redoc pages are not served: they load scripts from a CDN."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.api.access import ApiDocsDep, MetricsReadDep, PublicRoute
from hub.api.deps import ServicesDep
from hub.fleet.metrics import registry_for

router = APIRouter(tags=["meta"])


@router.get("/api/v1/health", dependencies=[PublicRoute])
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics")
def metrics(actor: MetricsReadDep, services: ServicesDep) -> Response:
    """Per-site fleet gauges in the Prometheus text format (network admins' API token)."""
    registry = services.extras.get("metrics_registry")
    if registry is None:
        registry = services.extras["metrics_registry"] = registry_for(services)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)  # type: ignore[arg-type]


@router.get("/api/v1/openapi.json")
def openapi(request: Request, actor: ApiDocsDep) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi()
    return schema
