"""What each route of an app declares: read by the permission-matrix test and the docs.

FastAPI (0.16x) keeps included routers lazily; `iter_routes` flattens them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from hub.permissions import Permission


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    permissions: tuple[Permission, ...]


def _routes(app: FastAPI) -> Iterator[Any]:
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        elif getattr(route, "dependant", None) is not None:
            yield route


def _declared(dependant: Any) -> Iterator[Permission]:
    call = getattr(dependant, "call", None)
    permission = getattr(call, "permission", None)
    if isinstance(permission, Permission):
        yield permission
    for sub in getattr(dependant, "dependencies", ()):
        yield from _declared(sub)


def iter_routes(app: FastAPI) -> Iterator[RouteInfo]:
    for route in _routes(app):
        yield RouteInfo(
            path=route.path,
            methods=frozenset(route.methods or ()),
            permissions=tuple(dict.fromkeys(_declared(route.dependant))),
        )
