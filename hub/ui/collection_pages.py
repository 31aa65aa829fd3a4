"""Web UI: research collections (list, studies with thumbnails, versions and their download,
grants and publishing for those who manage the collection)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from hub.api.access import UiAllow
from hub.api.deps import SessionDep
from hub.collections import browse, service, versions
from hub.permissions import Permission
from hub.principals import Principal
from hub.ui.web import UiRoute, render

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

CollectionReadUi = Annotated[Principal, Depends(UiAllow(Permission.COLLECTION_READ))]
CollectionManageUi = Annotated[Principal, Depends(UiAllow(Permission.COLLECTION_MANAGE))]
CollectionName = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Uid = Annotated[str, Path(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")]
Username = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._@-]{1,64}$")]


@router.get("/collections")
def collections_page(request: Request, actor: CollectionReadUi, session: SessionDep) -> Response:
    listed = service.list_readable(session, actor)
    return render(request, "collections.html", collections=listed)


@router.get("/collections/{name}")
def collection_page(
    request: Request, name: CollectionName, actor: CollectionReadUi, session: SessionDep,
    modality: Annotated[str, Query(max_length=16, pattern=r"^[A-Za-z]{0,16}$")] = "",
    q: Annotated[str, Query(max_length=64)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Response:  # fmt: skip
    row = service.readable(session, actor, name)
    page = browse.studies(session, actor, name, modality=modality, text=q, offset=offset)
    manage = service.can_manage(actor, row)
    return render(
        request, "collection.html", collection=service.view(row), page=page,
        versions=versions.list_versions(session, actor, name), modality=modality, q=q,
        manage=manage, grantees=service.grantees(session, actor, name) if manage else [],
        page_size=browse.PAGE,
    )  # fmt: skip


@router.get("/collections/{name}/studies/{study}")
def study_page(
    request: Request, name: CollectionName, study: Uid, actor: CollectionReadUi,
    session: SessionDep,
) -> Response:  # fmt: skip
    series = browse.series_of(session, actor, name, study)
    if not series:
        service.readable(session, actor, name)  # 404 for a collection one may not read
        return render(request, "error.html", 404, title="Not found",
                      detail="no such study in this collection")  # fmt: skip
    return render(
        request, "collection_study.html", collection_name=name, study=study, series=series
    )


@router.post("/collections/{name}/versions")
def publish(
    name: CollectionName, actor: CollectionManageUi, session: SessionDep,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:  # fmt: skip
    versions.publish(session, actor, name, note)
    return RedirectResponse(f"/ui/collections/{name}#versions", status_code=303)


@router.post("/collections/{name}/grants")
def grant(
    name: CollectionName, actor: CollectionManageUi, session: SessionDep,
    username: Annotated[str, Form(max_length=64, pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
) -> Response:  # fmt: skip
    service.grant(session, actor, name, username)
    return RedirectResponse(f"/ui/collections/{name}#grants", status_code=303)


@router.post("/collections/{name}/grants/{username}/revoke")
def revoke(
    name: CollectionName, username: Username, actor: CollectionManageUi, session: SessionDep
) -> Response:
    service.revoke(session, actor, name, username)
    return RedirectResponse(f"/ui/collections/{name}#grants", status_code=303)
