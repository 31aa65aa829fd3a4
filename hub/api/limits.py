"""Request body caps, enforced before any route parses a body (pure ASGI middleware).

Every route has a cap (`body_cap`): small for JSON routes, the header limit for a bundle
header, one chunk plus slack for a chunk upload. A request whose Content-Length passes its
route's cap is answered 413 at once, without reading a byte of the body; a body without a
Content-Length (chunked transfer encoding) is counted while it streams and refused as soon as
the count passes the cap, so a handler never holds more than the cap in memory.

A client that disconnects while its body streams is an expected event (an agent killed or a
network cut mid-chunk): one warning line naming the site and the route, no traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wire.api import one_line
from wire.query import MAX_ANSWER_BYTES
from wire.version import MAX_HEADER_BYTES

log = structlog.get_logger("hexchange.hub")

KIB = 1024
MIB = 1024 * KIB
DEFAULT_JSON_CAP = 64 * KIB
HEADER_CAP = MAX_HEADER_BYTES
# The hub's largest accepted chunk (agents seal with 4 MiB chunks or less) plus slack; the
# exact size of each chunk is then checked against its bundle's signed header.
CHUNK_CAP = 4 * MIB + KIB

_HEADER_ROUTE = re.compile(r"^/node/v1/bundles/[^/]+$")
_CHUNK_ROUTE = re.compile(r"^/node/v1/bundles/[^/]+/chunks/[^/]+$")
_ANSWER_ROUTE = re.compile(r"^/node/v1/requests/[^/]+/answer$")  # a sealed answer (wire.query)
# STOW-RS of curated objects to a research collection (hub.api.dicomweb)
STOW_CAP = 512 * MIB
_STOW_ROUTE = re.compile(r"^/dicomweb/collections/[^/]+/studies(/[^/]+)?$")


class BodyTooLarge(HTTPException):
    """The request body passed its route's cap (raised from `receive` while streaming).

    An HTTPException so that FastAPI's body parsing lets it through unchanged (it turns any
    other exception into a 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the limit of {limit} bytes for this route")
        self.limit = limit


def body_cap(method: str, path: str, json_cap: int = DEFAULT_JSON_CAP) -> int:
    """The most bytes a request to `method path` may carry."""
    if method == "PUT" and _CHUNK_ROUTE.match(path):
        return CHUNK_CAP
    if method == "PUT" and _HEADER_ROUTE.match(path):
        return HEADER_CAP
    if method == "PUT" and _ANSWER_ROUTE.match(path):
        return MAX_ANSWER_BYTES
    if method == "POST" and _STOW_ROUTE.match(path):
        return STOW_CAP
    return json_cap


def _problem_bytes(status: int, title: str, detail: str, **extra: object) -> bytes:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return json.dumps(body).encode()


def too_large_detail(limit: int) -> str:
    return (
        f"the request body is over the limit of {limit} bytes for this route; "
        "send a smaller body (bundle chunks are at most 4 MiB)"
    )


async def _send_413(send: Send, limit: int) -> None:
    body = _problem_bytes(413, "Request body too large", too_large_detail(limit), limit=limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over their route's cap: by Content-Length at once, else while streaming."""

    def __init__(self, app: ASGIApp, cap_for: Callable[[str, str], int] = body_cap) -> None:
        self.app = app
        self.cap_for = cap_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.cap_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return
        seen = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length; an unparseable one counts as over every cap."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 20 else 1 << 62
    return None


def site_label(scope: Scope) -> str:
    """The calling site as 'org/site' from the verified client certificate, or '-'."""
    tls: dict[str, Any] = (scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    if not isinstance(name, str):
        return "-"
    parts = dict(p.split("=", 1) for p in name.split(",") if "=" in p)
    return one_line(f"{parts.get('O', '?')}/{parts.get('CN', '?')}", 130)


def install(app: FastAPI, *, json_cap: int = DEFAULT_JSON_CAP) -> None:
    """Add the body cap middleware and the handlers for an oversized body and a disconnect."""

    def cap_for(method: str, path: str) -> int:
        return body_cap(method, path, json_cap)

    app.add_middleware(BodyLimitMiddleware, cap_for=cap_for)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        log.info(
            "request refused",
            path=one_line(request.url.path, 200),
            status=413,
            reason="body too large",
            limit=exc.limit,
        )
        return Response(
            _problem_bytes(
                413, "Request body too large", too_large_detail(exc.limit), limit=exc.limit
            ),
            status_code=413,
            media_type="application/problem+json",
            headers={"connection": "close"},
        )

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, exc: ClientDisconnect) -> Response:
        log.warning(
            "client disconnected mid-request",
            site=site_label(request.scope),
            method=request.method,
            route=one_line(request.url.path, 200),
        )
        return Response(status_code=400)  # nobody reads it: the client is gone
