"""Encode a de-identified dataset's header to bytes quickly (pure: bytes in memory, no I/O).

`apply` passes kept elements through as pydicom `RawDataElement`s; pydicom's writer handles
them, but spends most of its time on generic checks. Here raw elements in the output's own
encoding are written as tag + VR + length + the bytes as read; everything else goes through
`pydicom.filewriter.write_data_element`. The result is byte-identical to `Dataset.save_as(...,
enforce_file_format=True)` (tested), for little endian transfer syntaxes; callers fall back
to pydicom for anything else.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, PersonName

UNDEFINED_LENGTH = 0xFFFFFFFF
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_PREAMBLE = b"\x00" * 128 + b"DICM"
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_TEXT_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)


def _raw_element(raw: RawDataElement, implicit: bool) -> bytes | None:
    """tag + VR + length + value for a raw element already in the target encoding."""
    value = raw.value
    if value is None or not raw.is_little_endian or raw.is_implicit_VR != implicit:
        return None
    undefined = raw.length == UNDEFINED_LENGTH
    length = UNDEFINED_LENGTH if undefined else len(value)
    group, element = raw.tag >> 16, raw.tag & 0xFFFF
    tail = _SEQUENCE_DELIMITER if undefined else b""
    if implicit:
        return struct.pack("<HHI", group, element, length) + value + tail
    vr = raw.VR
    if vr is None or len(vr) != 2:
        return None
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode("ascii"), 0, length) + value + tail
    if undefined or length > 0xFFFF:
        return None  # pydicom's rules (e.g. UN for oversized values) apply
    return struct.pack("<HH2sH", group, element, vr.encode("ascii"), length) + value


def _header(tag: int, vr: str, length: int, implicit: bool) -> bytes | None:
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHI", group, element, length)
    if vr in _LONG_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode("ascii"), 0, length)
    if length > 0xFFFF:
        return None
    return struct.pack("<HH2sH", group, element, vr.encode("ascii"), length)


def header_bytes(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    """Tag, VR (explicit) and length of an element with a defined length."""
    head = _header(tag, vr, length, implicit)
    if head is None:
        raise ValueError(f"a value of {length} bytes does not fit a {vr} element")
    return head


def encode_data_element(elem: DataElement, implicit: bool, encodings: Any) -> bytes:
    """One new element as `encode_elements` writes it (little endian)."""
    data = _data_element(elem, implicit, encodings)
    if data is not None:
        return data
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_data_element(fp, elem, encodings)
    return bytes(fp.getvalue())


def _ascii_text(value: Any) -> str | None:
    """The '\\'-joined text of a str / PersonName value (or a list of them) if plain ASCII."""
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    parts: list[str] = []
    for item in items:
        if isinstance(item, str | PersonName):
            text = str(item)
        else:
            return None
        if not text.isascii():
            return None
        parts.append(text)
    return "\\".join(parts)


def _data_element(elem: DataElement, implicit: bool, encodings: Any) -> bytes | None:
    """Common new elements (text, UIDs, empty values, sequences) without pydicom's writer;
    None for anything else (the caller uses pydicom)."""
    vr = str(elem.VR)
    value = elem.value
    if vr == "SQ":
        return _sequence(elem, implicit, encodings)
    if (
        value is None
        or (value == "" and vr in _TEXT_VRS)
        or (isinstance(value, MultiValue | list | tuple) and not value)
    ):
        return _header(elem.tag, vr, 0, implicit)
    if vr not in _TEXT_VRS or (vr in ("DS", "IS") and not _all_str(value)):
        return None
    text = _ascii_text(value)
    if text is None:
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    head = _header(elem.tag, vr, len(data), implicit)
    return None if head is None else head + data


def _all_str(value: Any) -> bool:
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return all(type(item) is str for item in items)


def _sequence(elem: DataElement, implicit: bool, encodings: Any) -> bytes | None:
    parts: list[bytes] = []
    for item in elem.value:
        item_encodings = item.get("SpecificCharacterSet") or encodings
        body = encode_elements(
            item, sorted(item.keys()), implicit=implicit, encodings=item_encodings
        )
        if item.is_undefined_length_sequence_item:
            parts.append(_ITEM + struct.pack("<I", UNDEFINED_LENGTH) + body + _ITEM_DELIMITER)
        else:
            parts.append(_ITEM + struct.pack("<I", len(body)) + body)
    content = b"".join(parts)
    if elem.is_undefined_length:
        head = _header(elem.tag, "SQ", UNDEFINED_LENGTH, implicit)
        return None if head is None else head + content + _SEQUENCE_DELIMITER
    head = _header(elem.tag, "SQ", len(content), implicit)
    return None if head is None else head + content


def encode_elements(ds: Dataset, tags: list[Any], *, implicit: bool, encodings: Any) -> bytes:
    """The encoding of `ds`'s elements `tags` (in the order given), little endian."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    for tag in tags:
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written
        elem = ds.get_item(tag, keep_deferred=True)
        data: bytes | None
        if isinstance(elem, RawDataElement):
            data = _raw_element(elem, implicit)
            if data is None:
                elem = ds[tag]  # decoded (and read, if deferred) for pydicom's writer
        if isinstance(elem, DataElement):
            data = _data_element(elem, implicit, encodings)
        if data is not None:
            fp.write(data)
        else:
            write_data_element(fp, elem, encodings)
    return bytes(fp.getvalue())


def encode_file_meta(meta: FileMetaDataset) -> bytes:
    """Preamble, prefix and File Meta Information (group length computed), as pydicom writes
    it with `enforce_file_format=True`. `meta` is completed in place (version, class UID)."""
    validate_file_meta(meta, enforce_standard=True)
    tags = [t for t in sorted(meta.keys()) if t != 0x00020000]
    body = encode_elements(meta, tags, implicit=False, encodings=None)
    length = DataElement(0x00020000, "UL", len(body))
    meta[0x00020000] = length
    return _PREAMBLE + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body
