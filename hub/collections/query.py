"""QIDO-RS for a collection (PS3.18 10.6, matching of PS3.4 C.2.2.2): the query's parameters
become SQL over the de-identified index; answers are DICOM JSON datasets.

Matching: single value; list of values (comma separated: any matches); wildcards `*` and `?`
(text attributes); ranges `a-b`, `-b`, `a-` of dates and times; person names without regard
to case; an empty value matches everything and returns the attribute. `includefield` names
attributes to return (or `all`). `limit` and `offset` page the answer; nothing is cut
silently: when more results match, the answer says so (a Warning header with the next offset).

Sequence matching (PS3.4 C.2.2.2.6): `Sequence.ItemAttribute=value` (keywords or tags, e.g.
`00400275.00321060`) matches an entity when at least ONE item of its sequence matches every
item key given for that sequence, each by the rules of its VR; the sequences are those of
`hub.collections.sequences`, their item values indexed in `collection_sequence_value`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.datadict import dictionary_keyword, dictionary_VR, tag_for_keyword
from sqlalchemy import ColumnElement, and_, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from hub.collections import dicom_json, sequences
from hub.collections.models import (
    Collection,
    CollectionInstance,
    CollectionSequenceValue,
    CollectionSeries,
    CollectionStudy,
)
from hub.errors import HubError


class InvalidRequest(HubError):
    """A query the standard or this server cannot answer: 400 (PS3.18 10.6.3)."""

    title = "Bad request"


Level = Literal["study", "series", "instance"]
Kind = Literal["uid", "text", "pn", "date", "time", "int", "modalities"]

# keyword -> (table, column name, kind)
_STUDY_KEYS: dict[str, tuple[type[Any], str, Kind]] = {
    "StudyInstanceUID": (CollectionStudy, "study_uid", "uid"),
    "StudyDate": (CollectionStudy, "study_date", "date"),
    "StudyTime": (CollectionStudy, "study_time", "time"),
    "AccessionNumber": (CollectionStudy, "accession", "text"),
    "StudyID": (CollectionStudy, "study_id", "text"),
    "StudyDescription": (CollectionStudy, "description", "text"),
    "PatientID": (CollectionStudy, "patient_id", "text"),
    "PatientName": (CollectionStudy, "patient_name", "pn"),
    "PatientSex": (CollectionStudy, "patient_sex", "text"),
    "ModalitiesInStudy": (CollectionStudy, "modalities", "modalities"),
}
_SERIES_KEYS: dict[str, tuple[type[Any], str, Kind]] = {
    "SeriesInstanceUID": (CollectionSeries, "series_uid", "uid"),
    "Modality": (CollectionSeries, "modality", "text"),
    "SeriesNumber": (CollectionSeries, "series_number", "int"),
    "SeriesDescription": (CollectionSeries, "description", "text"),
    "BodyPartExamined": (CollectionSeries, "body_part", "text"),
    "SeriesDate": (CollectionSeries, "series_date", "date"),
    "SeriesTime": (CollectionSeries, "series_time", "time"),
}
_INSTANCE_KEYS: dict[str, tuple[type[Any], str, Kind]] = {
    "SOPInstanceUID": (CollectionInstance, "sop_uid", "uid"),
    "SOPClassUID": (CollectionInstance, "sop_class_uid", "uid"),
    "InstanceNumber": (CollectionInstance, "instance_number", "int"),
    "Rows": (CollectionInstance, "rows", "int"),
    "Columns": (CollectionInstance, "columns", "int"),
    "NumberOfFrames": (CollectionInstance, "frames", "int"),
}
SEARCHABLE: dict[Level, dict[str, tuple[type[Any], str, Kind]]] = {
    "study": _STUDY_KEYS,
    "series": {**_SERIES_KEYS, **_STUDY_KEYS},
    "instance": {**_INSTANCE_KEYS, **_SERIES_KEYS, **_STUDY_KEYS},
}

_DEFAULTS: dict[Level, tuple[str, ...]] = {
    "study": (
        "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "PatientName",
        "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
    ),
    "series": (
        "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
        "StudyInstanceUID",
    ),
    "instance": (
        "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
        "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID",
    ),
}  # fmt: skip
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching", "orderby"}
_LEVEL_TABLE: dict[Level, type[Any]] = {
    "study": CollectionStudy,
    "series": CollectionSeries,
    "instance": CollectionInstance,
}
_OWNER: dict[Level, str] = {"study": "study_uid", "series": "series_uid", "instance": "sop_uid"}


@dataclass
class QidoQuery:
    level: Level
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    tables: set[type[Any]] = field(default_factory=set)
    include_all: bool = False
    include: set[str] = field(default_factory=set)  # tags, 8 hex digits
    limit: int = 100
    offset: int = 0
    warnings: list[str] = field(default_factory=list)
    # sequence keyword -> [(item keyword, value)]: keys that must match in one item
    item_keys: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    results: list[dict[str, Any]]
    more: bool
    next_offset: int


def _tag_key(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return f"{tag:08X}"


def _keyword_of(name: str) -> str:
    """A QIDO attribute id: a keyword or a tag (8 hex digits), not a path."""
    if len(name) == 8:
        try:
            keyword = dictionary_keyword(int(name, 16))
        except (ValueError, KeyError):
            keyword = ""
        if keyword:
            return keyword
    if tag_for_keyword(name) is not None:
        return name
    # the text is not quoted: it may be a value typed where a key belongs ("Name:Doe")
    raise InvalidRequest(
        "a query key is not a DICOM attribute keyword or tag (a keyword such as PatientID or "
        "eight hex digits such as 00100020)"
    )


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _single(column: Any, kind: Kind, value: str, name: str) -> ColumnElement[bool]:
    """`name`: the attribute, for a refusal (which never quotes the value: it may be a
    patient's name, ID or birth date)."""
    if kind == "int":
        try:
            return column == int(value)  # type: ignore[no-any-return]
        except ValueError:
            raise InvalidRequest(f"{name}: the value is not an integer") from None
    if kind == "modalities":
        pattern = "%\\\\" + _like(value) + "\\\\%"  # the stored "\\CT\\", escaped
        return column.like(pattern, escape="\\")  # type: ignore[no-any-return]
    if kind in ("date", "time") and "-" in value:
        low, _, high = value.partition("-")
        low, high = _normal(kind, low, name), _normal(kind, high, name, upper=True)
        parts = [column != ""]
        if low:
            parts.append(column >= low)
        if high:
            parts.append(column <= high)
        return and_(*parts)
    if kind in ("date", "time"):
        value = _normal(kind, value, name)
        if kind == "time":
            return column.like(f"{value}%")  # type: ignore[no-any-return]
        return column == value  # type: ignore[no-any-return]
    if kind != "uid" and ("*" in value or "?" in value):
        if kind == "pn":
            return func.lower(column).like(_like(value.lower()), escape="\\")
        return column.like(_like(value), escape="\\")  # type: ignore[no-any-return]
    if kind == "pn":
        return func.lower(column) == value.lower()
    return column == value  # type: ignore[no-any-return]


def _normal(kind: Kind, value: str, name: str, *, upper: bool = False) -> str:
    value = value.strip()
    if not value:
        return ""
    if kind == "date":
        digits = value.replace(".", "")  # ACR-NEMA style dates are accepted too
        if len(digits) != 8 or not digits.isdigit():
            raise InvalidRequest(f"{name}: the value is not a date (YYYYMMDD, ranges as A-B)")
        return digits
    digits = value.replace(":", "")
    head = digits.split(".")[0]
    if not head.isdigit() or len(head) not in (2, 4, 6):
        raise InvalidRequest(f"{name}: the value is not a time (HHMMSS, ranges as A-B)")
    return digits + "9" * (6 - len(head)) if upper else digits


def parse(level: Level, params: list[tuple[str, str]], *, max_limit: int) -> QidoQuery:
    query = QidoQuery(level=level, limit=max_limit)
    searchable = SEARCHABLE[level]
    for name, raw in params:
        if name == "includefield":
            for item in raw.split(","):
                item = item.strip()
                if item == "all":
                    query.include_all = True
                elif item:  # a path into a sequence returns the whole sequence
                    query.include.add(_tag_key(_keyword_of(item.split(".")[0])))
            continue
        if name in ("limit", "offset"):
            try:
                number = int(raw)
            except ValueError:
                raise InvalidRequest(f"{name} must be a whole number") from None
            if number < 0 or (name == "limit" and number == 0):
                raise InvalidRequest(f"{name} must be {'>= 1' if name == 'limit' else '>= 0'}")
            if name == "limit" and number > max_limit:
                query.warnings.append(
                    f"limit {number} is above this server's maximum; {max_limit} results "
                    "per page, ask for the next with offset"
                )
                number = max_limit
            setattr(query, name, number)
            continue
        if name == "fuzzymatching":
            if raw.lower() == "true":
                query.warnings.append("fuzzy matching is not supported; names match exactly")
            continue
        if name in _CONTROL:
            continue
        if "." in name:
            _item_key(query, name, raw)
            continue
        keyword = _keyword_of(name)
        if keyword in sequences.searchable(level):
            if raw != "":
                raise InvalidRequest(
                    f"{keyword} is a sequence: match on the attributes of its items, e.g. "
                    f"{keyword}.CodeValue=..., or give it empty to have it returned"
                )
            query.include.add(_tag_key(keyword))
            continue
        if keyword not in searchable:
            known = ", ".join(sorted(searchable))
            raise InvalidRequest(
                f"{keyword} cannot be matched at the {level} level of this server; "
                f"matching keys: {known}"
            )
        query.include.add(_tag_key(keyword))
        if raw == "":
            continue  # universal matching: the attribute is returned
        table, column_name, kind = searchable[keyword]
        column = getattr(table, column_name)
        values = [v for v in raw.split(",")] if kind != "pn" else [raw]
        if kind == "uid":
            values = [u for v in values for u in v.split("\\")]
            query.conditions.append(col(column).in_(values))
        else:
            matches = [_single(column, kind, v, keyword) for v in values]
            query.conditions.append(or_(*matches) if len(matches) > 1 else matches[0])
        query.tables.add(table)
    for keyword, keys in query.item_keys.items():
        condition = _sequence_match(level, keyword, keys)
        if condition is not None:
            query.conditions.append(condition)
    return query


def _item_key(query: QidoQuery, name: str, raw: str) -> None:
    """`Sequence.ItemAttribute=value`: one item key of a sequence this level can match."""
    parts = name.split(".")
    known = sequences.searchable(query.level)
    listed = ", ".join(sorted(known)) or "none"
    if len(parts) != 2 or not all(parts):
        raise InvalidRequest(
            "a key with dots: one level of sequence matching is supported (Sequence.Attribute); "
            f"sequences matched at the {query.level} level: {listed}"
        )
    keyword, item = _keyword_of(parts[0]), _keyword_of(parts[1])
    if keyword not in known:
        raise InvalidRequest(
            f"{keyword} cannot be matched at the {query.level} level of this server; "
            f"sequences matched at this level: {listed}"
        )
    vr = dictionary_VR(item)
    if vr not in sequences.MATCHABLE_VRS:
        raise InvalidRequest(
            f"{item} (VR {vr}) cannot be matched inside {keyword}; item attributes of VR "
            f"{', '.join(sorted(sequences.MATCHABLE_VRS))} can"
        )
    query.include.add(_tag_key(keyword))  # the sequence is returned with the answer
    query.item_keys.setdefault(keyword, []).append((item, raw))


def _item_kind(vr: str) -> Kind:
    kinds: dict[str, Kind] = {"UI": "uid", "DA": "date", "TM": "time", "PN": "pn"}
    return kinds.get(vr, "text")


def _sequence_match(
    level: Level, keyword: str, keys: list[tuple[str, str]]
) -> ColumnElement[bool] | None:
    """At least one item of the entity's sequence matches every key (PS3.4 C.2.2.2.6): the
    value rows of all keys share owner, sequence and item. Empty values match anything."""
    given = [(item, raw) for item, raw in keys if raw != ""]
    if not given:
        return None
    main = _LEVEL_TABLE[level]
    owner = getattr(main, _OWNER[sequences.SEQUENCES[keyword]])
    rows = [aliased(CollectionSequenceValue) for _ in given]
    first = rows[0]
    statement = select(first.id).where(
        first.collection_id == main.collection_id,
        first.owner == owner,
        first.sequence == _tag_key(keyword),
    )
    for row, (item, raw) in zip(rows, given, strict=True):
        if row is not first:
            statement = statement.where(
                row.collection_id == first.collection_id,
                row.owner == first.owner,
                row.sequence == first.sequence,
                row.item == first.item,
            )
        statement = statement.where(
            row.item_key == _tag_key(item), _item_value_match(row.value, keyword, item, raw)
        )
    return statement.exists()


def _item_value_match(column: Any, keyword: str, item: str, raw: str) -> ColumnElement[bool]:
    vr = dictionary_VR(item)
    kind = _item_kind(vr)
    values = raw.split(",") if kind != "pn" else [raw]
    if kind == "uid":
        return col(column).in_([u for v in values for u in v.split("\\")])
    if vr in ("IS", "US", "SS", "UL", "SL"):  # indexed as the integer's digits
        try:
            values = [str(int(v)) for v in values]
        except ValueError:
            raise InvalidRequest(f"{keyword}.{item}: the value is not an integer") from None
    matches = [_single(column, kind, v, f"{keyword}.{item}") for v in values]
    return or_(*matches) if len(matches) > 1 else matches[0]


# the columns an answer is made of, per level (plain rows: no ORM objects built per result)
_ANSWER_COLUMNS: dict[Level, tuple[str, ...]] = {
    "study": ("study_uid", "attributes", "modalities", "series_count", "instance_count"),
    "series": ("study_uid", "series_uid", "attributes", "instance_count"),
    "instance": ("study_uid", "series_uid", "sop_uid", "attributes"),
}


def run(
    session: Session,
    collection: Collection,
    query: QidoQuery,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    urls: Callable[[str, str | None, str | None], str],
) -> Page:
    """Run `query`; `urls(study, series, instance)` gives the RetrieveURL of a result."""
    main = _LEVEL_TABLE[query.level]
    columns = [getattr(main, name) for name in _ANSWER_COLUMNS[query.level]]
    statement = sa_select(*columns).where(main.collection_id == collection.id)
    if CollectionSeries in query.tables and main is CollectionInstance:
        statement = statement.join(
            CollectionSeries,
            and_(
                col(CollectionSeries.collection_id) == col(CollectionInstance.collection_id),
                col(CollectionSeries.series_uid) == col(CollectionInstance.series_uid),
            ),
        )
    if CollectionStudy in query.tables and main is not CollectionStudy:
        statement = statement.join(
            CollectionStudy,
            and_(
                col(CollectionStudy.collection_id) == main.collection_id,
                col(CollectionStudy.study_uid) == main.study_uid,
            ),
        )
    if study_uid is not None:
        statement = statement.where(main.study_uid == study_uid)
    if series_uid is not None:
        statement = statement.where(main.series_uid == series_uid)
    for condition in query.conditions:
        statement = statement.where(condition)
    statement = statement.order_by(main.id).offset(query.offset).limit(query.limit + 1)
    rows = list(session.connection().execute(statement).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    studies = _study_attributes(session, collection, query, rows)
    defaults = _DEFAULT_TAGS[query.level]
    results = [_answer(query, row, urls, studies, defaults) for row in rows]
    return Page(results, more, query.offset + len(rows))


_STUDY_TAGS = frozenset(_tag_key(k) for k in _STUDY_KEYS) | {
    _tag_key("PatientBirthDate"), _tag_key("ReferringPhysicianName"),
} | {_tag_key(k) for k, level in sequences.SEQUENCES.items() if level == "study"}  # fmt: skip


def _study_attributes(
    session: Session, collection: Collection, query: QidoQuery, rows: list[Any]
) -> dict[str, dict[str, Any]]:
    """Study-level attributes asked for at series/instance level: one query for the page."""
    wanted = query.include_all or bool(query.include & _STUDY_TAGS)
    if query.level == "study" or not wanted or not rows:
        return {}
    uids = sorted({row.study_uid for row in rows})
    found = session.exec(
        select(CollectionStudy.study_uid, CollectionStudy.attributes).where(
            CollectionStudy.collection_id == collection.id,
            col(CollectionStudy.study_uid).in_(uids),
        )
    ).all()
    return {uid: dicom_json.loads(attributes) for uid, attributes in found}


_DEFAULT_TAGS: dict[Level, frozenset[str]] = {
    level: frozenset(_tag_key(k) for k in keywords) for level, keywords in _DEFAULTS.items()
}


def _pick(attributes: dict[str, Any], query: QidoQuery, defaults: frozenset[str]) -> dict[str, Any]:
    if query.include_all:
        return dict(attributes)
    wanted = defaults | query.include
    return {tag: value for tag, value in attributes.items() if tag in wanted}


def _element(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def _answer(
    query: QidoQuery,
    row: Any,
    urls: Callable[[str, str | None, str | None], str],
    studies: dict[str, dict[str, Any]],
    defaults: frozenset[str],
) -> dict[str, Any]:
    answer = _pick(dicom_json.loads(row.attributes), query, defaults)
    answer["00080056"] = _element("CS", "ONLINE")
    if query.level == "study":
        answer["00080061"] = {"vr": "CS", "Value": [m for m in row.modalities.split("\\") if m]}
        answer["00201206"] = _element("IS", row.series_count)
        answer["00201208"] = _element("IS", row.instance_count)
        answer["00081190"] = _element("UR", urls(row.study_uid, None, None))
    elif query.level == "series":
        answer["00201209"] = _element("IS", row.instance_count)
        answer["0020000D"] = _element("UI", row.study_uid)
        answer["00081190"] = _element("UR", urls(row.study_uid, row.series_uid, None))
    else:
        answer["0020000D"] = _element("UI", row.study_uid)
        answer["0020000E"] = _element("UI", row.series_uid)
        answer["00081190"] = _element("UR", urls(row.study_uid, row.series_uid, row.sop_uid))
    for tag, value in studies.get(row.study_uid, {}).items():
        if query.include_all or tag in query.include:
            answer.setdefault(tag, value)
    return dict(sorted(answer.items()))
