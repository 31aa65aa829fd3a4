"""The hub's web UI: server-rendered pages over the same domain services and permission checks
as the user API, mounted on the public app under /ui."""

from __future__ import annotations

from fastapi import APIRouter

from hub.ui import account, collection_pages, fleet_pages, policy_pages, request_pages

router = APIRouter()
for _part in (
    account.router, fleet_pages.router, policy_pages.router, request_pages.router,
    collection_pages.router,
):  # fmt: skip
    router.include_router(_part)
