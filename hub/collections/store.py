"""`add_instance`: the hub's own check of an instance for a research collection, then the
blob store and the QIDO index. Nothing is indexed or served before the check passes; what
fails is quarantined with its findings (codes and tags, never values)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from deidentify import Profile
from deidentify.verify import Finding, verify_output
from hub import audit
from hub.collections import sequences
from hub.collections.blobs import InstanceFiles
from hub.collections.levels import (
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    InstanceJson,
    instance_json,
    subset,
)
from hub.collections.models import (
    Collection,
    CollectionInstance,
    CollectionQuarantine,
    CollectionSequenceValue,
    CollectionSeries,
    CollectionStudy,
)
from hub.collections.raw_json import Unrepresentable
from hub.errors import Conflict
from hub.models import utcnow

log = structlog.get_logger("hexchange.hub.collections")

_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass(frozen=True)
class Added:
    status: Literal["stored", "duplicate", "quarantined"]
    sop_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    findings: list[Finding] = field(default_factory=list)


@dataclass
class IndexBatch:
    """The study and series rows of a batch of instances, looked up once (locked) per batch."""

    studies: dict[str, CollectionStudy] = field(default_factory=dict)
    series: dict[str, CollectionSeries] = field(default_factory=dict)
    # the batch's instance and sequence-value rows, inserted together by `insert_rows`
    instances: list[dict[str, Any]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)

    def insert_rows(self, session: Session) -> None:
        """The instance and sequence-value rows as multi-row INSERTs (SQLAlchemy Core, no ORM
        objects: the rows are never read back in the batch's transaction)."""
        if self.instances:
            session.execute(insert(CollectionInstance), self.instances)
        if self.values:
            session.execute(insert(CollectionSequenceValue), self.values)
        self.instances, self.values = [], []


@dataclass(frozen=True)
class Source:
    """Who sent an instance: a site (with its bundle) or a person (STOW-RS)."""

    actor: str
    sender_org: str = ""
    sender_site: str = ""
    bundle_id: str = ""


def collection_profile(collection: Collection) -> Profile:
    return Profile.from_names(json.loads(collection.profile))


def element_text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    """An element's value as index text (multiple values joined by backslash), cut to
    `limit`; "" when absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)[:limit]
    return str(value)[:limit]


def element_int(ds: Dataset, keyword: str) -> int | None:
    """An element's value as an integer; None when absent, empty or not a number."""
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def check_instance(ds: Dataset, profile: Profile) -> list[Finding]:
    """The hub's verification: `deidentify.verify_output` plus what a collection requires."""
    findings = list(verify_output(ds, profile))
    for keyword in _UID_KEYWORDS:
        if not element_text(ds, keyword):
            findings.append(
                Finding("missing-uid", "", keyword, keyword, f"{keyword} is missing or empty")
            )
    if element_text(ds, "BurnedInAnnotation").upper() == "YES":
        findings.append(
            Finding(
                "burned-in-annotation",
                "(0028,0301)",
                "BurnedInAnnotation",
                "BurnedInAnnotation",
                "BurnedInAnnotation is YES: the pixels still carry text",
            )
        )
    return findings


@dataclass(frozen=True)
class Checked:
    """An instance read and checked, with its DICOM JSON (made once, here)."""

    ds: Dataset
    transfer_syntax: str
    made: InstanceJson


def read_and_check(data: bytes, profile: Profile) -> Checked | list[Finding]:
    """A Part 10 file read, checked and made DICOM JSON, or why it is refused."""
    try:
        ds = dcmread(io.BytesIO(data))
        ds.file_meta  # noqa: B018  (a Part 10 file is required)
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as exc:
        reason = f"not a DICOM Part 10 file ({type(exc).__name__})"
        return [Finding("unreadable", "", "", "", reason)]
    findings = check_instance(ds, profile)
    if findings:
        return findings
    try:
        made = instance_json(ds)
    except Unrepresentable as exc:
        return [_unrepresentable(exc)]
    return Checked(ds, transfer_syntax, made)


def _unrepresentable(exc: Unrepresentable) -> Finding:
    tag = f"({exc.tag >> 16:04X},{exc.tag & 0xFFFF:04X})"
    keyword = keyword_for_tag(exc.tag) or ""
    return Finding(
        "unrepresentable-value", tag, keyword, keyword or tag,
        f"{keyword or tag} (VR {exc.vr or '?'}) holds a value that is not valid for its VR, "
        "so it cannot be served as DICOM JSON; correct it at the sending site and send the "
        "instance again",
    )  # fmt: skip


def _quarantine(
    session: Session, collection: Collection, source: Source, digest: str, findings: list[Finding]
) -> Added:
    quarantine_rows(session, collection, source, digest, findings)
    session.commit()
    log.warning(
        "collection instance quarantined",
        collection=collection.name,
        codes=sorted({f.code for f in findings}),
        source=source.actor,
    )
    return Added("quarantined", findings=findings)


def quarantine_rows(
    session: Session, collection: Collection, source: Source, digest: str, findings: list[Finding]
) -> None:
    """The quarantine row and its audit event, in the caller's transaction."""
    from hashlib import sha256

    row = CollectionQuarantine(
        collection_id=collection.id or 0,
        sender_org=source.sender_org,
        sender_site=source.sender_site,
        source=source.actor,
        bundle_id=source.bundle_id,
        digest=digest or sha256(b"").hexdigest(),
        findings=json.dumps([f.__dict__ for f in findings]),
    )
    session.add(row)
    audit.record(
        session,
        actor=source.actor,
        action="collection.quarantine",
        subject=collection.name,
        detail=json.dumps({"codes": sorted({f.code for f in findings}), "digest": digest}),
        org=source.sender_org or collection.org,
        outcome="denied",
    )


def add_instance(
    session: Session, files: InstanceFiles, collection: Collection, data: bytes, source: Source
) -> Added:
    """Check, store and index one DICOM file (Part 10). Idempotent: the same bytes again are
    a duplicate; different bytes under a SOP Instance UID already held are a conflict."""
    from hashlib import sha256

    digest = sha256(data).hexdigest()
    read = read_and_check(data, collection_profile(collection))
    if isinstance(read, list):
        return _quarantine(session, collection, source, digest, read)
    ds = read.ds
    study_uid, series_uid = (
        element_text(ds, "StudyInstanceUID"),
        element_text(ds, "SeriesInstanceUID"),
    )
    sop_uid = element_text(ds, "SOPInstanceUID")
    existing = session.exec(
        select(CollectionInstance).where(
            CollectionInstance.collection_id == collection.id,
            CollectionInstance.sop_uid == sop_uid,
        )
    ).first()
    if existing is not None:
        if existing.digest == digest:
            return Added("duplicate", sop_uid, study_uid, series_uid)
        raise Conflict(
            f"collection {collection.name} already holds a different instance with this SOP "
            "Instance UID; instances are never replaced (published versions cite them)"
        )
    files.put(data)  # durable before the index row
    for attempt in range(3):
        try:
            index_rows(
                session, collection, ds, digest, len(data), read.transfer_syntax, source,
                made=read.made,
            )  # fmt: skip
            session.commit()
            break
        except IntegrityError:
            session.rollback()  # another request indexed the same study/series/instance
            again = session.exec(
                select(CollectionInstance).where(
                    CollectionInstance.collection_id == collection.id,
                    CollectionInstance.sop_uid == sop_uid,
                )
            ).first()
            if again is not None:
                if again.digest == digest:
                    return Added("duplicate", sop_uid, study_uid, series_uid)
                raise Conflict(
                    f"collection {collection.name} already holds a different instance with "
                    "this SOP Instance UID"
                ) from None
            if attempt == 2:
                raise
    return Added("stored", sop_uid, study_uid, series_uid)


def index_rows(
    session: Session,
    collection: Collection,
    ds: Dataset,
    digest: str,
    size: int,
    transfer_syntax: str,
    source: Source,
    batch: IndexBatch | None = None,
    made: InstanceJson | None = None,
) -> None:
    """The index rows of one instance (the one place that says which rows an instance
    makes). With `batch` (`hub.collections.batch`), the study and series rows come from the
    batch's lookups and nothing is flushed: the batch inserts every instance's rows together.
    `made`: the instance's DICOM JSON when already made (`read_and_check`)."""
    cid = collection.id or 0
    if made is None:
        made = instance_json(ds)
    study_uid, series_uid = (
        element_text(ds, "StudyInstanceUID"),
        element_text(ds, "SeriesInstanceUID"),
    )
    modality = element_text(ds, "Modality", 16)
    sop_uid = element_text(ds, "SOPInstanceUID")
    owners: dict[sequences.Level, str] = {"instance": sop_uid}  # whose sequences to index
    if batch is not None:
        study = batch.studies.get(study_uid)
    else:
        study = session.exec(
            select(CollectionStudy)
            .where(CollectionStudy.collection_id == cid, CollectionStudy.study_uid == study_uid)
            .with_for_update()
        ).first()
    if study is None:
        study = CollectionStudy(
            collection_id=cid,
            study_uid=study_uid,
            study_date=element_text(ds, "StudyDate", 8),
            study_time=element_text(ds, "StudyTime", 16),
            accession=element_text(ds, "AccessionNumber"),
            study_id=element_text(ds, "StudyID", 16),
            description=element_text(ds, "StudyDescription"),
            patient_id=element_text(ds, "PatientID"),
            patient_name=element_text(ds, "PatientName", 200),
            patient_sex=element_text(ds, "PatientSex", 16),
            attributes=subset(made.indexed, STUDY_KEYWORDS),
        )
        owners["study"] = study_uid
    if batch is not None:
        series = batch.series.get(series_uid)
    else:
        series = session.exec(
            select(CollectionSeries).where(
                CollectionSeries.collection_id == cid, CollectionSeries.series_uid == series_uid
            )
        ).first()
    if series is None:
        series = CollectionSeries(
            collection_id=cid,
            study_uid=study_uid,
            series_uid=series_uid,
            modality=modality,
            series_number=element_int(ds, "SeriesNumber"),
            description=element_text(ds, "SeriesDescription"),
            body_part=element_text(ds, "BodyPartExamined"),
            series_date=element_text(ds, "SeriesDate", 8),
            series_time=element_text(ds, "SeriesTime", 16),
            attributes=subset(made.indexed, SERIES_KEYWORDS),
        )
        owners["series"] = series_uid
        study.series_count += 1
        if modality and f"\\{modality}\\" not in (study.modalities or "\\"):
            study.modalities = (study.modalities or "\\") + modality + "\\"
    series.instance_count += 1
    study.instance_count += 1
    session.add(study)
    session.add(series)
    rows = batch if batch is not None else IndexBatch()
    rows.instances.append(
        {
            "collection_id": cid,
            "study_uid": study_uid,
            "series_uid": series_uid,
            "sop_uid": sop_uid,
            "sop_class_uid": element_text(ds, "SOPClassUID"),
            "instance_number": element_int(ds, "InstanceNumber"),
            "transfer_syntax": transfer_syntax,
            "rows": element_int(ds, "Rows"),
            "columns": element_int(ds, "Columns"),
            "frames": element_int(ds, "NumberOfFrames") or (1 if "PixelData" in ds else None),
            "digest": digest,
            "size": size,
            "source": source.actor,
            "added_at": utcnow(),
            "attributes": made.text,
        }
    )
    rows.values += sequences.value_rows(cid, made.indexed, owners)
    if batch is not None:
        batch.studies[study_uid], batch.series[series_uid] = study, series
        return
    session.flush()
    rows.insert_rows(session)
