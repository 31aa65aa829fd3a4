"""Annotated dependencies shared by the routers."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from hub.api.limits import CHUNK_CAP, HEADER_CAP, BodyTooLarge
from hub.collections.opening import collection_bundles
from hub.ingest import HeaderCache, IngestContext
from hub.quotas import QuotaLimits
from hub.services import Services


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session per request. Made on the event loop (no I/O until first used);
    closed in the thread pool only if it still holds a connection (closing rolls it back),
    so a request costs one thread-pool hop less than a sync generator dependency."""
    session = Session(request.app.state.engine)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


_HEADER_CACHE_LOCK = threading.Lock()


def header_cache(request: Request) -> HeaderCache:
    """The app's cache of parsed bundle headers (made on first use)."""
    state = request.app.state
    with _HEADER_CACHE_LOCK:
        cache: HeaderCache | None = getattr(state, "header_cache", None)
        if cache is None:
            cache = state.header_cache = HeaderCache()
        return cache


def get_ingest(request: Request, session: SessionDep) -> IngestContext:
    return IngestContext(
        session=session,
        blobs=request.app.state.blobs,
        receipt_key=request.app.state.receipt_key,
        is_revoked=request.app.state.ca_directory.is_revoked,
        headers=header_cache(request),
        quotas=QuotaLimits.from_settings(request.app.state.settings),
        after_complete=collection_bundles(request.app.state.services),
    )


IngestDep = Annotated[IngestContext, Depends(get_ingest)]

MAX_HEADER_BODY = HEADER_CAP
MAX_CHUNK_BODY = CHUNK_CAP


async def read_body(request: Request, limit: int) -> bytes:
    """Read a request body, refusing it (413) as soon as it passes `limit` bytes.

    `hub.api.limits.BodyLimitMiddleware` has already capped the route; this is the per-call cap."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(piece)
    return b"".join(parts)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


RowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a row id")]
OrgPath = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
SitePath = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
