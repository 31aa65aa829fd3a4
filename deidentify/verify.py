"""Verify a de-identified dataset against its original, independently of `engine.apply`.

`verify` re-derives what must not survive from the original and the profile (the same
Table E.1-1 policy, but none of apply's code paths) and inspects the output:

* ``removed-attribute-present``: an attribute the profile removes (X) is present, at any depth,
  including private attributes that are not TCIA-safe under Retain Safe Private and curves.
* ``identifying-value-present``: an identifying value of the original (patient name in every PN
  form, IDs, accession, birth date, address, telephone, other IDs and names, institution and
  physician/operator names, device names - unless an option retains that attribute) occurs in
  the bytes of any element of the output, inside sequences too; pixel data is not scanned.
* ``uid-not-remapped``: an instance UID of the original occurs in the output (unless
  Retain UIDs).
* ``identity-not-marked``: Patient Identity Removed is not YES.

Findings name the attribute (tag, keyword) and its location (path) - never the value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from deidentify import hidden_bits
from deidentify.codestream import STRIPPED_SYNTAXES, CodestreamError, strip
from deidentify.identity import StudyIdentity
from deidentify.profile import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    Action,
    Option,
    Profile,
    is_non_instance_uid_keyword,
    is_private_creator_tag,
)
from deidentify.rawdicom import PIXEL_DATA, Fallback, RawElement, RawHeader, parse_output
from deidentify.verify_forms import flex_patterns, name_forms, text_forms
from deidentify.vrs import element_vr

if TYPE_CHECKING:
    from deidentify.recipe import Recipe

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_MIN_NEEDLE = 3

# keyword -> kind of identifying value: "name" (every PN form is searched), "id" (with any
# separators), "phone", "date" (every written form, in text), "text" (the value as it is).
# Any other PN attribute, at any depth, counts as "name".
_IDENTIFYING: dict[str, str] = {
    "PatientName": "name",
    "OtherPatientNames": "name",
    "PatientBirthName": "name",
    "PatientMotherBirthName": "name",
    "ResponsiblePerson": "name",
    "ReferringPhysicianName": "name",
    "PerformingPhysicianName": "name",
    "NameOfPhysiciansReadingStudy": "name",
    "PhysiciansOfRecord": "name",
    "RequestingPhysician": "name",
    "OperatorsName": "name",
    "PatientID": "id",
    "OtherPatientIDs": "id",
    "AccessionNumber": "id",
    "MedicalRecordLocator": "id",
    "AdmissionID": "id",
    "FillerOrderNumberImagingServiceRequest": "id",
    "PlacerOrderNumberImagingServiceRequest": "id",
    "PatientBirthDate": "date",
    "StudyDate": "date",
    "SeriesDate": "date",
    "AcquisitionDate": "date",
    "ContentDate": "date",
    "PatientAddress": "text",
    "PatientTelephoneNumbers": "phone",
    "InstitutionName": "text",
    "InstitutionAddress": "text",
    "InstitutionalDepartmentName": "text",
    "StationName": "text",
    "DeviceSerialNumber": "text",
}
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UR", "PN", "UN", "OB"})
IDENTIFYING_KEYWORDS = frozenset(_IDENTIFYING)


@dataclass(frozen=True)
class Finding:
    code: str
    tag: str  # "(gggg,eeee)"
    keyword: str
    path: str  # e.g. "ContentSequence[0].TextValue"
    message: str


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


_IDENTIFYING_TAGS: dict[int, str] = {
    int(tag_for_keyword(k) or 0): kind for k, kind in _IDENTIFYING.items()
}
_WORD = rb"[0-9A-Za-z]"


@functools.lru_cache(maxsize=8192)
def _keyword(tag: int) -> str:
    return str(keyword_for_tag(tag) or "")


@dataclass
class _Element:
    """One element of a dataset as verify sees it: never decoded unless needed."""

    tag: int
    vr: str
    elem: DataElement | RawDataElement
    prefix: str  # path of the enclosing item, e.g. "ContentSequence[0]."
    creators: dict[int, str]
    ds: Dataset  # the dataset (or sequence item) holding the element

    @property
    def path(self) -> str:
        return f"{self.prefix}{_keyword(self.tag) or _tag_text(self.tag)}"

    @property
    def nested(self) -> bool:
        return "[" in self.prefix

    def data(self) -> bytes:
        return _value_bytes(self.elem, self.ds)

    def uid_bytes(self) -> bytes:
        return _value_bytes(self.elem)  # deferred (large) values are not read for UIDs

    def values(self) -> list[Any]:
        return _decoded_values(self.ds[self.tag])


class _RawItem:
    """One element of a raw header (`rawdicom`) as verify sees it."""

    __slots__ = ("charset", "creators", "implicit", "nested", "prefix", "tag", "value", "vr")

    def __init__(
        self,
        tag: int,
        vr: str,
        value: bytes,
        prefix: str,
        creators: dict[int, str],
        implicit: bool,
        charset: bytes | None,  # the governing Specific Character Set value, None: the default
        nested: bool,
    ) -> None:
        self.tag, self.vr, self.value, self.prefix = tag, vr, value, prefix
        self.creators, self.implicit, self.charset, self.nested = (
            creators,
            implicit,
            charset,
            nested,
        )

    @property
    def path(self) -> str:
        return f"{self.prefix}{_keyword(self.tag) or _tag_text(self.tag)}"

    def data(self) -> bytes:
        return self.value

    def uid_bytes(self) -> bytes:
        return self.value

    def values(self) -> list[Any]:
        return list(_raw_decoded(self.tag, self.vr, self.value, self.implicit, self.charset))


_Item = _Element | _RawItem


@functools.lru_cache(maxsize=4096)
def _raw_decoded(
    tag: int, vr: str, value: bytes, implicit: bool, charset: bytes | None
) -> tuple[Any, ...]:
    """The values of an original's element as pydicom decodes them in its dataset."""
    if charset is None:
        codecs: Any = default_encoding
    else:
        charset_element = RawDataElement(
            BaseTag(0x00080005), "CS", len(charset), charset, 0, False, True
        )
        codecs = convert_encodings(convert_raw_data_element(charset_element).value)
    raw = RawDataElement(
        BaseTag(tag), None if implicit else vr, len(value), value, 0, implicit, True
    )
    return tuple(_decoded_values(convert_raw_data_element(raw, encoding=codecs)))


def _raw_walk(
    elements: list[RawElement], implicit: bool, prefix: str, charset: bytes | None
) -> Iterator[_RawItem]:
    """`_walk` over raw elements."""
    creators: dict[int, str] = {}
    for elem in elements:
        tag = elem.tag
        if tag == 0x00080005:
            charset = elem.value
        elif is_private_creator_tag(tag):
            text = elem.value.decode("latin-1").rstrip("\x00 ")
            creators[(tag >> 16 << 8) | (tag & 0xFF)] = text.strip()
    nested = "[" in prefix
    for elem in elements:
        found = _RawItem(elem.tag, elem.vr, elem.value, prefix, creators, implicit, charset, nested)
        yield found
        if elem.items is not None:
            for i, item in enumerate(elem.items):
                yield from _raw_walk(item.elements, implicit, f"{found.path}[{i}].", charset)


def _items(elem: DataElement | RawDataElement, ds: Dataset) -> list[Dataset]:
    if isinstance(elem, RawDataElement):
        elem = ds[elem.tag]  # sequences are decoded into their items (values stay raw)
    return list(elem.value or [])


def _walk(ds: Dataset, prefix: str = "") -> Iterator[_Element]:
    """Every element at every depth, in file order (tag order within a dataset)."""
    creators: dict[int, str] = {}
    tags = list(ds.keys())
    for tag in tags:
        if is_private_creator_tag(int(tag)):
            text = _text(ds.get_item(tag, keep_deferred=True))
            creators[(int(tag) >> 16 << 8) | (int(tag) & 0xFF)] = text.strip()
    for tag in tags:
        elem = ds.get_item(tag, keep_deferred=True)
        vr = element_vr(elem)
        found = _Element(int(tag), vr, elem, prefix, creators, ds)
        yield found
        if vr == "SQ":
            for i, item in enumerate(_items(elem, ds)):
                yield from _walk(item, f"{found.path}[{i}].")


def _all_elements(ds: Dataset) -> Iterator[_Element]:
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "file_meta.")
    yield from _walk(ds)


def _value_bytes(elem: DataElement | RawDataElement, ds: Dataset | None = None) -> bytes:
    """The element's value as bytes: raw bytes as read, or decoded values joined by '\\'."""
    value = elem.value
    if value is None and isinstance(elem, RawDataElement) and elem.length and ds is not None:
        value = ds[elem.tag].value  # deferred (large) value: read it to search it
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return "\\".join(str(v) for v in items).encode("utf-8", "replace")


def _text(elem: DataElement | RawDataElement) -> str:
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    if value is None:
        return ""
    return str(value)


def _split(data: bytes) -> list[bytes]:
    return [v for v in (p.strip(b"\x00 ") for p in data.split(b"\\")) if v]


@functools.lru_cache(maxsize=4096)
def _name_forms(value: str) -> frozenset[str]:
    forms: set[str] = set()
    for group in value.split("="):
        parts = [p.strip() for p in group.split("^") if p.strip()]
        if not parts:
            continue
        forms.add(group.strip())
        forms.update(parts)
        if len(parts) >= 2:
            family, given = parts[0], parts[1]
            forms |= {f"{given} {family}", f"{family} {given}", f"{family}, {given}"}
            forms.add(" ".join(parts[1:] + parts[:1]))
    return frozenset(forms)


def _codecs(ds: Dataset) -> list[str]:
    """Python codecs the output's text may be encoded with (utf-8 for decoded values)."""
    charset = ds.get_item(0x00080005, keep_deferred=True) if 0x00080005 in ds else None
    return list(_codecs_for(None if charset is None else _value_bytes(charset)))


@functools.lru_cache(maxsize=64)
def _codecs_for(charset: bytes | None) -> tuple[str, ...]:
    """Codecs for a Specific Character Set value (None: no such element)."""
    found = ["utf-8"]
    if charset is not None:
        terms = [t.decode("ascii", "replace") for t in _split(charset)]
        for codec in convert_encodings(terms or [""]):
            if codec not in found:
                found.append(codec)
    else:
        found.append("iso8859")
    return tuple(found)


# keyword -> (kind, original value) searched as a pattern: IDs, phones, dates
Flex = dict[str, set[tuple[str, str]]]


@functools.lru_cache(maxsize=4096)
def _name_needles(text: str) -> frozenset[str]:
    return frozenset(v for v in _name_forms(text) | name_forms(text) if _long_name(v))


def _long_name(form: str) -> bool:
    """A name form worth searching: 3+ letters (2+ for CJK); "Dr." or an initial is not."""
    letters = [c for c in form if c.isalnum()]
    return len(letters) >= (2 if any(ord(c) >= 0x2E80 for c in letters) else _MIN_NEEDLE)


def _retained(profile: Profile, tag: int, vr: str) -> bool:
    """Kept as it is by an option or the site recipe (an attribute the table does not list,
    such as a rare PN attribute, is not retained: its value still counts as identity)."""
    if profile.action_for(tag, vr=vr) is not Action.K:
        return False
    return profile.raw_action_for(tag) is not None or tag in profile.override_map


def _from_original(
    elements: Iterable[_Item], profile: Profile, identity: StudyIdentity | None = None
) -> tuple[dict[str, set[str]], Flex, set[bytes]]:
    """One pass over the original: (keyword -> identifying values that must not appear in the
    output as written, keyword -> values searched in all their written forms, instance UIDs
    that must not survive). `identity` adds the rest of the study's values."""
    needles: dict[str, set[str]] = {}
    flex: Flex = {}
    uids: set[bytes] = set()

    def add(keyword: str, kind: str, text: str) -> None:
        if kind == "name":
            values = set(_name_needles(text))
        elif kind == "text":
            values = {v for v in text_forms(text) if len(v) >= _MIN_NEEDLE}
        else:
            values = {text} if len(text) >= _MIN_NEEDLE else set()
            if kind in ("id", "phone", "date"):
                flex.setdefault(keyword, set()).add((kind, text))
        if values:
            needles.setdefault(keyword, set()).update(values)

    for item in elements:
        if item.vr == "UI":
            keyword = _keyword(item.tag)
            if is_non_instance_uid_keyword(keyword):
                continue
            if item.tag >> 16 == 0x0002 and keyword != "MediaStorageSOPInstanceUID":
                continue
            uids.update(u for u in _split(item.uid_bytes()) if not u.startswith(b"1.2.840.10008."))
            continue
        kind = _IDENTIFYING_TAGS.get(item.tag) or ("name" if item.vr == "PN" else None)
        if kind is None or item.vr == "SQ" or item.tag >> 16 == 0x0002 or (item.tag >> 16) % 2:
            continue
        if _retained(profile, item.tag, item.vr):
            continue  # retained by an option or the site recipe (e.g. institution identity)
        for text in (str(v).strip() for v in item.values()):
            if text:
                add(_keyword(item.tag), kind, text)
    for keyword, text in sorted(identity.by_keyword) if identity is not None else ():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        vr = str(dictionary_VR(tag))
        kind = _IDENTIFYING_TAGS.get(tag) or ("name" if vr == "PN" else None)
        if kind is not None and not _retained(profile, tag, vr):
            add(keyword, kind, text)
    return needles, flex, uids


def _decoded_values(elem: DataElement) -> list[Any]:
    value = elem.value
    if value is None:
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _needle_pattern(
    needles: dict[str, set[str]], codecs: list[str]
) -> tuple[re.Pattern[bytes] | None, dict[bytes, set[str]]]:
    """One case-insensitive pattern for every needle in every codec, and needle -> sources."""
    key = tuple(sorted((k, tuple(sorted(v))) for k, v in needles.items()))
    return _cached_needle_pattern(key, tuple(codecs))


@functools.lru_cache(maxsize=256)
def _cached_needle_pattern(
    needles: tuple[tuple[str, tuple[str, ...]], ...], codecs: tuple[str, ...]
) -> tuple[re.Pattern[bytes] | None, dict[bytes, set[str]]]:
    sources: dict[bytes, set[str]] = {}
    for keyword, values in needles:
        for value in values:
            for codec in codecs:
                try:
                    encoded = value.encode(codec)
                except (UnicodeEncodeError, LookupError):
                    continue
                sources.setdefault(encoded.lower(), set()).add(keyword)
    if not sources:
        return None, sources
    searched = _without_redundant(sources)
    alternation = b"|".join(re.escape(v) for v in sorted(searched, key=len, reverse=True))
    pattern = re.compile(
        rb"(?<!" + _WORD + rb")(?:" + alternation + rb")(?!" + _WORD + rb")", re.IGNORECASE
    )
    return pattern, sources


def _without_redundant(needles: Iterable[bytes]) -> list[bytes]:
    """The needles minus those holding a shorter needle as a whole word ("dulcinea quixote"
    holds "quixote"): whatever the longer one matches, the shorter one matches too, and the
    search costs grow with the number of needles."""
    kept: list[bytes] = []
    for needle in sorted(set(needles), key=len):
        if not any(_holds_word(needle, shorter) for shorter in kept):
            kept.append(needle)
    return kept


def _holds_word(text: bytes, word: bytes) -> bool:
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before = text[start - 1 : start] if start else b""
        after = text[end : end + 1]
        if not (before.isalnum() and before.isascii()) and not (
            after.isalnum() and after.isascii()
        ):
            return True
        start = text.find(word, start + 1)
    return False


def verify(
    original: Dataset,
    output: Dataset,
    profile: Profile,
    recipe: Recipe | None = None,
    *,
    identity: StudyIdentity | None = None,
) -> list[Finding]:
    """Check `output` (the de-identified `original`) against `profile` (and the site recipe it
    was made with: attributes the recipe keeps are neither "removed" nor searched for); [] when
    clean."""
    if recipe is not None:
        profile = recipe.apply_to(profile)
    sop_class = str(original.get("SOPClassUID", "") or "") or None
    marked = str(output.get("PatientIdentityRemoved", "")).upper() == "YES"
    return _check(
        _all_elements(original),
        _all_elements(output),
        _codecs(output),
        marked,
        profile,
        sop_class,
        identity,
    )


def _check(
    original: Iterable[_Item],
    output: Iterable[_Item],
    codecs: list[str],
    marked: bool,
    profile: Profile,
    sop_class: str | None,
    identity: StudyIdentity | None = None,
) -> list[Finding]:
    """The checks of `verify` on the elements of the original and of the output."""
    findings: list[Finding] = []
    needles, flex, original_uids = _from_original(original, profile, identity)
    pattern, sources = _needle_pattern(needles, codecs)
    flex_key = tuple(sorted((k, tuple(sorted(v))) for k, v in flex.items()))
    flexible = flex_patterns(flex_key, tuple(codecs))
    old_uids = set() if profile.has(Option.RETAIN_UIDS) else original_uids
    vocabulary = _marker_vocabulary(profile)

    def finding(code: str, item: _Item, message: str) -> None:
        keyword = _keyword(item.tag)
        name = keyword or _tag_text(item.tag)
        findings.append(Finding(code, _tag_text(item.tag), keyword, item.path, f"{name} {message}"))

    # One pass over the output; text is searched in one buffer, attributed only on a hit.
    chunks: list[bytes] = []
    owners: list[_Item] = []
    texts: list[bytes] = []  # text values, searched for IDs, phones and dates in any form
    text_owners: list[_Item] = []
    for item in output:
        tag = item.tag
        private = (tag >> 16) & 1
        if tag & 0xFFFF and not (private and 0x0010 <= (tag & 0xFFFF) <= 0x00FF):
            creator = item.creators.get((tag >> 16 << 8) | ((tag >> 8) & 0xFF)) if private else None
            action = profile.action_for(
                tag,
                vr=item.vr,
                private_creator=creator,
                sop_class_uid=None if item.nested else sop_class,  # Types: top level only
            )
            if action is Action.X:
                finding("removed-attribute-present", item, "is removed by the profile but present")
        if tag in _PIXEL_TAGS or item.vr == "SQ":
            continue
        data = item.data()
        if not data:
            continue
        if _is_marker_vocabulary(item, data, vocabulary):
            continue  # the profile's own fixed words, not patient data
        if item.vr == "UI" and old_uids and old_uids.intersection(_split(data)):
            finding("uid-not-remapped", item, "still holds a UID of the original")
        chunks.append(data)
        owners.append(item)
        if item.vr in _TEXT_VRS:
            texts.append(data)
            text_owners.append(item)

    if texts and flexible.any_hit(b"\x00".join(texts)):
        for data, item in zip(texts, text_owners, strict=True):
            for keyword in flexible.hits(data):
                finding("identifying-value-present", item, f"contains the original {keyword}")
    if pattern is not None:
        for data, item in zip(chunks, owners, strict=True) if _any_hit(pattern, chunks) else ():
            hits = {m.group(0).lower() for m in pattern.finditer(data)}
            for source in sorted(set().union(*(sources[h] for h in hits)) if hits else ()):
                finding("identifying-value-present", item, f"contains the original {source}")
    if not marked:
        findings.append(
            Finding(
                "identity-not-marked",
                "(0012,0062)",
                "PatientIdentityRemoved",
                "PatientIdentityRemoved",
                "PatientIdentityRemoved is not YES",
            )
        )
    return findings


_CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080104})  # value, scheme, meaning


def _marker_vocabulary(profile: Profile) -> frozenset[bytes]:
    """Every value the de-identification markers may hold for this profile. A patient named,
    say, "Basic" or "Patient" would otherwise be "found" in them."""
    words = {*profile.method_values(), "DCM", *BASIC_PROFILE_CODE}
    for code in OPTION_CODES.values():
        words.update(code)
    return frozenset(w.encode() for w in words)


def _is_marker_vocabulary(item: _Item, data: bytes, vocabulary: frozenset[bytes]) -> bool:
    """A DeidentificationMethod value, or a code in DeidentificationMethodCodeSequence, that is
    exactly one of the profile's own words (anything else is searched like any element)."""
    is_method = item.tag == 0x00120063 and not item.prefix
    is_code = item.tag in _CODE_TAGS and item.prefix.startswith(
        "DeidentificationMethodCodeSequence["
    )
    return (is_method or is_code) and all(
        v.strip(b" \x00") in vocabulary for v in data.split(b"\\")
    )


def verify_raw(
    original: RawHeader,
    header: bytes,
    tail: bytes,
    profile: Profile,
    recipe: Recipe | None = None,
    *,
    identity: StudyIdentity | None = None,
) -> list[Finding]:
    """`verify` for the fast header path: `original` is the input's parsed header, `header` the
    output's bytes up to and including the Pixel Data element's tag and length, `tail` the bytes
    after Pixel Data. The output is parsed again from these bytes and every element is checked
    as `verify` checks it; Pixel Data, which is copied from the input, must be declared with the
    input's VR and length, right at the end of `header`. An output that cannot be parsed is a
    finding."""
    if recipe is not None:
        profile = _recipe_profile(recipe, profile)
    try:
        out = parse_output(header, tail, original.implicit)
    except Fallback as exc:
        return [Finding("unparseable-output", "", "", "", f"output header: {exc}")]
    findings: list[Finding] = []
    if out.pixel.vr != original.pixel.vr or out.pixel.length != original.pixel.length:
        findings.append(
            Finding(
                "pixel-data-changed",
                _tag_text(PIXEL_DATA),
                "PixelData",
                "PixelData",
                "PixelData is not declared as the input's",
            )
        )
    top = _charset_of(original.elements)
    sop_class_value = next(
        (
            _raw_decoded(e.tag, e.vr, e.value, original.implicit, top)
            for e in original.elements
            if e.tag == 0x00080016
        ),
        (),
    )
    sop_class = (str(sop_class_value[0] or "") if len(sop_class_value) == 1 else "") or None
    marked_value = next((e.value for e in out.elements if e.tag == 0x00120062), b"")
    marked = marked_value.decode("ascii", "replace").rstrip("\x00 ").upper() == "YES"
    out_charset = next((e.value for e in out.elements if e.tag == 0x00080005), None)

    def elements(header: RawHeader) -> Iterator[_RawItem]:
        pixel = RawElement(PIXEL_DATA, header.pixel.vr or "OB", b"")
        yield from _raw_walk(header.meta, False, "file_meta.", None)
        yield from _raw_walk([*header.elements, pixel, *header.tail], header.implicit, "", None)

    return findings + _check(
        elements(original),
        elements(out),
        list(_codecs_for(out_charset)),
        marked,
        profile,
        sop_class,
        identity,
    )


def _charset_of(elements: list[RawElement]) -> bytes | None:
    return next((e.value for e in elements if e.tag == 0x00080005), None)


@functools.lru_cache(maxsize=64)
def _recipe_profile(recipe: Recipe, profile: Profile) -> Profile:
    return recipe.apply_to(profile)


def _any_hit(pattern: re.Pattern[bytes], chunks: list[bytes]) -> bool:
    # NUL separators: a needle never spans two elements, word boundaries hold at the edges.
    return pattern.search(b"\x00".join(chunks)) is not None


def verify_output(output: Dataset, profile: Profile) -> list[Finding]:
    """Check a de-identified dataset on its own, without its original (the hub's second check
    of what a site sends to a research collection): ``removed-attribute-present`` and
    ``identity-not-marked`` as `verify` finds them. Values of the original cannot be searched
    for here; that check is the sending agent's (`verify`)."""
    sop_class = str(output.get("SOPClassUID", "") or "") or None
    marked = str(output.get("PatientIdentityRemoved", "")).upper() == "YES"
    findings = _check((), _all_elements(output), _codecs(output), marked, profile, sop_class)
    return [*findings, *_hidden_bits_findings(output), *_codestream_findings(output)]


def _hidden_bits_findings(output: Dataset) -> list[Finding]:
    """``pixel-data-hidden-bits``: native Pixel Data with bits set outside the stored value (an
    embedded overlay, invisible to viewers) or non-zero bytes after its last frame, which every
    de-identified output clears."""
    todo = hidden_bits.plan_of(output)
    if todo is None:
        return []
    data = output.PixelData
    hidden = bool(data[todo.used :].strip(b"\0"))
    if todo.bits is not None and not hidden:
        size = todo.bits.allocated // 8
        count = min(len(data), todo.used) // size
        words = np.frombuffer(data, hidden_bits.dtype_of(todo.bits), count=count)
        hidden = hidden_bits.any_hidden(words, todo.bits)
    if not hidden:
        return []
    return [
        Finding(
            "pixel-data-hidden-bits",
            "(7FE0,0010)",
            "PixelData",
            "PixelData",
            "bits outside the stored value (Bits Stored, High Bit) or bytes after the last "
            "frame are set, e.g. an embedded overlay; de-identify the instance again with a "
            "current Hexchange",
        )
    ]


def _codestream_findings(output: Dataset) -> list[Finding]:
    """``pixel-data-codestream-metadata``: a compressed frame that still carries comments,
    application segments or file-format boxes (`deidentify.codestream`), or one that cannot be
    parsed to tell, which every de-identified output is written without."""
    meta = getattr(output, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in STRIPPED_SYNTAXES or "PixelData" not in output:
        return []
    try:
        frames = int(output.get("NumberOfFrames", 1) or 1)
        offsets = None
        if "ExtendedOffsetTable" in output:
            offsets = (output.ExtendedOffsetTable, output.ExtendedOffsetTableLengths)
        carried = any(
            strip(frame, syntax).removed
            for frame in generate_frames(
                output.PixelData, number_of_frames=frames, extended_offsets=offsets
            )
        )
    except (CodestreamError, ValueError, KeyError, TypeError, AttributeError):
        carried = True
    if not carried:
        return []
    return [
        Finding(
            "pixel-data-codestream-metadata",
            "(7FE0,0010)",
            "PixelData",
            "PixelData",
            "compressed frames carry comments, application segments or file-format boxes "
            "(e.g. a JPEG comment or EXIF), or cannot be parsed to tell; de-identify the "
            "instance again with a current Hexchange",
        )
    ]
