"""HTTP adapters for federated requests (`hub.requests`).

Node API (mutual TLS, the calling site is the certificate's):
- PUT  /node/v1/requests/{id}?to=ORG&to=ORG&kind=find|retrieve&hold=false  body: sealed query
- GET  /node/v1/requests/inbox?wait=S        long poll: requests for this site's organization
- PUT  /node/v1/requests/{id}/answer?outcome=...&count=N   body: sealed answer
- GET  /node/v1/requests/{id}?wait=S&seen=FINGERPRINT   long poll: status and sealed answers
User API: GET /api/v1/orgs/{org}/requests: the request log (no patient identity).

Long polls return as soon as there is something (woken in-process at once; other hub
processes sharing the database are noticed within `RECHECK_S`), or empty after `wait` seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from hub.api.access import RequestReadDep
from hub.api.deps import SessionDep, read_body
from hub.api.identity import SiteDep
from hub.requests import service
from wire.query import MAX_ANSWER_BYTES, MAX_QUERY_BYTES
from wire.query_api import (
    LISTEN_MARK_S,
    MAX_WAIT_S,
    Answerers,
    Inbox,
    RequestKind,
    RequestLogRow,
    RequestStatus,
)

node_router = APIRouter(prefix="/node/v1/requests", tags=["node", "requests"])
user_router = APIRouter(prefix="/api/v1/orgs/{org}/requests", tags=["requests"])

RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
OrgName = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_S)]
RECHECK_S = 1.0


class Waker:
    """Wakes the long polls of this process when a request or an answer arrives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> None:
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


_WAKER_LOCK = threading.Lock()


def waker(request: Request) -> Waker:
    """One waker per hub process, shared by its node and public apps (via the services)."""
    extras = request.app.state.services.extras
    with _WAKER_LOCK:
        found = extras.get("request_waker")
        if not isinstance(found, Waker):
            found = extras["request_waker"] = Waker()
        return found


def _session(request: Request) -> Session:
    return Session(request.app.state.engine)


@node_router.get("/inbox")
async def inbox(request: Request, site: SiteDep, wait: Wait = 0.0) -> Inbox:
    """Requests for this site's organization, held open up to `wait` seconds until one comes."""
    deadline = asyncio.get_running_loop().time() + wait
    wake = waker(request)

    marked = [-LISTEN_MARK_S]

    def take() -> Inbox:
        with _session(request) as session:
            now = asyncio_now()
            if now - marked[0] >= LISTEN_MARK_S:  # "still listening", at most every few s
                service.touch_listener(session, site.org, site.site)
                marked[0] = now
            return service.take_inbox(session, site.org, site.site)

    loop = asyncio.get_running_loop()

    def asyncio_now() -> float:
        return loop.time()

    while True:
        found = await run_in_threadpool(take)
        left = deadline - asyncio.get_running_loop().time()
        if found.requests or left <= 0:
            return found
        await wake.wait(min(left, RECHECK_S))


@node_router.get("/answerers")
def answerers(site: SiteDep, session: SessionDep) -> Answerers:
    """Organizations whose sharing policy sends studies (identified or de-identified) to the
    caller's."""
    return Answerers(orgs=service.answerers(session, site.org))


@node_router.put("/{request_id}")
async def submit(
    request_id: RequestId,
    request: Request,
    site: SiteDep,
    to: Annotated[list[str], Query(max_length=64)],
    kind: RequestKind = "find",
    hold: bool = False,
) -> RequestStatus:
    body = await read_body(request, MAX_QUERY_BYTES)

    def run() -> RequestStatus:
        with _session(request) as session:
            return service.submit(
                session, site.org, site.site, request_id, kind, to, body, hold=hold
            )

    status = await run_in_threadpool(run)
    waker(request).notify()
    return status


@node_router.put("/{request_id}/answer")
async def put_answer(
    request_id: RequestId,
    request: Request,
    site: SiteDep,
    outcome: Annotated[str, Query(max_length=32)],
    count: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    done: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> Response:
    body = await read_body(request, MAX_ANSWER_BYTES)

    def run() -> None:
        with _session(request) as session:
            service.answer(
                session, site.org, site.site, request_id, outcome, count, body, instances_done=done
            )

    await run_in_threadpool(run)
    waker(request).notify()
    return Response(status_code=204)


def _fingerprint(version: tuple[int, ...]) -> str:
    return hashlib.sha256(repr(version).encode()).hexdigest()[:16]


@node_router.get("/{request_id}")
async def request_status(
    request_id: RequestId,
    request: Request,
    response: Response,
    site: SiteDep,
    wait: Wait = 0.0,
    seen: Annotated[str, Query(max_length=32)] = "",
) -> RequestStatus:
    """The request's status and sealed answers; with `wait`, held until it differs from the
    state `seen` (the X-Hexchange-Progress header of the previous answer) or settles."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    wake = waker(request)

    def check(final: bool) -> tuple[str, RequestStatus | None]:
        with _session(request) as session:
            mark = _fingerprint(service.answer_version(session, site.org, request_id))
            if mark == seen and not final:
                return mark, None
            return mark, service.status(session, site.org, request_id)

    while True:
        left = deadline - loop.time()
        mark, status = await run_in_threadpool(check, left <= 0)
        if status is not None:
            response.headers["X-Hexchange-Progress"] = mark
            return status
        await wake.wait(min(max(left, 0.0), RECHECK_S))


@user_router.get("")
def request_log(
    org: str, session: SessionDep, principal: RequestReadDep, limit: int = 100
) -> list[RequestLogRow]:
    """The organization's federated requests, made or received: who, when, state, counts."""
    return service.request_log(session, principal, org, limit=limit)
