"""Admin JSON API of research collections: create, grants, versions and their download, and
the quarantine of an organization's sites (what the hub refused from them)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import col, select

from hub.api.access import CollectionManageDep, CollectionReadDep, FleetReadDep
from hub.api.deps import SessionDep
from hub.collections import queue as ingest_queue
from hub.collections import service, versions
from hub.collections.models import Collection, CollectionQuarantine
from hub.collections.runtime import instance_files, key_provider
from hub.models import aware

router = APIRouter(prefix="/api/v1", tags=["collections"])


class NewCollection(BaseModel):
    name: str = Field(max_length=63)
    org: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    profile: list[str] = Field(default_factory=list, max_length=20)


class GrantBody(BaseModel):
    username: str = Field(max_length=64)


class PublishBody(BaseModel):
    note: str = Field(default="", max_length=2000)


@router.get("/collections")
def list_collections(principal: CollectionReadDep, session: SessionDep) -> list[dict[str, Any]]:
    return [dataclasses.asdict(v) for v in service.list_readable(session, principal)]


@router.post("/collections", status_code=201)
def create_collection(
    body: NewCollection, request: Request, principal: CollectionManageDep, session: SessionDep
) -> dict[str, Any]:
    services = request.app.state.services
    made = service.create(
        session, principal, key_provider(services.settings), services.signing_key,
        name=body.name, org=body.org, description=body.description, profile=body.profile,
    )  # fmt: skip
    return dataclasses.asdict(made)


@router.get("/collections/{collection}/grants")
def list_grants(collection: str, principal: CollectionManageDep, session: SessionDep) -> list[str]:
    return service.grantees(session, principal, collection)


@router.post("/collections/{collection}/grants", status_code=204)
def add_grant(
    collection: str, body: GrantBody, principal: CollectionManageDep, session: SessionDep
) -> None:
    service.grant(session, principal, collection, body.username)


@router.delete("/collections/{collection}/grants/{username}", status_code=204)
def remove_grant(
    collection: str, username: str, principal: CollectionManageDep, session: SessionDep
) -> None:
    service.revoke(session, principal, collection, username)


@router.get("/collections/{collection}/versions")
def list_versions(
    collection: str, principal: CollectionReadDep, session: SessionDep
) -> list[dict[str, Any]]:
    return [dataclasses.asdict(v) for v in versions.list_versions(session, principal, collection)]


@router.post("/collections/{collection}/versions", status_code=201)
def publish_version(
    collection: str, body: PublishBody, principal: CollectionManageDep, session: SessionDep
) -> dict[str, Any]:
    return dataclasses.asdict(versions.publish(session, principal, collection, body.note))


@router.get("/collections/{collection}/versions/{version}/download")
def download_version(
    collection: str, version: int, request: Request, principal: CollectionReadDep,
    session: SessionDep,
) -> StreamingResponse:  # fmt: skip
    view, rows = versions.members(session, principal, collection, version)
    archive = versions.write_zip(view, rows, instance_files(request.app.state.services))

    def body() -> Iterator[bytes]:
        with archive:
            while chunk := archive.read(1024 * 1024):
                yield chunk

    filename = f"{collection}-v{version}.zip"
    return StreamingResponse(
        body(), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )  # fmt: skip


@router.get("/orgs/{org}/collection-quarantine")
def org_quarantine(org: str, principal: FleetReadDep, session: SessionDep) -> list[dict[str, Any]]:
    """What the hub refused from this organization's sites for research collections."""
    rows = session.exec(
        select(CollectionQuarantine, Collection.name)
        .join(Collection, col(Collection.id) == col(CollectionQuarantine.collection_id))
        .where(CollectionQuarantine.sender_org == org)
        .order_by(col(CollectionQuarantine.id).desc())
        .limit(500)
    ).all()
    return [
        {"collection": name, "site": q.sender_site, "bundle_id": q.bundle_id,
         "digest": q.digest, "findings": json.loads(q.findings), "at": aware(q.at).isoformat()}
        for q, name in rows
    ]  # fmt: skip


@router.get("/orgs/{org}/collection-ingest")
def org_ingest_queue(
    org: str, principal: FleetReadDep, session: SessionDep
) -> list[dict[str, object]]:
    """This organization's bundles to research collections the hub has not ingested yet:
    `pending` (queued for the background worker) or `failed` (why, and when it tries again)."""
    return [ingest_queue.view(job) for job in ingest_queue.waiting_for_org(session, org)]
