"""DICOMweb (PS3.18) per research collection: QIDO-RS, WADO-RS, STOW-RS.

    /dicomweb/collections/{collection}/studies[/{study}[/series[/{series}[/instances...]]]]

Readers need `collection:read` and a grant for the collection (admins see their own
organization's); every other caller gets 404 for every path of it, checked on each request,
so a revoked grant ends access at the next request. Each request is audited by the
`AuditTrail` middleware (who, route, path with the de-identified UIDs, status).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlmodel import Session, col, select

from hub.api.access import CollectionManageDep, CollectionReadDep
from hub.api.deps import SessionDep
from hub.collections import dicom_json, media, query, service
from hub.collections.levels import BULK_MARK
from hub.collections.models import Collection, CollectionInstance
from hub.collections.runtime import instance_files
from hub.collections.store import Source, add_instance
from hub.errors import NotFound
from hub.principals import Principal

router = APIRouter(prefix="/dicomweb/collections/{collection}", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
_FRAMES = re.compile(r"^\d+(,\d+)*$")


class DicomJSONResponse(Response):
    """An answer in DICOM JSON, encoded by `hub.collections.dicom_json` (orjson)."""

    media_type = DICOM_JSON

    def render(self, content: Any) -> bytes:
        return dicom_json.dumps(content)


def _base(request: Request, collection: str) -> str:
    """URLs in answers use the hub's advertised public address (as agents and people reach
    it, behind a proxy too), not the Host header a client sent."""
    public = request.app.state.settings.public_url.rstrip("/")
    return f"{public}/dicomweb/collections/{collection}"


def _urls(request: Request, name: str) -> Any:
    base = _base(request, name)

    def url(study: str, series: str | None, instance: str | None) -> str:
        out = f"{base}/studies/{study}"
        if series:
            out += f"/series/{series}"
        if instance:
            out += f"/instances/{instance}"
        return out

    return url


def _qido(
    request: Request,
    session: Session,
    principal: Principal,
    name: str,
    level: query.Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    keys = sorted({key for key, _ in request.query_params.multi_items()})
    request.state.audit_detail = f"QIDO-RS {level} keys: {','.join(keys)[:400]}"
    row = service.readable(session, principal, name)
    settings = request.app.state.settings
    parsed = query.parse(
        level, list(request.query_params.multi_items()), max_limit=settings.qido_max_limit
    )
    page = query.run(
        session, row, parsed, study_uid=study, series_uid=series, urls=_urls(request, name)
    )
    if study is not None and level != "study" and not page.results and parsed.offset == 0:
        _require_study(session, row, study)
    headers: dict[str, str] = {}
    warnings = [f'299 hexchange "{w}"' for w in parsed.warnings]
    if page.more:
        warnings.append(
            '299 hexchange "There are additional results that can be requested: '
            f'offset={page.next_offset}"'
        )
    if warnings:
        headers["Warning"] = ", ".join(warnings)
    if not page.results:
        return Response(status_code=204, headers=headers)
    return DicomJSONResponse(page.results, headers=headers)


def _require_study(session: Session, row: Collection, study: str) -> None:
    found = session.exec(
        select(CollectionInstance.id).where(
            CollectionInstance.collection_id == row.id, CollectionInstance.study_uid == study
        )
    ).first()
    if found is None:
        raise NotFound("no such study in this collection")


# --- QIDO-RS ----------------------------------------------------------------------------
@router.get("/studies")
def search_studies(
    collection: str, request: Request, principal: CollectionReadDep, session: SessionDep
) -> Response:
    return _qido(request, session, principal, collection, "study")


@router.get("/series")
def search_series(
    collection: str, request: Request, principal: CollectionReadDep, session: SessionDep
) -> Response:
    return _qido(request, session, principal, collection, "series")


@router.get("/instances")
def search_instances(
    collection: str, request: Request, principal: CollectionReadDep, session: SessionDep
) -> Response:
    return _qido(request, session, principal, collection, "instance")


@router.get("/studies/{study}/series")
def search_study_series(
    collection: str, study: str, request: Request, principal: CollectionReadDep,
    session: SessionDep,
) -> Response:  # fmt: skip
    return _qido(request, session, principal, collection, "series", study)


@router.get("/studies/{study}/instances")
def search_study_instances(
    collection: str, study: str, request: Request, principal: CollectionReadDep,
    session: SessionDep,
) -> Response:  # fmt: skip
    return _qido(request, session, principal, collection, "instance", study)


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(
    collection: str, study: str, series: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    return _qido(request, session, principal, collection, "instance", study, series)


# --- WADO-RS ----------------------------------------------------------------------------
def _instances(
    session: Session,
    principal: Principal,
    name: str,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> tuple[Collection, list[CollectionInstance]]:
    row = service.readable(session, principal, name)
    statement = select(CollectionInstance).where(
        CollectionInstance.collection_id == row.id, CollectionInstance.study_uid == study
    )
    if series is not None:
        statement = statement.where(CollectionInstance.series_uid == series)
    if instance is not None:
        statement = statement.where(CollectionInstance.sop_uid == instance)
    rows = list(session.exec(statement.order_by(col(CollectionInstance.id))).all())
    if not rows:
        what = "instance" if instance else "series" if series else "study"
        raise NotFound(f"no such {what} in this collection")
    return row, rows


def _retrieve(request: Request, rows: list[CollectionInstance]) -> Response:
    accept = request.headers.get("accept")
    if not media.accepts(accept, "application/dicom"):
        raise media.NotAcceptable(
            'this resource is sent as multipart/related; type="application/dicom"'
        )
    wanted = media.requested_syntaxes(accept)
    stored = {r.transfer_syntax for r in rows}
    if wanted and "*" not in wanted and not stored <= wanted:
        raise media.NotAcceptable(
            "instances are sent in the transfer syntax they are stored in ("
            + ", ".join(sorted(stored))
            + "); ask with transfer-syntax=* or one of these"
        )
    files = instance_files(request.app.state.services)
    boundary = secrets.token_hex(16)
    paths = [files.path(r.digest) for r in rows]
    body = media.file_parts(paths, "application/dicom", boundary)
    syntax = next(iter(stored)) if len(stored) == 1 else None
    kind = media.boundary_header("application/dicom", boundary, syntax)
    if len(paths) == 1 and paths[0].stat().st_size <= media.STREAM_CHUNK:
        # one instance of one read: one write, no streaming hops through the thread pool
        return Response(b"".join(body), media_type=kind)
    return StreamingResponse(body, media_type=kind)


@router.get("/studies/{study}")
def retrieve_study(
    collection: str, study: str, request: Request, principal: CollectionReadDep,
    session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study)
    return _retrieve(request, rows)


@router.get("/studies/{study}/series/{series}")
def retrieve_series(
    collection: str, study: str, series: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series)
    return _retrieve(request, rows)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
def retrieve_instance(
    collection: str, study: str, series: str, instance: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    return _retrieve(request, rows)


def _with_urls(attributes: str, url: str) -> dict[str, Any]:
    data: dict[str, Any] = dicom_json.loads(attributes)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            uri = node.get("BulkDataURI")
            if isinstance(uri, str) and uri.startswith(BULK_MARK):
                node["BulkDataURI"] = f"{url}/bulk/{uri[len(BULK_MARK) :]}"
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(data)
    return data


def _metadata(request: Request, name: str, rows: list[CollectionInstance]) -> Response:
    urls = _urls(request, name)
    body = [_with_urls(r.attributes, urls(r.study_uid, r.series_uid, r.sop_uid)) for r in rows]
    return DicomJSONResponse(body)


@router.get("/studies/{study}/metadata")
def study_metadata(
    collection: str, study: str, request: Request, principal: CollectionReadDep,
    session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study)
    return _metadata(request, collection, rows)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(
    collection: str, study: str, series: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series)
    return _metadata(request, collection, rows)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
def instance_metadata(
    collection: str, study: str, series: str, instance: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    return _metadata(request, collection, rows)


def _one(request: Request, row: CollectionInstance) -> Any:
    return media.load(instance_files(request.app.state.services).get(row.digest))


def _multipart(request: Request, kind: str, datas: list[bytes]) -> Response:
    if not media.accepts(request.headers.get("accept"), kind):
        raise media.NotAcceptable(f'this resource is sent as multipart/related; type="{kind}"')
    boundary = secrets.token_hex(16)
    body = b"".join(media.encode_parts((media.Part(kind, d) for d in datas), boundary))
    return Response(body, media_type=media.boundary_header(kind, boundary))


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
def retrieve_frames(
    collection: str, study: str, series: str, instance: str, frames: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    if not _FRAMES.match(frames):
        raise query.InvalidRequest("frames are a comma-separated list of numbers from 1")
    ds = _one(request, rows[0])
    numbers = [int(n) for n in frames.split(",")]
    return _multipart(request, media.frame_media(ds), media.frames(ds, numbers))


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}")
def retrieve_bulk(
    collection: str, study: str, series: str, instance: str, tag: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    ds = _one(request, rows[0])
    return _multipart(request, "application/octet-stream", [media.bulk(ds, tag)])


def _image_type(request: Request) -> str:
    accept = (request.headers.get("accept") or "").lower()
    if "image/png" in accept and "image/jpeg" not in accept.split("image/png")[0]:
        return "image/png"
    if not accept or "image/jpeg" in accept or "image/*" in accept or "*/*" in accept:
        return "image/jpeg"
    raise media.NotAcceptable("rendered images are sent as image/jpeg or image/png")


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
def rendered_instance(
    collection: str, study: str, series: str, instance: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    kind = _image_type(request)
    viewport = request.query_params.get("viewport", "")
    size = max((int(v) for v in viewport.split(",") if v.isdigit()), default=0) or None
    return Response(media.render(_one(request, rows[0]), kind, size=size), media_type=kind)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail")
def thumbnail_instance(
    collection: str, study: str, series: str, instance: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series, instance)
    kind = _image_type(request)
    return Response(media.render(_one(request, rows[0]), kind, size=128), media_type=kind)


@router.get("/studies/{study}/series/{series}/thumbnail")
def thumbnail_series(
    collection: str, study: str, series: str, request: Request,
    principal: CollectionReadDep, session: SessionDep,
) -> Response:  # fmt: skip
    _, rows = _instances(session, principal, collection, study, series)
    kind = _image_type(request)
    middle = rows[len(rows) // 2]
    return Response(media.render(_one(request, middle), kind, size=128), media_type=kind)


# --- STOW-RS ----------------------------------------------------------------------------
_FAILED_PROCESSING = 0x0110
_NOT_UNDERSTOOD = 0xC000
_STUDY_MISMATCH = 0xA900


async def _stow(
    request: Request, session: Session, principal: Principal, name: str, study: str | None
) -> Response:
    row = service.manageable(session, principal, name)
    parts = media.decode_parts(request.headers.get("content-type", ""), await request.body())
    files = instance_files(request.app.state.services)
    urls = _urls(request, name)
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for part in parts:
        if part.content_type not in ("application/dicom", "application/octet-stream"):
            failed.append({"00081197": {"vr": "US", "Value": [_NOT_UNDERSTOOD]}})
            continue
        if study is not None:
            try:
                inside = str(media.load(part.data).get("StudyInstanceUID", ""))
            except Exception:
                inside = study
            if inside != study:
                failed.append({"00081197": {"vr": "US", "Value": [_STUDY_MISMATCH]}})
                continue
        added = add_instance(session, files, row, part.data, Source(actor=principal.actor))
        item: dict[str, Any] = {}
        if added.sop_uid:
            item["00081155"] = {"vr": "UI", "Value": [added.sop_uid]}
        if added.status == "quarantined":
            item["00081197"] = {"vr": "US", "Value": [_FAILED_PROCESSING]}
            failed.append(item)
        else:
            item["00081190"] = {
                "vr": "UR", "Value": [urls(added.study_uid, added.series_uid, added.sop_uid)]
            }  # fmt: skip
            stored.append(item)
    answer: dict[str, Any] = {}
    if study is not None:
        answer["00081190"] = {"vr": "UR", "Value": [urls(study, None, None)]}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        answer["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    return DicomJSONResponse(answer, status_code=status)


@router.post("/studies")
async def store_instances(
    collection: str, request: Request, principal: CollectionManageDep, session: SessionDep
) -> Response:
    return await _stow(request, session, principal, collection, None)


@router.post("/studies/{study}")
async def store_study_instances(
    collection: str, study: str, request: Request, principal: CollectionManageDep,
    session: SessionDep,
) -> Response:  # fmt: skip
    return await _stow(request, session, principal, collection, study)
