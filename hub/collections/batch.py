"""Many collection instances at once: the background worker's path (`hub.collections.worker`).

The same steps as `store.add_instance`, in batches: each instance is read and checked
(`store.read_and_check`); the files that pass are written while the next instances are checked
(bytes fsynced in a thread pool), then each folder is fsynced once for the batch; then ONE
transaction looks the batch's existing instances, studies (locked) and series up once, asks
`store.index_rows` for each new instance's rows (the one place that says which rows an instance
makes), inserts the instance and sequence-value rows as multi-row INSERTs (no ORM objects),
quarantines the refused ones and commits. An instance counts as stored only after its file is
durable and that transaction committed.

Idempotent by SOP Instance UID: after a crash the same bundle again gives duplicates (and no
second quarantine row for an instance of the same bundle)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from deidentify.verify import Finding
from hub.collections.blobs import InstanceFiles
from hub.collections.collector import fewer_collections
from hub.collections.models import (
    Collection,
    CollectionInstance,
    CollectionQuarantine,
    CollectionSeries,
    CollectionStudy,
)
from hub.collections.store import (
    Checked,
    IndexBatch,
    Source,
    collection_profile,
    element_text,
    index_rows,
    quarantine_rows,
    read_and_check,
)

log = structlog.get_logger("hexchange.hub.collections")

COUNT_KEYS = ("stored", "duplicate", "quarantined", "conflict")
ATTEMPTS = 3


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


@dataclass(frozen=True)
class _Checked:
    data_size: int
    digest: str
    read: Checked
    sop_uid: str
    study_uid: str
    series_uid: str


@fewer_collections()  # the batch's instances are kept until indexed (collector)
def add_batch(
    session: Session,
    files: InstanceFiles,
    collection: Collection,
    items: Sequence[bytes],
    source: Source,
    writers: Executor,
) -> dict[str, int]:
    """Check, store and index `items` (Part 10 files); returns how many were stored, were
    duplicates, quarantined or conflicts (another instance under a SOP Instance UID held)."""
    profile = collection_profile(collection)
    passed: list[_Checked] = []
    refused: list[tuple[str, list[Finding]]] = []
    writes: list[Future[list[Path]]] = []
    for data in items:
        digest = hashlib.sha256(data).hexdigest()
        read = read_and_check(data, profile)
        if isinstance(read, list):
            refused.append((digest, read))
            continue
        ds = read.ds
        writes.append(writers.submit(files.put_unsynced, data, digest))
        passed.append(
            _Checked(
                data_size=len(data),
                digest=digest,
                read=read,
                sop_uid=element_text(ds, "SOPInstanceUID"),
                study_uid=element_text(ds, "StudyInstanceUID"),
                series_uid=element_text(ds, "SeriesInstanceUID"),
            )
        )
    folders = [folder for write in writes for folder in write.result()]
    files.sync_folders(folders, writers)  # every file durable before its index row
    for attempt in range(ATTEMPTS):
        try:
            counts = _index_batch(session, collection, source, passed, refused)
        except IntegrityError:
            session.rollback()  # another worker or request indexed a study/series/instance
            if attempt == ATTEMPTS - 1:
                raise
            continue
        if refused:
            codes = sorted({f.code for _, findings in refused for f in findings})
            log.warning(
                "collection instances quarantined", collection=collection.name,
                count=len(refused), codes=codes, source=source.actor,
            )  # fmt: skip
        return counts
    raise AssertionError("unreachable")


def _index_batch(
    session: Session,
    collection: Collection,
    source: Source,
    passed: list[_Checked],
    refused: list[tuple[str, list[Finding]]],
) -> dict[str, int]:
    counts = zero_counts()
    cid = collection.id or 0
    held: dict[str, str] = {}
    sops = sorted({c.sop_uid for c in passed})
    if sops:
        held = dict(
            session.exec(
                select(CollectionInstance.sop_uid, CollectionInstance.digest).where(
                    CollectionInstance.collection_id == cid,
                    col(CollectionInstance.sop_uid).in_(sops),
                )
            ).all()
        )
    batch = IndexBatch()
    studies = sorted({c.study_uid for c in passed if c.sop_uid not in held})
    if studies:
        for study in session.exec(
            select(CollectionStudy)
            .where(
                CollectionStudy.collection_id == cid, col(CollectionStudy.study_uid).in_(studies)
            )
            .order_by(col(CollectionStudy.study_uid))
            .with_for_update()
        ):
            batch.studies[study.study_uid] = study
        series_uids = sorted({c.series_uid for c in passed if c.sop_uid not in held})
        for series in session.exec(
            select(CollectionSeries).where(
                CollectionSeries.collection_id == cid,
                col(CollectionSeries.series_uid).in_(series_uids),
            )
        ):
            batch.series[series.series_uid] = series
    for checked in passed:
        if checked.sop_uid in held:
            same = held[checked.sop_uid] == checked.digest
            counts["duplicate" if same else "conflict"] += 1
            continue
        index_rows(
            session, collection, checked.read.ds, checked.digest, checked.data_size,
            checked.read.transfer_syntax, source, batch, checked.read.made,
        )  # fmt: skip
        held[checked.sop_uid] = checked.digest
        counts["stored"] += 1
    session.flush()  # the studies and series first, then the instances' rows
    batch.insert_rows(session)
    already: set[str] = set()
    if refused and source.bundle_id:
        already = set(
            session.exec(
                select(CollectionQuarantine.digest).where(
                    CollectionQuarantine.collection_id == cid,
                    CollectionQuarantine.bundle_id == source.bundle_id,
                    col(CollectionQuarantine.digest).in_(sorted({d for d, _ in refused})),
                )
            ).all()
        )
    for digest, findings in refused:
        counts["quarantined"] += 1
        if digest not in already:
            quarantine_rows(session, collection, source, digest, findings)
            already.add(digest)
    session.commit()
    return counts
