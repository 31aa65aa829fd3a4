"""Node API (mutual TLS): bundles in, deliveries out, keys, heartbeat."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from hub import deliveries, enrollment, ingest, policy
from hub.api.deps import MAX_CHUNK_BODY, MAX_HEADER_BODY, IngestDep, SessionDep, read_body
from hub.api.identity import SiteDep, client_certificate_pem
from hub.fleet import service as fleet
from hub.models import Site
from wire.api import (
    BundleStatus,
    DeliveryList,
    Heartbeat,
    OrgKeys,
    RenewRequest,
    RenewResponse,
    SiteKey,
)
from wire.collection_key import CollectionKey
from wire.policy import SitePolicy
from wire.receipt import Receipt

router = APIRouter(prefix="/node/v1", tags=["node"])

BundleId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
OrgId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
OCTETS = "application/octet-stream"


@router.get("/whoami")
def whoami(site: SiteDep) -> dict[str, str]:
    return {"org": site.org, "site": site.site, "serial": f"{site.serial:x}"}


@router.post("/renew")
def renew(
    body: RenewRequest, request: Request, site: SiteDep, session: SessionDep
) -> RenewResponse:
    """A new short-lived certificate for a new key, while the current one is still valid."""
    current_pem = client_certificate_pem(request.scope)
    state = request.app.state
    lifetime = timedelta(seconds=state.settings.site_cert_lifetime_s)
    return enrollment.renew(session, state.ca_directory, current_pem, body, lifetime=lifetime)


@router.get("/policy")
def site_policy(request: Request, site: SiteDep, session: SessionDep) -> SitePolicy:
    """The site's current policy, signed by the hub (agents verify before use)."""
    current = policy.current(session, site.org, site.site)
    return current.signed_with(request.app.state.services.signing_key)


@router.get("/orgs/{org}/keys")
def org_keys(org: OrgId, request: Request, site: SiteDep, session: SessionDep) -> OrgKeys:
    is_revoked = request.app.state.ca_directory.is_revoked
    rows = [
        row
        for row in session.exec(select(Site).where(Site.org == org)).all()
        if row.certificate_serial and not is_revoked(int(row.certificate_serial, 16))
    ]
    keys = [
        SiteKey(
            org=row.org,
            site=row.site,
            key_id=row.encryption_key_id,
            public_key=row.encryption_public_key,
            signature=row.encryption_key_signature,
            certificate_pem=row.certificate_pem,
        )
        for row in rows
        if row.encryption_public_key
        and row.certificate_pem
        and row.encryption_key_id
        and row.encryption_key_signature
    ]
    return OrgKeys(org=org, keys=keys)


@router.get("/collections/{name}/key")
def collection_key(name: OrgId, site: SiteDep, session: SessionDep) -> CollectionKey:
    """A research collection's public key, signed by the hub (issue 11)."""
    from hub.collections.service import published_key

    return published_key(session, name)


def _status(ctx: ingest.IngestContext, site: SiteDep, bundle_id: str) -> BundleStatus:
    bundle, have = ingest.status(ctx, site, bundle_id)
    receipt = ingest.make_receipt(ctx, bundle) if bundle.state == "complete" else None
    return BundleStatus(
        bundle_id=bundle_id,
        state="complete" if bundle.state == "complete" else "receiving",
        chunk_count=bundle.chunk_count,
        received_chunks=have,
        receipt=receipt,
    )


@router.put("/bundles/{bundle_id}")
async def put_header(
    bundle_id: BundleId, request: Request, site: SiteDep, ctx: IngestDep
) -> BundleStatus:
    body = await read_body(request, MAX_HEADER_BODY)
    await run_in_threadpool(ingest.put_header, ctx, site, bundle_id, body)
    return await run_in_threadpool(_status, ctx, site, bundle_id)


@router.get("/bundles/{bundle_id}")
def bundle_status(bundle_id: BundleId, site: SiteDep, ctx: IngestDep) -> BundleStatus:
    return _status(ctx, site, bundle_id)


@router.put("/bundles/{bundle_id}/chunks/{index}", status_code=204)
async def put_chunk(
    bundle_id: BundleId, index: int, request: Request, site: SiteDep, ctx: IngestDep
) -> Response:
    # Capped at this bundle's chunk size (+ tag) while streaming, not only at the route's cap.
    limit = await run_in_threadpool(ingest.chunk_body_limit, ctx, bundle_id, MAX_CHUNK_BODY)
    body = await read_body(request, limit)
    await run_in_threadpool(ingest.put_chunk, ctx, site, bundle_id, index, body)
    return Response(status_code=204)


@router.post("/bundles/{bundle_id}/complete")
def complete(bundle_id: BundleId, site: SiteDep, ctx: IngestDep) -> Receipt:
    return ingest.complete(ctx, site, bundle_id)


@router.get("/deliveries")
def list_deliveries(request: Request, site: SiteDep, session: SessionDep) -> DeliveryList:
    limit = request.app.state.settings.delivery_page_size
    return DeliveryList(deliveries=deliveries.pending_for(session, site, limit))


@router.get("/deliveries/{bundle_id}/header")
def delivery_header(bundle_id: BundleId, site: SiteDep, ctx: IngestDep) -> Response:
    deliveries.require_recipient(ctx.session, site, bundle_id)
    return Response(content=ctx.blobs.get_header(bundle_id), media_type=OCTETS)


@router.get("/deliveries/{bundle_id}/chunks/{index}")
def delivery_chunk(bundle_id: BundleId, index: int, site: SiteDep, ctx: IngestDep) -> Response:
    bundle = deliveries.require_recipient(ctx.session, site, bundle_id)
    if not 0 <= index < bundle.chunk_count:
        from hub.errors import NotFound

        raise NotFound(f"chunk {index} is outside 0..{bundle.chunk_count - 1}")
    return Response(content=ctx.blobs.get_chunk(bundle_id, index), media_type=OCTETS)


@router.post("/deliveries/{bundle_id}/ack", status_code=204)
def ack_delivery(bundle_id: BundleId, site: SiteDep, session: SessionDep) -> Response:
    deliveries.acknowledge(session, site, bundle_id)
    return Response(status_code=204)


@router.post("/heartbeat", status_code=204)
def heartbeat(body: Heartbeat, site: SiteDep, session: SessionDep) -> Response:
    fleet.record_heartbeat(session, site.org, site.site, body)
    return Response(status_code=204)
