"""DICOM JSON (PS3.18 F.2) of a data set as read, straight from its raw data elements.

`Dataset.to_json_dict` first turns every raw element into a `DataElement` (a hook call, a
value object per value: `IS`, `DSfloat`, `UID`, `PersonName`, a `MultiValue`), then turns that
back into JSON; on the collection ingest path that was about half of the CPU per instance.
`dataset_json` gives the same dict from the raw bytes, doing per element only what the JSON
needs: strings decoded and split on backslash, numbers by `struct`, PN split into its
Alphabetic/Ideographic/Phonetic groups, AT as tags, OB/OW/... as InlineBinary or a bulk data
mark, sequences item by item.

Exactly pydicom's JSON, by construction: each fast path repeats the steps pydicom 3.0's
converters take for that VR (`pydicom.values`, `DataElement.to_json_dict`,
`jsonrep.convert_to_python_number`) and is taken only where those steps can neither warn nor
fail. Everything else goes through pydicom's own path for that one element (`ds[tag]`, then
`DataElement.to_json_dict`), with its warnings and its retries: elements with no or an
ambiguous VR, UN, deferred values, values that are invalid for their VR (too long, not a
number, not a UID, an empty number in a list, ...), non-ASCII person names, text with ISO 2022
escapes, LUT descriptors; and the whole data set when pydicom is configured other than by
default (hooks, callbacks, numpy or Decimal values, datetime conversion, RAISE validation).
Where pydicom's path fails, `Unrepresentable` names the element (the hub quarantines the
instance: `store.read_and_check`) instead of pydicom's error.
`tests/hub/test_raw_json.py` compares both paths on generated data sets (hypothesis).
"""

from __future__ import annotations

import base64
import functools
import re
import struct
from collections.abc import Callable, MutableSequence
from typing import Any

from pydicom import config
from pydicom import hooks as pydicom_hooks
from pydicom.charset import custom_encoders
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

BulkMark = Callable[[int], str]  # the tag of a bulk data element -> its BulkDataURI

_LATIN1 = "latin-1"  # pydicom's default_encoding ("iso8859") for the VRs of the basic G0 set
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_CHARSET_TAG = 0x00080005
_ESC = b"\x1b"
_CUSTOM = frozenset(custom_encoders)  # pydicom's own encoders (ISO 2022 JP): they may warn

# VR -> struct format of one value (pydicom.values.converters)
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_INTEGERS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
# maximum length of a value pydicom checks on reading (valuerep.MAX_VALUE_LEN); longer
# values warn, so they take pydicom's path
_TEXT_MAX = {"SH": 16, "LO": 64, "UC": 0}
_SINGLE_TEXT_MAX = {"ST": 1024, "LT": 10240, "UT": 0}
_PLAIN = frozenset({"AS", "CS", "DA", "DT", "TM"})  # split, trailing spaces and NULs cut
_IS = re.compile(r" *[+\-]?[0-9]+ *")  # valuerep's IS check (ASCII digits only)
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


class _Slow(Exception):
    """This element takes pydicom's own path."""


def _default_pydicom() -> bool:
    """pydicom converts raw elements as its defaults say (what the fast paths repeat)."""
    return (
        config.data_element_callback is None
        and pydicom_hooks.hooks.raw_element_vr is pydicom_hooks.raw_element_vr
        and pydicom_hooks.hooks.raw_element_value is pydicom_hooks.raw_element_value
        and not config.datetime_conversion
        and not config.use_DS_numpy
        and not config.use_IS_numpy
        and not config.use_DS_decimal
        and not config.use_none_as_empty_text_VR_value
        and config.replace_un_with_known_vr
        and config.settings.reading_validation_mode in (config.WARN, config.IGNORE)
    )


def dataset_json(ds: Dataset, bulk_threshold: int, bulk_mark: BulkMark) -> dict[str, Any]:
    """`ds.to_json_dict(bulk_threshold, bulk_mark)`, the same dict, computed from the raw
    elements. Where pydicom's raises (a value invalid for its VR), raises `Unrepresentable`
    naming the element."""
    if not _default_pydicom():
        result: dict[str, Any] = ds.to_json_dict(bulk_threshold, lambda e: bulk_mark(int(e.tag)))
        return result
    return _dataset(ds, (bulk_threshold // 4) * 3, bulk_mark)


def _encodings(ds: Dataset) -> list[str]:
    # what Dataset.__getitem__ passes to the converters, as convert_value makes it a list
    found: str | MutableSequence[str] = ds.original_character_set or ds._character_set
    if not found:
        return [_LATIN1]
    return [found] if isinstance(found, str) else list(found)


def _dataset(ds: Dataset, inline_max: int, bulk_mark: BulkMark) -> dict[str, Any]:
    out: dict[str, Any] = {}
    encodings: list[str] | None = None
    for elem in list(ds.values()):
        tag = elem.tag
        key = f"{tag:08X}"
        if isinstance(elem, RawDataElement):
            vr = _raw_vr(elem)
            if vr == "SQ":
                out[key] = _sequence(_element(ds, tag), inline_max, bulk_mark)
                continue
            if vr is not None and (elem.value is not None or elem.length == 0):
                if encodings is None and vr in _TEXT_VRS:
                    encodings = _encodings(ds)
                try:
                    out[key] = _raw(elem, vr, encodings, inline_max, bulk_mark)
                    continue
                except _Slow:
                    pass
            out[key] = _pydicom(ds, tag, inline_max, bulk_mark)
        elif elem.VR == "SQ":
            out[key] = _sequence(elem, inline_max, bulk_mark)
        else:
            out[key] = _pydicom(ds, tag, inline_max, bulk_mark)
    return out


class Unrepresentable(ValueError):
    """An element pydicom cannot write as DICOM JSON: a value its VR does not allow (e.g. IS
    "abc", an empty number in a list, an empty person name in a list) or bytes it cannot
    read. Names the tag and VR, never the value."""

    def __init__(self, tag: int, vr: str) -> None:
        self.tag, self.vr = tag, vr
        super().__init__(
            f"({tag >> 16:04X},{tag & 0xFFFF:04X}) (VR {vr or '?'}) cannot be written as DICOM "
            "JSON: its value is not valid for its VR"
        )


def _element(ds: Dataset, tag: BaseTag) -> DataElement:
    """`ds[tag]`: pydicom's conversion of a raw element."""
    try:
        return ds[tag]
    except Exception as exc:
        raise Unrepresentable(int(tag), str(ds.get_item(tag).VR or "")) from exc


def _pydicom(ds: Dataset, tag: BaseTag, inline_max: int, bulk_mark: BulkMark) -> Any:
    """pydicom's path for one element, as `Dataset.to_json_dict` takes it."""
    elem = _element(ds, tag)
    try:
        return elem.to_json_dict(lambda e: bulk_mark(int(e.tag)), (inline_max // 3) * 4)
    except Exception as exc:
        raise Unrepresentable(int(tag), str(elem.VR)) from exc


def _sequence(elem: DataElement, inline_max: int, bulk_mark: BulkMark) -> dict[str, Any]:
    items = [_dataset(item, inline_max, bulk_mark) for item in elem.value]
    return {"vr": elem.VR, "Value": items}


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _raw_vr(raw: RawDataElement) -> str | None:
    """The VR the fast path can take as pydicom would (None: pydicom's path)."""
    vr = raw.VR
    tag = raw.tag
    if tag in _LUT_DESCRIPTORS:
        return None
    if vr is None:  # implicit VR: the dictionary's, for public tags
        if tag.is_private:
            return None
        vr = _dictionary_vr(tag)
        if vr is None:
            return None
    vr = str(vr)
    if vr == "SQ" or vr in _FAST or vr in _BINARY:
        return vr
    return None  # UN, ambiguous ("US or SS", ...), unknown


def _raw(
    raw: RawDataElement,
    vr: str,
    encodings: list[str] | None,
    inline_max: int,
    bulk_mark: BulkMark,
) -> dict[str, Any]:
    data: bytes = raw.value or b""
    if raw.length == 0 or not data:
        return {"vr": vr}
    if vr in _BINARY:
        if len(data) > inline_max:
            return {"vr": vr, "BulkDataURI": bulk_mark(int(raw.tag))}
        return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("utf-8")}
    values = _FAST[vr](data, vr, raw.is_little_endian, encodings)
    if values is None:
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _strings(items: list[str]) -> list[str] | None:
    """A single value counts only when not empty (pydicom: VM 0); several always."""
    if len(items) == 1:
        return items if items[0] else None
    return items


def _plain(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str] | None:
    # convert_string: multi_string(latin-1): trailing spaces and NULs cut, then split
    return _strings(data.decode(_LATIN1).rstrip(" \x00").split("\\"))


def _ae(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str] | None:
    return _strings([s.strip() for s in data.decode(_LATIN1).split("\\")])


def _ur(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str] | None:
    return _strings([data.decode(_LATIN1).rstrip()])


def _ui(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str] | None:
    items = data.decode(_LATIN1).rstrip("\0 ").rstrip(" \x00").split("\\")
    for item in items:  # UID(): validated (warns otherwise), then stripped
        if item and (len(item) > 64 or not _UID.fullmatch(item)):
            raise _Slow
    return _strings(items)


def _decode(data: bytes, encodings: list[str] | None) -> str:
    # charset.decode_bytes without escape sequences: the first encoding, or pydicom's path
    if _ESC in data or not encodings:
        raise _Slow
    try:
        return data.decode(encodings[0])
    except (LookupError, UnicodeError):
        raise _Slow from None


def _text(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str] | None:
    # convert_text: decoded, split, each value validated (length) then NULs/spaces cut
    limit = _TEXT_MAX[vr]
    values = _decode(data, encodings).split("\\")
    if limit and any(len(v) > limit for v in values):
        raise _Slow
    return _strings([v.rstrip("\0 ") for v in values])


def _single_text(
    data: bytes, vr: str, little: bool, encodings: list[str] | None
) -> list[str] | None:
    # convert_single_string: not split; validated (length), then NULs/spaces cut
    limit = _SINGLE_TEXT_MAX[vr]
    value = _decode(data, encodings)
    if limit and len(value) > limit:
        raise _Slow
    return _strings([value.rstrip("\0 ")])


def _pn(
    data: bytes, vr: str, little: bool, encodings: list[str] | None
) -> list[dict[str, str]] | None:
    # convert_PN: NULs/spaces cut, decoded, split; PersonName(str) keeps the '=' groups less
    # the empty ones at the end; to_json_dict names the first three
    text = _decode(data.rstrip(b"\x00 "), encodings)
    if not text.isascii() or not encodings or len(encodings) > 1 or encodings[0] in _CUSTOM:
        raise _Slow  # PersonName re-encodes the groups, which may warn: pydicom's path
    values = text.split("\\")
    if len(values) == 1 and not values[0]:
        return None
    out = []
    for value in values:
        groups = value.split("=")
        if len(groups) > 3 or any(len(g) > 64 for g in groups):
            raise _Slow  # validation warns
        while groups and not groups[-1]:
            groups.pop()
        if not groups:
            raise _Slow  # an empty name: pydicom's path (no value, or an error in a list)
        name = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            name["Ideographic"] = groups[1]
        if len(groups) > 2:
            name["Phonetic"] = groups[2]
        out.append(name)
    return out


def _ds(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[float] | None:
    # convert_DS_string: stripped, multi_string, DSfloat (float()); JSON: float()
    items = data.decode(_LATIN1).strip().rstrip(" \x00").split("\\")
    if len(items) == 1 and not items[0]:
        return None
    out = []
    for item in items:
        try:  # float() refuses '' and ' ' (pydicom's JSON then fails: its path)
            out.append(float(item))
        except ValueError:
            raise _Slow from None
    return out


def _is(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[int] | None:
    # convert_IS_string: multi_string, IS() validates (warns) then int(); JSON: int()
    items = data.decode(_LATIN1).rstrip(" \x00").split("\\")
    if len(items) == 1 and not items[0]:
        return None
    for item in items:
        if len(item) > 12 or not _IS.fullmatch(item):
            raise _Slow
    return [int(item) for item in items]


def _numbers(
    data: bytes, vr: str, little: bool, encodings: list[str] | None
) -> list[int] | list[float]:
    size = struct.calcsize("=" + _NUMBERS[vr])
    if len(data) % size:
        raise _Slow  # BytesLengthException in pydicom
    values = struct.unpack(f"{'<' if little else '>'}{len(data) // size}{_NUMBERS[vr]}", data)
    if vr in _INTEGERS:
        return [int(v) for v in values]
    return [float(v) for v in values]


def _at(data: bytes, vr: str, little: bool, encodings: list[str] | None) -> list[str]:
    if len(data) % 4:
        raise _Slow  # pydicom warns and cuts
    values = struct.unpack(f"{'<' if little else '>'}{len(data) // 2}H", data)
    return [f"{values[i]:04X}{values[i + 1]:04X}" for i in range(0, len(values), 2)]


_Converter = Callable[[bytes, str, bool, "list[str] | None"], Any]
_FAST: dict[str, _Converter] = {
    **dict.fromkeys(_PLAIN, _plain),
    "AE": _ae,
    "UR": _ur,
    "UI": _ui,
    **dict.fromkeys(_TEXT_MAX, _text),
    **dict.fromkeys(_SINGLE_TEXT_MAX, _single_text),
    "PN": _pn,
    "DS": _ds,
    "IS": _is,
    **dict.fromkeys(_NUMBERS, _numbers),
    "AT": _at,
}
_TEXT_VRS = frozenset({*_TEXT_MAX, *_SINGLE_TEXT_MAX, "PN"})
