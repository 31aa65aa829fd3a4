"""Browsing a research collection (the web UI's study and series lists): the de-identified
values the index holds, filtered and paged. Readers are checked on every call."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from hub.collections.models import CollectionSeries, CollectionStudy
from hub.collections.service import readable
from hub.principals import Principal

PAGE = 50


@dataclass(frozen=True)
class StudyLine:
    study_uid: str
    study_date: str
    description: str
    modalities: list[str]
    patient_id: str  # the de-identified (pseudonymous) value the collection holds
    series_count: int
    instance_count: int
    thumbnail_series: str | None  # a series to show a thumbnail of


@dataclass(frozen=True)
class StudyPage:
    lines: list[StudyLine]
    total: int
    offset: int
    more: bool


@dataclass(frozen=True)
class SeriesLine:
    series_uid: str
    modality: str
    series_number: int | None
    description: str
    body_part: str
    instance_count: int


def studies(
    session: Session,
    principal: Principal,
    name: str,
    *,
    modality: str = "",
    text: str = "",
    offset: int = 0,
    limit: int = PAGE,
) -> StudyPage:
    """Studies of the collection, oldest added first; `modality` one of the study's,
    `text` part of its description (any case)."""
    collection = readable(session, principal, name)
    query = select(CollectionStudy).where(CollectionStudy.collection_id == collection.id)
    if modality:
        query = query.where(col(CollectionStudy.modalities).contains(f"\\{modality.upper()}\\"))
    if text:
        query = query.where(func.lower(CollectionStudy.description).contains(text.lower()))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(CollectionStudy.id)).offset(max(0, offset)).limit(limit)
    ).all()
    firsts: dict[str, str] = {}
    if rows:
        for study_uid, series_uid in session.exec(
            select(CollectionSeries.study_uid, func.min(CollectionSeries.series_uid))
            .where(
                CollectionSeries.collection_id == collection.id,
                col(CollectionSeries.study_uid).in_([r.study_uid for r in rows]),
            )
            .group_by(col(CollectionSeries.study_uid))
        ).all():
            firsts[study_uid] = series_uid
    lines = [
        StudyLine(
            study_uid=r.study_uid,
            study_date=r.study_date,
            description=r.description,
            modalities=[m for m in r.modalities.split("\\") if m],
            patient_id=r.patient_id,
            series_count=r.series_count,
            instance_count=r.instance_count,
            thumbnail_series=firsts.get(r.study_uid),
        )
        for r in rows
    ]
    return StudyPage(lines, int(total), max(0, offset), max(0, offset) + len(lines) < total)


def series_of(
    session: Session, principal: Principal, name: str, study_uid: str
) -> list[SeriesLine]:
    collection = readable(session, principal, name)
    rows = session.exec(
        select(CollectionSeries)
        .where(
            CollectionSeries.collection_id == collection.id,
            CollectionSeries.study_uid == study_uid,
        )
        .order_by(col(CollectionSeries.series_number), col(CollectionSeries.id))
    ).all()
    return [
        SeriesLine(r.series_uid, r.modality, r.series_number, r.description, r.body_part,
                   r.instance_count)
        for r in rows
    ]  # fmt: skip
