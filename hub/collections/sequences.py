"""The sequences QIDO-RS matches on (PS3.4 C.2.2.2.6, PS3.18 10.6.1), and the values of their
items that the index holds for it (table `collection_sequence_value`).

A sequence belongs to one level: the study's (Procedure Code Sequence, General Study module),
the series' (Request Attributes Sequence, a required matching key of PS3.18 Table 10.6.1-5) or
the instance's (Anatomic Region Sequence). Study and series sequences are indexed from the
instance that created the study or series row, as every other study and series attribute of
the index is; instance sequences from every instance.

Every attribute of an item whose VR can be matched (text, code, date, time, integer, UID) is
indexed, one row per value; nested sequences inside items and longer values are not. The rows
are built here from the instance's DICOM JSON, by ingest (`hub.collections.store.index_rows`) and by
the migration that indexed collections stored before (`0007_collection_sequences`) alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.datadict import tag_for_keyword

Level = Literal["study", "series", "instance"]

# keyword -> the level the sequence belongs to
SEQUENCES: dict[str, Level] = {
    "ProcedureCodeSequence": "study",
    "RequestAttributesSequence": "series",
    "AnatomicRegionSequence": "instance",
}
_RANK: dict[Level, int] = {"study": 0, "series": 1, "instance": 2}

# VRs of item attributes that are indexed and matched (PS3.4 C.2.2.2.1-5)
TEXT_VRS = frozenset({"AE", "AS", "CS", "DT", "LO", "SH"})
MATCHABLE_VRS = TEXT_VRS | {"DA", "TM", "PN", "UI", "IS", "US", "SS", "UL", "SL"}
MAX_VALUE = 200  # longer values are not indexed (no matchable VR allows them)


def tag_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def searchable(level: Level) -> dict[str, Level]:
    """The sequences a query at `level` can match: its own and those of the levels above."""
    return {kw: own for kw, own in SEQUENCES.items() if _RANK[own] <= _RANK[level]}


@dataclass(frozen=True)
class ItemValue:
    sequence: str  # tag, 8 hex digits
    item: int
    item_key: str  # tag, 8 hex digits
    value: str


def _texts(vr: str, values: list[Any]) -> Iterator[str]:
    for value in values:
        if value is None:
            continue
        if vr == "PN":
            text = value.get("Alphabetic", "") if isinstance(value, dict) else str(value)
        elif vr in ("IS", "US", "SS", "UL", "SL"):
            try:
                text = str(int(value))
            except (TypeError, ValueError):
                continue
        else:
            text = str(value).strip()
        if text and len(text) <= MAX_VALUE:
            yield text


def item_values(attributes: dict[str, Any], level: Level) -> list[ItemValue]:
    """The matchable values of the items of `level`'s sequences in an instance's DICOM JSON."""
    found: list[ItemValue] = []
    for keyword, own in SEQUENCES.items():
        if own != level:
            continue
        sequence = tag_of(keyword)
        element = attributes.get(sequence)
        if not isinstance(element, dict) or element.get("vr") != "SQ":
            continue
        for index, item in enumerate(element.get("Value") or []):
            if not isinstance(item, dict):
                continue
            for key, member in sorted(item.items()):
                vr = member.get("vr", "") if isinstance(member, dict) else ""
                if vr not in MATCHABLE_VRS:
                    continue
                for text in _texts(vr, member.get("Value") or []):
                    found.append(ItemValue(sequence, index, key.upper(), text))
    return found


def value_rows(
    collection_id: int, attributes: dict[str, Any], owners: dict[Level, str]
) -> list[dict[str, Any]]:
    """Index rows (column values of `CollectionSequenceValue`, for one multi-row insert) for
    the levels in `owners` (level -> the UID that owns its sequences)."""
    return [
        {
            "collection_id": collection_id,
            "owner": owner,
            "sequence": found.sequence,
            "item": found.item,
            "item_key": found.item_key,
            "value": found.value,
        }
        for level, owner in owners.items()
        for found in item_values(attributes, level)
    ]
