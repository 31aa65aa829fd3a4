"""The stored DICOM JSON of a collection instance (`hub.collections.raw_json`, computed from
the raw elements) is exactly what pydicom's `Dataset.to_json_dict` makes of the same file:
the same text after `dicom_json.dumps` and the same warnings; where pydicom raises, an
`Unrepresentable` error naming the element (the hub quarantines the instance). Data sets are
written byte by byte (hypothesis), so that values can be anything a sender might put in a
file: every VR, several values, empty values, padding, invalid numbers and UIDs, over-long
text, escape sequences and non-ASCII bytes under several character sets, private tags, nested
sequences of defined and undefined length, implicit VR and big endian; some elements already
converted before (as verification and the index columns do). And the same on the test
factories' instances, identified and de-identified."""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom._dicom_dict import DicomDictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from deidentify import Profile, PseudonymKeys, apply
from hub.collections import dicom_json
from hub.collections.levels import (
    BULK_MARK,
    BULK_THRESHOLD,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    json_without_bulk,
    subset,
)
from hub.collections.raw_json import Unrepresentable
from tests.factories.canary import canary_instance
from tests.factories.collections import deidentified_study, part10

_LONG_LENGTH = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
_SKIP = {0x00080005, 0x00281101, 0x00281102, 0x00281103, 0x00283002}


def _public_tags(vr: str, count: int = 2) -> list[int]:
    found = [
        tag
        for tag, (tag_vr, _vm, _name, retired, _kw) in sorted(DicomDictionary.items())
        if tag_vr == vr and not retired and 0x0008 <= tag >> 16 < 0x7FE0 and tag not in _SKIP
    ]
    return found[:count]


_STRING_VRS = ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
               "UC", "UI", "UR", "UT"]  # fmt: skip
_NUMBER_VRS = ["AT", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"]
_BINARY_VRS = ["OB", "OD", "OF", "OL", "OV", "OW", "UN"]
_TAGS = {vr: _public_tags(vr) for vr in _STRING_VRS + _NUMBER_VRS + _BINARY_VRS + ["SQ"]}
_TAGS = {vr: tags for vr, tags in _TAGS.items() if tags}

_PIECES = [
    b"A", b"z", b"Q", b"0", b"1", b"9", b" ", b"  ", b"\\", b"\x00", b".", b"-", b"+", b"e",
    b"E", b"=", b"^", b"\t", b"\r\n", b"_", b"nan", b"1.2.840", b"20240131", b"12345678901234567",
    b"\xe9", b"\xc3\xa9", b"\xff", b"\x1b$B", b"\x1b(B", b"\x1b-A", b"$B", b"\x1c",
]  # fmt: skip
_VALUES = [b"1", b"2.5", b"-3", b" 4 ", b"+07", b"1.2.3", b"0", b"1e3", b"", b"1.2.840.10008.1",
           b"A^B", b"A^B=C^D", b"=X", b"A==P", b"A^B^C^D^E", b"CHEST ", b" ", b"\x00 ",
           b"  AE ", b"A=B=C=D", b"X" * 65 + b"=Y"]  # fmt: skip
_CHARSETS = [None, b"ISO_IR 100", b"ISO_IR 192", b"ISO_IR 6", b"ISO 2022 IR 87",
             b"ISO_IR 100\\ISO 2022 IR 87", b"GB18030", b"ISO_IR 13", b"NOT A CHARSET"]  # fmt: skip

text_values = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=14).map(b"".join),
    st.binary(max_size=80),
    st.integers(0, 80).map(lambda n: b"ABCDEFGHIJ" * (n // 10) + b"x" * (n % 10)),
    st.lists(st.sampled_from(_VALUES), min_size=1, max_size=4).map(b"\\".join),
    st.sampled_from([12, 13, 16, 17, 64, 65, 1024, 1025, 10240, 10241]).map(lambda n: b"7" * n),
)
number_values = st.one_of(st.binary(max_size=26), st.integers(0, 6).map(lambda n: b"\x00" * n))
binary_values = st.one_of(
    st.binary(max_size=40), st.integers(700, 1100).map(lambda n: (bytes(range(256)) * 5)[:n])
)


@st.composite
def element(draw: st.DrawFn, depth: int) -> tuple[int, str, Any]:
    kinds = ["string"] * 5 + ["number"] * 2 + ["binary", "private"] + (["sq"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "sq":
        items = draw(st.lists(dataset_items(depth + 1), max_size=3))
        return draw(st.sampled_from(_TAGS["SQ"])), "SQ", items
    if kind == "private":
        vr = draw(st.sampled_from(["LO", "SH", "DS", "IS", "US", "UL", "OB", "UN", "PN", "CS"]))
        value = draw(number_values if vr in ("US", "UL") else text_values)
        return 0x00091000 | draw(st.integers(1, 8)), vr, value
    vr = draw(st.sampled_from([v for v in (
        _STRING_VRS if kind == "string" else _NUMBER_VRS if kind == "number" else _BINARY_VRS
    ) if v in _TAGS]))  # fmt: skip
    values = {"string": text_values, "number": number_values}.get(kind, binary_values)
    return draw(st.sampled_from(_TAGS[vr])), vr, draw(values)


@st.composite
def dataset_items(draw: st.DrawFn, depth: int = 0) -> list[tuple[int, str, Any]]:
    elements = draw(st.lists(element(depth), max_size=8 if depth else 14))
    charset = draw(st.sampled_from(_CHARSETS)) if depth == 0 or draw(st.booleans()) else None
    if charset is not None:
        elements.append((0x00080005, "CS", charset))
    if any(tag >> 16 == 0x0009 for tag, _, _ in elements):
        elements.append((0x00090010, "LO", b"HEXCHANGE TEST"))
    unique = {tag: (tag, vr, value) for tag, vr, value in elements}
    return [unique[tag] for tag in sorted(unique)]


def _encode(
    elements: list[tuple[int, str, Any]], implicit: bool, little: bool, undefined: bool
) -> bytes:
    end = "<" if little else ">"
    out = b""
    for tag, vr, value in elements:
        if vr == "SQ":
            body = b""
            for item in value:
                content = _encode(item, implicit, little, undefined)
                if undefined:
                    body += struct.pack(f"{end}HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + content
                    body += struct.pack(f"{end}HHL", 0xFFFE, 0xE00D, 0)
                else:
                    body += struct.pack(f"{end}HHL", 0xFFFE, 0xE000, len(content)) + content
            if undefined:
                body += struct.pack(f"{end}HHL", 0xFFFE, 0xE0DD, 0)
            length = 0xFFFFFFFF if undefined else len(body)
            value = body
        else:
            length = len(value)
        head = struct.pack(f"{end}HH", tag >> 16, tag & 0xFFFF)
        if implicit:
            head += struct.pack(f"{end}L", length)
        elif vr in _LONG_LENGTH:
            head += vr.encode() + b"\x00\x00" + struct.pack(f"{end}L", length)
        else:
            head += vr.encode() + struct.pack(f"{end}H", length)
        out += head + value
    return out


def _part10(body: bytes, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    meta.TransferSyntaxUID = UID(syntax)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + fp.getvalue() + body


def _pydicom_json(ds: Dataset) -> dict[str, Any]:
    """The stored JSON before `raw_json`: pydicom's `to_json_dict` with the hub's bulk mark."""
    result: dict[str, Any] = ds.to_json_dict(
        BULK_THRESHOLD, lambda elem: f"{BULK_MARK}{int(elem.tag):08X}"
    )
    return result


def _outcome(
    data: bytes, touched: list[int], convert: Callable[[Dataset], dict[str, Any]]
) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dcmread(io.BytesIO(data))
        for tag in touched:  # as verification and the index columns convert some first
            if tag in ds:
                with contextlib.suppress(Exception):  # the same on both sides
                    ds[tag]
        try:
            result: Any = dicom_json.dumps(convert(ds))
        except Unrepresentable as exc:
            result = ("refused", f"{exc.tag:08X}")
        except Exception:
            result = ("refused", "")
    # pydicom's warnings; a ResourceWarning is another test's object collected meanwhile
    return result, [str(w.message) for w in caught if w.category is not ResourceWarning]


def _same(data: bytes, touched: list[int] = []) -> None:  # noqa: B006
    """The same text and warnings; where pydicom fails, `Unrepresentable` naming a tag."""
    before = _outcome(data, touched, _pydicom_json)
    after = _outcome(data, touched, json_without_bulk)
    if isinstance(before[0], tuple):
        assert isinstance(after[0], tuple) and after[0][1], "refused, naming the element"
        after = (before[0], after[1])
    assert after == before


syntaxes = st.sampled_from([
    (ExplicitVRLittleEndian, False, True),
    (ImplicitVRLittleEndian, True, True),
    (ExplicitVRBigEndian, False, False),
])  # fmt: skip


@settings(
    max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
@given(
    items=dataset_items(),
    syntax=syntaxes,
    undefined=st.booleans(),
    touched=st.lists(st.sampled_from(sorted({t for ts in _TAGS.values() for t in ts})), max_size=4),
)
def test_the_json_is_pydicoms_for_any_dataset(
    items: list[tuple[int, str, Any]], syntax: tuple[str, bool, bool], undefined: bool,
    touched: list[int],
) -> None:  # fmt: skip
    uid, implicit, little = syntax
    _same(_part10(_encode(items, implicit, little, undefined), uid), touched)
    # element by element too: an error anywhere makes the whole data set's outcome that error
    context = [e for e in items if e[0] in (0x00080005, 0x00090010)]
    for alone in items:
        if alone not in context:
            one = sorted([*context, alone])
            _same(_part10(_encode(one, implicit, little, undefined), uid), touched)


def test_the_json_is_pydicoms_for_the_factories_instances() -> None:
    made = deidentified_study(2)
    canary = canary_instance().ds  # a marker in every attribute of PS3.15 Table E.1-1
    shared = apply(canary, Profile.from_names(["retain-long-full-dates"]), PseudonymKeys(b"k" * 32))
    files = [*made.files, *(part10(ds) for ds in made.originals), part10(canary)]
    files.append(part10(shared.dataset))
    for data in files:
        _same(data)
        _same(data, [0x00120064, 0x00100010, 0x00200013])
        whole = json_without_bulk(dcmread(io.BytesIO(data)))
        for keywords in (STUDY_KEYWORDS, SERIES_KEYWORDS):  # the study and series rows' JSON
            ds, part = dcmread(io.BytesIO(data)), Dataset()
            for keyword in keywords:
                if keyword in ds:
                    part[Tag(keyword)] = ds[keyword]
            assert subset(whole, keywords) == dicom_json.dumps(_pydicom_json(part)).decode()


_EDGES = [
    b" ", b"\x00", b"  AE ", b"A\\", b"\\", b"\\\\", b" \\ ", b"1\\\\2", b"1\\ \\2", b"\t", b"\t1",
    b"7" * 12, b"7" * 13, b"-" + b"7" * 11, b"+7 ", b"1.5", b"1e400", b"nan", b"inf", b"1_0",
    b"7" * 16, b"7" * 17, b"7" * 64, b"7" * 65, b"7" * 1024, b"7" * 1025, b"7" * 10240,
    b"7" * 10241, b"1.2.3\x00", b"1.02.3", b" 1.2", b"1.2 ", b"A=B=C", b"A=B=C=D", b"=B", b"==",
    b"A==", b"A\\=B", b"X" * 64 + b"=Y", b"X" * 65, b"\xe9", b"\x1b$B", b"A\r\nB", b"\x1cA\x1c",
]  # fmt: skip


def test_the_json_is_pydicoms_at_the_edges() -> None:
    """Lengths at each VR's limit, padding, empty values in lists, numbers pydicom refuses."""
    for charset in (None, b"ISO_IR 192"):
        context = [(0x00080005, "CS", charset)] if charset else []
        for vr in _STRING_VRS:
            for value in _EDGES:
                one = sorted([*context, (_TAGS[vr][0], vr, value)])
                _same(_part10(_encode(one, False, True, False), ExplicitVRLittleEndian))
