"""What the hub shows about itself: the OpenAPI schema and the /docs, /redoc pages.

Off on both listeners by default. With `public_api_docs` they are served on the public
listener only; on the node listener (mutual TLS, agents only) they are always 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.settings import HubSettings

DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_NOT_FOUND = b'{"type":"about:blank","title":"Not found","status":404,"detail":"not found"}'


def fastapi_docs_kwargs(settings: HubSettings) -> dict[str, Any]:
    """FastAPI(...) arguments: no schema and no docs pages unless the setting enables them."""
    if settings.public_api_docs:
        return {}
    return {"openapi_url": None, "docs_url": None, "redoc_url": None}


class NodeListenerDocsGuard:
    """404 for the documentation paths on a connection to the node listener's port."""

    def __init__(self, app: ASGIApp, node_port: int) -> None:
        self.app = app
        self.node_port = node_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in DOC_PATHS:
            server = scope.get("server") or ("", None)
            if server[1] == self.node_port:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [(b"content-type", b"application/problem+json")],
                    }
                )
                await send({"type": "http.response.body", "body": _NOT_FOUND})
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: HubSettings) -> None:
    if settings.public_api_docs:
        app.add_middleware(NodeListenerDocsGuard, node_port=settings.node_port)
