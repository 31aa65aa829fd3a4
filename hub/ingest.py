"""Ingest of sealed bundles: header, chunks (resumable, idempotent), completion and receipt.

The hub checks the sender's signature and each chunk's digest against the signed header, but
it holds no key that opens an identified bundle: it stores ciphertext and indexes the manifest.

Chunks: each chunk file is fsynced before its index row is committed; the bundle folder is
fsynced once, at completion, before the receipt exists (the receipt is the promise the agent
relies on to free its copy). A chunk whose name a power cut lost is not reported as received
and is asked for again. The parsed header is cached per bundle and header digest.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from certs.identity import SiteIdentity
from hub import audit, policy, quotas
from hub.collections import queue as collection_queue
from hub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hub.models import (
    Bundle,
    Delivery,
    Organization,
    ReceivedChunk,
    Site,
    SiteCertificate,
    utcnow,
)
from hub.quotas import QuotaLimits
from hub.storage import BlobStore
from wire.collection_key import collection_named
from wire.envelope import TAG_BYTES, SealedHeader, check_chunk, parse_header, verify_header
from wire.errors import WireError
from wire.receipt import Receipt, sign_receipt


class HeaderCache:
    """Parsed headers of bundles being uploaded, most recently used kept (thread-safe).

    Keyed by bundle id and header digest: a bundle's header never changes once accepted (a
    different one under the same id is a conflict), and the digest in the key makes a stale
    entry unusable anyway.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], SealedHeader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, bundle_id: str, digest: str) -> SealedHeader | None:
        with self._lock:
            header = self._entries.get((bundle_id, digest))
            if header is not None:
                self._entries.move_to_end((bundle_id, digest))
            return header

    def put(self, bundle_id: str, digest: str, header: SealedHeader) -> None:
        with self._lock:
            self._entries[(bundle_id, digest)] = header
            self._entries.move_to_end((bundle_id, digest))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class IngestContext:
    session: Session
    blobs: BlobStore
    receipt_key: ec.EllipticCurvePrivateKey
    is_revoked: Callable[[int], bool] = lambda _serial: False
    headers: HeaderCache | None = None
    quotas: QuotaLimits | None = None
    # run after every completion call (research collections: wakes the ingest worker)
    after_complete: Callable[[Session, str], None] | None = None


def _site_row(session: Session, identity: SiteIdentity) -> Site:
    row = session.exec(
        select(Site).where(Site.org == identity.org, Site.site == identity.site)
    ).first()
    if row is None or row.certificate_pem is None:
        raise Forbidden(f"site {identity.org}/{identity.site} is not enrolled at this hub")
    return row


def _bundle(session: Session, bundle_id: str) -> Bundle:
    row = session.get(Bundle, bundle_id)
    if row is None:
        raise NotFound(f"bundle {bundle_id} is unknown; upload its header first")
    return row


def _load_header(ctx: IngestContext, bundle: Bundle) -> SealedHeader:
    """The bundle's stored header, parsed (once per bundle while it stays in the cache)."""
    if ctx.headers is not None:
        cached = ctx.headers.get(bundle.bundle_id, bundle.header_digest)
        if cached is not None:
            return cached
    header = parse_header(ctx.blobs.get_header(bundle.bundle_id))
    if header.digest() != bundle.header_digest:
        raise Conflict(f"the stored header of bundle {bundle.bundle_id} is not the indexed one")
    if ctx.headers is not None:
        ctx.headers.put(bundle.bundle_id, bundle.header_digest, header)
    return header


def put_header(ctx: IngestContext, identity: SiteIdentity, bundle_id: str, data: bytes) -> Bundle:
    """Accept a signed header. Idempotent: the same header again is a no-op."""
    try:
        header = parse_header(data)
    except WireError as exc:
        raise InvalidRequest(f"bundle header rejected: {exc}") from exc
    manifest = header.manifest
    if manifest.bundle_id != bundle_id:
        raise InvalidRequest("the bundle id in the URL does not match the manifest")
    if (manifest.sender_org, manifest.sender_site) != (identity.org, identity.site):
        raise Forbidden(
            f"site {identity.org}/{identity.site} may only upload bundles it sent itself; "
            f"this manifest names {manifest.sender_org}/{manifest.sender_site}"
        )
    _site_row(ctx.session, identity)
    signer = ctx.session.get(SiteCertificate, header.signer_key_id)
    if signer is None or (signer.org, signer.site) != (identity.org, identity.site):
        raise InvalidRequest(
            "the header names a signing certificate that was not issued to this site"
        )
    if ctx.is_revoked(int(signer.serial, 16)):
        raise Forbidden("the header was signed with a revoked certificate; reseal the study")
    digest = header.digest()
    existing = ctx.session.get(Bundle, bundle_id)
    if existing is not None and existing.header_digest == digest:
        # The same signed bytes again (a resumed upload): its time was checked when first seen.
        return existing
    cert = x509.load_pem_x509_certificate(signer.certificate_pem.encode())
    _check_valid_now(cert)
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidRequest("the site certificate holds no EC key")
    try:
        verify_header(header, public_key)
    except WireError as exc:
        raise InvalidRequest(f"bundle header signature does not verify: {exc}") from exc
    for org in manifest.recipients:
        collection = collection_named(org)
        if collection is not None:
            _check_collection_recipient(ctx.session, collection, manifest.mode)
        elif ctx.session.get(Organization, org) is None:
            raise InvalidRequest(f"recipient organization {org!r} is not part of this network")
    site_policy = policy.current(ctx.session, identity.org, identity.site)
    for org in manifest.recipients:
        if not site_policy.allows(org, manifest.mode, set(manifest.modalities), manifest.facts):
            raise Forbidden(
                f"the sharing policy of {identity.org}/{identity.site} (version "
                f"{site_policy.version}) does not allow {manifest.mode} studies of these "
                f"modalities to {org}; "
                "an org admin must add a rule, then the agent reseals"
            )
    if existing is not None:
        raise Conflict(
            f"bundle {bundle_id} was already started with a different header; "
            "a bundle id is used once — seal the study again under a new id"
        )
    if ctx.quotas is not None:
        quotas.check_new_bundle(ctx.session, identity, ctx.quotas, manifest.payload_bytes)
    ctx.blobs.put_header(bundle_id, header.to_bytes())
    row = Bundle(
        bundle_id=bundle_id,
        sender_org=manifest.sender_org,
        sender_site=manifest.sender_site,
        mode=manifest.mode,
        recipients=json.dumps(sorted(manifest.recipients)),
        modalities=json.dumps(sorted(manifest.modalities)),
        facts=manifest.facts.model_dump_json() if manifest.facts else "",
        instance_count=manifest.instance_count,
        payload_bytes=manifest.payload_bytes,
        chunk_count=manifest.chunk_count,
        chunk_size=manifest.chunk_size,
        header_digest=digest,
        signer_serial=signer.serial,
    )
    ctx.session.add(row)
    audit.record(
        ctx.session,
        actor=f"site:{identity.org}/{identity.site}",
        action="bundle.header",
        subject=bundle_id,
    )
    ctx.session.commit()
    ctx.session.refresh(row)
    return row


def _check_collection_recipient(session: Session, name: str, mode: str) -> None:
    from hub.collections.service import require_collection

    if mode != "deidentified":
        raise Forbidden(
            f"research collection {name!r} takes de-identified bundles only; reseal the study "
            "under a de-identified rule"
        )
    require_collection(session, name)


def _check_valid_now(cert: x509.Certificate) -> None:
    """The signer certificate must be valid when the hub SEES the signature, whatever time
    the manifest claims: an expired (even unrevoked) old key cannot sign a backdated bundle."""
    now = dt.datetime.now(dt.UTC)
    if now > cert.not_valid_after_utc:
        raise Forbidden(
            f"the header was signed with a certificate that expired at "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; reseal the study (the agent "
            "signs with its current certificate)"
        )
    if now < cert.not_valid_before_utc:
        raise Forbidden("the header was signed with a certificate that is not valid yet")


def _check_participant(bundle: Bundle, identity: SiteIdentity) -> None:
    recipients = json.loads(bundle.recipients)
    is_sender = (bundle.sender_org, bundle.sender_site) == (identity.org, identity.site)
    if not is_sender and identity.org not in recipients:
        raise NotFound(f"bundle {bundle.bundle_id} is unknown")


def chunk_body_limit(ctx: IngestContext, bundle_id: str, route_cap: int) -> int:
    """The most bytes a chunk of this bundle can be (its chunk size plus the AEAD tag), within
    the route's cap; the route's cap for a bundle not started (refused later, by id)."""
    bundle = ctx.session.get(Bundle, bundle_id)
    if bundle is None or bundle.chunk_size <= 0:
        return route_cap
    return min(route_cap, bundle.chunk_size + TAG_BYTES)


def put_chunk(
    ctx: IngestContext, identity: SiteIdentity, bundle_id: str, index: int, data: bytes
) -> None:
    bundle = _bundle(ctx.session, bundle_id)
    if (bundle.sender_org, bundle.sender_site) != (identity.org, identity.site):
        raise Forbidden("only the sending site may upload chunks of a bundle")
    if not 0 <= index < bundle.chunk_count:
        raise InvalidRequest(f"chunk index {index} is outside 0..{bundle.chunk_count - 1}")
    header = _load_header(ctx, bundle)
    try:
        check_chunk(header, index, data)
    except WireError as exc:
        raise InvalidRequest(f"chunk {index} does not match the signed header: {exc}") from exc
    if ctx.session.get(ReceivedChunk, (bundle_id, index)) is not None:
        if bundle.state != "complete" and not ctx.blobs.has_chunk(bundle_id, index):
            ctx.blobs.put_chunk(bundle_id, index, data)  # its name was lost to a power cut
        return
    ctx.blobs.put_chunk(bundle_id, index, data)
    ctx.session.add(ReceivedChunk(bundle_id=bundle_id, index=index, size=len(data)))
    try:
        ctx.session.commit()
    except IntegrityError:  # the same chunk, sent again while its first request was running
        ctx.session.rollback()
        if ctx.session.get(ReceivedChunk, (bundle_id, index)) is None:
            raise


def received_indexes(session: Session, bundle_id: str) -> list[int]:
    rows = session.exec(select(ReceivedChunk.index).where(ReceivedChunk.bundle_id == bundle_id))
    return sorted(rows)


def _stored_indexes(ctx: IngestContext, bundle: Bundle) -> list[int]:
    """Indexed chunks of a bundle still receiving whose file is there (a power cut before the
    folder was fsynced can lose a chunk's name); a complete bundle's were synced."""
    have = received_indexes(ctx.session, bundle.bundle_id)
    if bundle.state == "complete":
        return have
    return [i for i in have if ctx.blobs.has_chunk(bundle.bundle_id, i)]


def status(ctx: IngestContext, identity: SiteIdentity, bundle_id: str) -> tuple[Bundle, list[int]]:
    bundle = _bundle(ctx.session, bundle_id)
    _check_participant(bundle, identity)
    return bundle, _stored_indexes(ctx, bundle)


def make_receipt(ctx: IngestContext, bundle: Bundle) -> Receipt:
    assert bundle.completed_at is not None
    completed_at = bundle.completed_at
    if completed_at.tzinfo is None:  # SQLite and PostgreSQL hand back naive UTC values
        completed_at = completed_at.replace(tzinfo=dt.UTC)
    return sign_receipt(
        bundle.bundle_id, bundle.header_digest, bundle.chunk_count, completed_at, ctx.receipt_key
    )


def complete(ctx: IngestContext, identity: SiteIdentity, bundle_id: str) -> Receipt:
    """Mark a whole bundle complete, queue one delivery per recipient org, return a receipt."""
    bundle = _bundle(ctx.session, bundle_id)
    if (bundle.sender_org, bundle.sender_site) != (identity.org, identity.site):
        raise Forbidden("only the sending site may complete a bundle")
    if bundle.state != "complete":
        indexed = received_indexes(ctx.session, bundle_id)
        have = _stored_indexes(ctx, bundle)
        lost = sorted(set(indexed) - set(have))
        if lost:  # indexed, but the file's name did not survive a power cut: ask again
            ctx.session.exec(
                delete(ReceivedChunk).where(
                    col(ReceivedChunk.bundle_id) == bundle_id,
                    col(ReceivedChunk.index).in_(lost),
                )
            )
            ctx.session.commit()
        missing = bundle.chunk_count - len(have)
        if missing:
            raise Conflict(
                f"bundle {bundle_id} is missing {missing} of {bundle.chunk_count} chunks; "
                "ask for its status and upload the rest"
            )
        ctx.blobs.sync_bundle(bundle_id)  # every chunk's name durable before the receipt
        bundle.state = "complete"
        bundle.completed_at = utcnow().replace(microsecond=0)
        for org in json.loads(bundle.recipients):
            if ctx.session.get(Delivery, (bundle_id, org)) is None:
                ctx.session.add(Delivery(bundle_id=bundle_id, recipient_org=org))
        collection_queue.enqueue(ctx.session, bundle, json.loads(bundle.recipients))
        ctx.session.add(bundle)
        audit.record(
            ctx.session,
            actor=f"site:{identity.org}/{identity.site}",
            action="bundle.complete",
            subject=bundle_id,
            detail=json.dumps({"recipients": json.loads(bundle.recipients)}),
        )
        ctx.session.commit()
        ctx.session.refresh(bundle)
    if ctx.after_complete is not None:
        ctx.after_complete(ctx.session, bundle_id)
    return make_receipt(ctx, bundle)
