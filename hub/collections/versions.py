"""Published versions: an immutable list of a collection's instances with a content hash a
paper can cite, and the download of a version as a zip of DICOM files plus a manifest.

The content hash is SHA-256 over the lines "<SOP Instance UID> <SHA-256 of the file>\\n" in
SOP Instance UID order: anyone holding the files can recompute it from the manifest."""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub import audit
from hub.collections import service
from hub.collections.blobs import InstanceFiles
from hub.collections.models import CollectionInstance, CollectionVersion, CollectionVersionMember
from hub.errors import InvalidRequest, NotFound
from hub.models import aware
from hub.principals import Principal


@dataclass(frozen=True)
class VersionView:
    collection: str
    version: int
    content_hash: str
    instance_count: int
    note: str
    published_by: str
    published_at: str


def content_hash(pairs: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for sop_uid, file_digest in sorted(pairs):
        digest.update(f"{sop_uid} {file_digest}\n".encode())
    return digest.hexdigest()


def _view(name: str, row: CollectionVersion) -> VersionView:
    return VersionView(
        collection=name,
        version=row.version,
        content_hash=row.content_hash,
        instance_count=row.instance_count,
        note=row.note,
        published_by=row.published_by,
        published_at=aware(row.published_at).isoformat(),
    )


def publish(session: Session, principal: Principal, name: str, note: str = "") -> VersionView:
    """Freeze the collection's current instances as its next version."""
    row = service.manageable(session, principal, name)
    instances = session.exec(
        select(CollectionInstance.id, CollectionInstance.sop_uid, CollectionInstance.digest)
        .where(CollectionInstance.collection_id == row.id)
    ).all()  # fmt: skip
    if not instances:
        raise InvalidRequest(f"collection {name!r} holds no instances to publish")
    last = session.exec(
        select(func.max(CollectionVersion.version)).where(CollectionVersion.collection_id == row.id)
    ).one()
    number = int(last or 0) + 1
    version = CollectionVersion(
        collection_id=row.id or 0,
        version=number,
        content_hash=content_hash([(sop, digest) for _, sop, digest in instances]),
        instance_count=len(instances),
        note=note,
        published_by=principal.actor,
    )
    session.add(version)
    session.flush()
    for instance_id, _, _ in instances:
        session.add(
            CollectionVersionMember(
                collection_id=row.id or 0, version=number, instance_id=instance_id or 0
            )
        )
    audit.record(
        session, actor=principal.actor, action="collection.publish",
        subject=f"{name}@{number}", detail=json.dumps({"content_hash": version.content_hash}),
        org=row.org,
    )  # fmt: skip
    session.commit()
    session.refresh(version)
    return _view(name, version)


def list_versions(session: Session, principal: Principal, name: str) -> list[VersionView]:
    row = service.readable(session, principal, name)
    rows = session.exec(
        select(CollectionVersion)
        .where(CollectionVersion.collection_id == row.id)
        .order_by(col(CollectionVersion.version))
    ).all()
    return [_view(name, r) for r in rows]


def members(
    session: Session, principal: Principal, name: str, number: int
) -> tuple[VersionView, list[CollectionInstance]]:
    row = service.readable(session, principal, name)
    version = session.get(CollectionVersion, (row.id, number))
    if version is None:
        raise NotFound(f"collection {name!r} has no version {number}")
    instances = session.exec(
        select(CollectionInstance)
        .join(
            CollectionVersionMember,
            col(CollectionVersionMember.instance_id) == col(CollectionInstance.id),
        )
        .where(
            CollectionVersionMember.collection_id == row.id,
            CollectionVersionMember.version == number,
        )
        .order_by(col(CollectionInstance.study_uid), col(CollectionInstance.series_uid),
                  col(CollectionInstance.instance_number), col(CollectionInstance.sop_uid))
    ).all()  # fmt: skip
    return _view(name, version), list(instances)


def write_zip(
    view: VersionView, instances: list[CollectionInstance], files: InstanceFiles
) -> IO[bytes]:
    """The version as a zip (stored, not compressed): DICOM files and manifest.json; the hash
    is recomputed from the files so a damaged blob store is an error, not a wrong download."""
    out = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115
    entries = []
    pairs = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for item in instances:
            data = files.get(item.digest)
            actual = hashlib.sha256(data).hexdigest()
            if actual != item.digest:
                raise InvalidRequest(
                    f"a stored file of version {view.version} does not match its hash; "
                    "restore the hub's collection files from backup"
                )
            path = f"{item.study_uid}/{item.series_uid}/{item.sop_uid}.dcm"
            archive.writestr(path, data)
            pairs.append((item.sop_uid, actual))
            entries.append(
                {"path": path, "study": item.study_uid, "series": item.series_uid,
                 "sop_instance_uid": item.sop_uid, "sha256": actual, "size": len(data)}
            )  # fmt: skip
        if content_hash(pairs) != view.content_hash:
            raise InvalidRequest(f"version {view.version} does not match its content hash")
        manifest = {
            "collection": view.collection,
            "version": view.version,
            "content_hash": view.content_hash,
            "content_hash_rule": "sha256 over '<sop_instance_uid> <sha256>\\n' sorted by UID",
            "published_at": view.published_at,
            "instances": entries,
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    out.seek(0)
    return out
