"""Apply a de-identification profile to one dataset: dataset in, new dataset out.

`apply` never mutates its input and never decodes pixel data: kept elements that need no change
are passed through as pydicom `RawDataElement`s (immutable; raw bytes stay raw, values read with
`dcmread(..., defer_size=...)` stay on disk and the output reads them from the same file when it
is written), so only the values the profile needs are decoded. Every attribute, at every depth
of every sequence and in the file meta, gets the action `Profile.action_for` gives it; see
`profile.py` for how combined actions are resolved.

Choices worth knowing
---------------------
* Patient ID becomes a keyed pseudonym (16 base32 characters of HMAC-SHA256 under the network
  secret), and Patient's Name becomes the same pseudonym, so a research collection can still
  group a patient's studies while nobody without the secret can link the pseudonym to the
  original ID. Accession Number (Z in the table) becomes a keyed pseudonym of its own when it
  was non-empty, for the same reason.
* UIDs (action U): `2.25.` + HMAC of the UID, except well-known UIDs (`1.2.840.10008.*`), which
  are never changed. Sequences with action U or D are kept and processed recursively.
* Dates with Retain Longitudinal Modified Dates: shifted by a per-patient keyed number of days
  (see `dates.py`); without a date option, D dates get a dummy date.
* Text inside sequences whose action is D or C (e.g. Content Sequence) is cleaned with
  `clean.Scrubber.scrub` (identity and every PHI-like pattern); text attributes with action C
  (clean-descriptors etc.) likewise.
* Every other kept text value (LO, SH, ST, LT, UT, UC, UR, PN at any depth, code meanings and
  manufacturer included) is searched for the study's identity (`StudyIdentity`: this instance's
  headers plus, when the caller passes it, the whole study's) in its written forms and cleaned
  (`Scrubber.scrub_identity`): identifying substrings become ``***``; a value left with nothing
  else is removed (Type 3), emptied (Type 2) or kept as the token (Type 1, nested).
* Encapsulated documents are checked and kept unchanged, or the instance is held back
  (`documents.DocumentHeldBack`); free-form patient descriptors are removed (`profile`).
* Overlays: when Overlay Data (60xx,3000) is not kept, the whole overlay group is removed so
  the output stays valid; Clean Graphics cannot clean overlay bitmaps in the header path, so
  under that option overlays are removed too (noted in `DeidResult.notes`).
* Curves (50xx,xxxx), private attributes (except TCIA-safe ones under Retain Safe Private) and
  group length elements are removed.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from deidentify.clean import CODE_KEYWORDS, Scrubber, nothing_useful
from deidentify.clean import REDACTED as REDACTED_TOKEN
from deidentify.dates import cap_age, day_offset, shift_da, shift_dt
from deidentify.documents import ENCAPSULATED_DOCUMENT, document_check
from deidentify.dummies import dummy_value, empty_value
from deidentify.identity import StudyIdentity
from deidentify.profile import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    Action,
    Option,
    Profile,
    is_private_creator_tag,
)
from deidentify.tables import iod_types
from deidentify.uids import is_well_known_uid, keyed_token, keyed_uid
from deidentify.vrs import dictionary_vr, element_vr

if TYPE_CHECKING:
    from deidentify.recipe import Recipe

MIN_SECRET_BYTES = 32

TAG_PATIENT_NAME = 0x00100010
TAG_PATIENT_ID = 0x00100020
TAG_ACCESSION = 0x00080050
TAG_PIXEL_DATA = 0x7FE00010
_OVERLAY_DATA_ELEMENT = 0x3000
# File meta AE titles name the sending/receiving devices: Retain Device Identity keeps them.
_FILE_META_AE_TAGS = frozenset({0x00020016, 0x00020017, 0x00020018})
_DOCUMENT_LENGTH = 0x00420015  # Encapsulated Document Length
_DOCUMENT_TAGS = frozenset({ENCAPSULATED_DOCUMENT, _DOCUMENT_LENGTH})
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "UR", "AE", "PN"})
# Every kept value of these VRs is searched for the study's identity (`Scrubber.scrub_identity`).
IDENTITY_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "UR", "PN"})


@dataclass(frozen=True)
class PseudonymKeys:
    """The network secret that keys every pseudonym (UIDs, IDs, date offsets)."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes | bytearray):
            raise TypeError("PseudonymKeys.secret must be bytes")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"PseudonymKeys.secret must be at least {MIN_SECRET_BYTES} bytes "
                f"(got {len(self.secret)})"
            )
        object.__setattr__(self, "secret", bytes(self.secret))

    def __repr__(self) -> str:
        return "PseudonymKeys(secret=<redacted>)"

    @classmethod
    def from_key_file_bytes(cls, data: bytes) -> PseudonymKeys:
        """The one key-file format (CLI and agent alike): hex text (>= 64 hex digits, surrounding
        whitespace ignored) is decoded; anything else is used as raw bytes, whitespace-stripped."""
        text = data.strip()
        if len(text) >= 2 * MIN_SECRET_BYTES and len(text) % 2 == 0:
            try:
                return cls(bytes.fromhex(text.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                pass
        return cls(text)

    def patient_pseudonym(self, patient_id: str) -> str:
        return _cached_token(self.secret, "patient-id", patient_id)

    def accession_pseudonym(self, accession: str) -> str:
        return _cached_token(self.secret, "accession", accession)

    def uid(self, uid: str) -> str:
        return _cached_uid(self.secret, uid)

    def day_offset(self, patient_id: str) -> int:
        return _cached_offset(self.secret, patient_id)


# A study repeats the same UIDs, IDs and patient keys in every instance: memoise the HMACs.
@functools.lru_cache(maxsize=65536)
def _cached_uid(secret: bytes, uid: str) -> str:
    return keyed_uid(secret, uid)


@functools.lru_cache(maxsize=4096)
def _cached_token(secret: bytes, domain: str, value: str) -> str:
    return keyed_token(secret, domain, value, 16)


@functools.lru_cache(maxsize=4096)
def _cached_offset(secret: bytes, patient_id: str) -> int:
    return day_offset(secret, patient_id)


@dataclass(frozen=True)
class DeidResult:
    dataset: Dataset
    changes: Counter[str]  # number of attributes per action taken (X, Z, D, C, U)
    notes: tuple[str, ...]  # attribute names and decisions, never values


@dataclass
class _Context:
    profile: Profile
    keys: PseudonymKeys
    source: Dataset
    sop_class_uid: str | None
    patient_pseudonym: str
    date_offset: int | None
    changes: Counter[str] = field(default_factory=Counter)
    notes: dict[str, None] = field(default_factory=dict)  # ordered set
    identity: StudyIdentity | None = None  # the study's identity, when the caller collected it
    keep_document: bool = False  # the encapsulated document was checked (`documents`)
    document: bytes | None = None  # the document to send instead of the original's
    _scrubber: Scrubber | None = None

    def note(self, text: str) -> None:
        self.notes[text] = None

    @property
    def scrubber(self) -> Scrubber:
        """Built on first use: most instances have no free text to clean."""
        if self._scrubber is None:
            own = StudyIdentity.collect([self.source])
            identity = own if self.identity is None else self.identity.merge(own)
            self._scrubber = Scrubber.for_identity(retained_out(identity, self.profile))
        return self._scrubber


@functools.lru_cache(maxsize=256)
def retained_out(identity: StudyIdentity, profile: Profile) -> StudyIdentity:
    """`identity` without the values of attributes the profile keeps as they are."""
    keywords = {keyword for keyword, _ in identity.by_keyword}
    kept = {
        k
        for k in keywords
        if (tag := tag_for_keyword(k)) is not None
        and profile.action_for(tag, vr=dictionary_vr(tag)) is Action.K
        and (profile.raw_action_for(tag) is not None or tag in profile.override_map)
    }
    return identity.without(kept)


def apply(
    ds: Dataset,
    profile: Profile,
    keys: PseudonymKeys,
    recipe: Recipe | None = None,
    *,
    identity: StudyIdentity | None = None,
) -> DeidResult:
    """De-identify `ds` under `profile` (plus a validated site `recipe`, see `recipe.py`);
    returns a new dataset and what changed; raises `DocumentHeldBack` (the reason) for an
    encapsulated document that may not be sent. `identity`: the identifying values of the whole
    study (`StudyIdentity.collect` over every instance's header), searched for in every kept
    text value besides the instance's own."""
    if recipe is not None:
        profile = _with_recipe(recipe, profile)
    patient_id = str(ds.get("PatientID", "") or "")
    modified_dates = profile.has(Option.RETAIN_LONG_MODIFIED_DATES)
    ctx = _Context(
        profile=profile,
        keys=keys,
        source=ds,
        sop_class_uid=str(ds.get("SOPClassUID", "") or "") or None,
        patient_pseudonym=keys.patient_pseudonym(patient_id) if patient_id else "",
        date_offset=keys.day_offset(patient_id) if modified_dates else None,
        identity=identity,
    )
    if modified_dates and not patient_id:
        ctx.note("PatientID is empty: dates shifted by the offset of the empty patient key")
    if ENCAPSULATED_DOCUMENT in ds:
        # raises DocumentHeldBack unless the document may be sent as it is
        ctx.document = document_check(ds, ctx.scrubber, allowed=profile.send_documents)
        ctx.keep_document = True
        ctx.note(
            "EncapsulatedDocument: checked, no identity found; "
            + ("kept as it is" if ctx.document is None else "PDF metadata removed")
        )
    out = _walk(ds, ctx, depth=0, clean_text=False)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        new_meta = FileMetaDataset()
        new_meta.update(_walk(meta, ctx, depth=0, clean_text=False))
        out.file_meta = new_meta
    # Deferred values (Pixel Data read with `defer_size`) stay on disk: the output reads them
    # from the same file when it is written.
    carry_deferred_source(ds, out)
    _mark(out, profile, ctx)
    return DeidResult(dataset=out, changes=ctx.changes, notes=tuple(ctx.notes))


_DEFERRED_SOURCE_ATTRS = ("filename", "buffer", "fileobj_type", "timestamp")


def carry_deferred_source(src: Dataset, dst: Dataset) -> None:
    """Let `dst` read deferred values of `src`'s elements from where `src` was read."""
    if getattr(src, "filename", None) is None and getattr(src, "buffer", None) is None:
        return
    for attr in _DEFERRED_SOURCE_ATTRS:
        setattr(dst, attr, getattr(src, attr, None))


def _mark(out: Dataset, profile: Profile, ctx: _Context) -> None:
    _mark_elements(out, profile)
    _mark_notes(profile, ctx)


def _mark_elements(out: Dataset, profile: Profile) -> None:
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = profile.method_values()
    items = []
    codes = [BASIC_PROFILE_CODE, *sorted(OPTION_CODES[o] for o in profile.options)]
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(items)
    if profile.has(Option.RETAIN_LONG_MODIFIED_DATES):
        out.LongitudinalTemporalInformationModified = "MODIFIED"
    elif profile.has(Option.RETAIN_LONG_FULL_DATES):
        out.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        out.LongitudinalTemporalInformationModified = "REMOVED"


def _mark_notes(profile: Profile, ctx: _Context) -> None:
    for option in (Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES):
        if profile.has(option):
            ctx.note(f"{option.value}: pixel data is not changed here; the pixel stage must run")


def _walk(src: Dataset, ctx: _Context, *, depth: int, clean_text: bool) -> Dataset:
    """The de-identified copy of one dataset (the top level, file meta or a sequence item).

    Elements are read with `get_item(..., keep_deferred=True)`: kept elements that need no
    change are passed through as they are (raw bytes stay raw, deferred values stay on disk);
    only elements whose value the profile needs are decoded.
    """
    elements: dict[Any, DataElement | RawDataElement] = {}
    tags = list(src.keys())
    creators: dict[tuple[int, int], str] = {}
    for tag in tags:
        if is_private_creator_tag(int(tag)):
            value = src.get_item(tag, keep_deferred=True).value
            if isinstance(value, bytes):
                value = value.decode("latin-1").rstrip("\x00 ")
            if isinstance(value, str):
                creators[(tag >> 16, tag & 0xFFFF)] = value.strip()
    dropped_overlays = _overlay_groups_to_drop(src, tags, ctx)
    # Types in the IOD apply to top-level attributes only (nested ones: conservative).
    sop_class = ctx.sop_class_uid if depth == 0 else None
    action_for = ctx.profile.action_for
    kept_blocks: set[tuple[int, int]] = set()

    for tag in tags:
        group, element = tag >> 16, tag & 0xFFFF
        if element == 0x0000:
            continue  # group length: recomputed on write
        if group in dropped_overlays:
            ctx.changes["X"] += 1
            continue
        elem = src.get_item(tag, keep_deferred=True)
        vr = element_vr(elem)
        if group % 2:  # private
            if 0x0010 <= element <= 0x00FF:
                continue  # creator: added below if any element of its block is kept
            block = (group, element >> 8)
            action = action_for(tag, vr=vr, private_creator=creators.get(block))
            if action is not Action.K or element < 0x1000:
                ctx.changes["X"] += 1
                continue
            kept_blocks.add(block)
        elif tag in _FILE_META_AE_TAGS and not ctx.profile.has(Option.RETAIN_DEVICE_IDENTITY):
            ctx.changes["X"] += 1
            continue
        else:
            action = action_for(tag, vr=vr, sop_class_uid=sop_class)
        if depth == 0 and ctx.keep_document and tag in _DOCUMENT_TAGS:
            if ctx.document is not None:  # the document without its metadata, and its length
                new_value: Any = ctx.document
                if tag == _DOCUMENT_LENGTH:
                    new_value = len(ctx.document.rstrip(b"\x00"))
                elements[elem.tag] = DataElement(tag, vr, new_value)
                continue
            action = Action.K
        if action is Action.X:
            ctx.changes["X"] += 1
            continue
        if (
            action is Action.K
            and _passes_through(tag, vr, clean_text)
            and not (vr in IDENTITY_VRS and _holds_identity(src, tag, ctx))
        ):
            elements[elem.tag] = (
                elem if isinstance(elem, RawDataElement) else DataElement(tag, vr, elem.value)
            )
            continue
        full = src[tag]  # decoded (the value is needed)
        new = (
            _keep(full, ctx, depth, clean_text)
            if action is Action.K
            else (_act(full, action, ctx, depth, clean_text))
        )
        if new is not None and new.VR in IDENTITY_VRS and new.value:
            new = _clean_text(new, ctx, depth, free=False)
        if new is not None:
            elements[new.tag] = new

    for creator_group, creator_block in sorted(kept_blocks):
        creator_tag = (creator_group << 16) | creator_block
        creator_elem = DataElement(creator_tag, "LO", creators[(creator_group, creator_block)])
        elements[creator_elem.tag] = creator_elem
    out = Dataset(dict(sorted(elements.items())))
    # Same encoding as the source, so raw elements are written as they are (no re-encoding).
    implicit, little = src.original_encoding
    out.set_original_encoding(implicit, little, src.original_character_set or None)
    out.is_undefined_length_sequence_item = src.is_undefined_length_sequence_item
    return out


def _holds_identity(src: Dataset, tag: Any, ctx: _Context) -> bool:
    """Does a kept text value hold any of the study's identifying values?"""
    value = src[tag].value
    if not value:
        return False
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return any(ctx.scrubber.has_identity(str(v)) for v in items)


def _passes_through(tag: int, vr: str, clean_text: bool) -> bool:
    """A kept element whose value needs no look: not a sequence, age, or text to clean."""
    if vr in ("SQ", "AS"):
        return False
    return not (clean_text and vr in _TEXT_VRS and keyword_for_tag(tag) not in CODE_KEYWORDS)


def _overlay_groups_to_drop(src: Dataset, tags: list[Any], ctx: _Context) -> set[int]:
    groups: set[int] = set()
    for tag in tags:
        group = tag >> 16
        if 0x6000 <= group <= 0x60FF and not group % 2 and tag & 0xFFFF == _OVERLAY_DATA_ELEMENT:
            vr = element_vr(src.get_item(tag, keep_deferred=True))
            action = ctx.profile.action_for(int(tag), vr=vr, sop_class_uid=ctx.sop_class_uid)
            if action is not Action.K:
                groups.add(group)
                if action is Action.C:
                    ctx.note(f"clean-graphics: overlay group {group:04X} removed, not cleaned")
    return groups


@functools.lru_cache(maxsize=256)
def _with_recipe(recipe: Recipe, profile: Profile) -> Profile:
    return recipe.apply_to(profile)


def _act(
    elem: DataElement, action: Action, ctx: _Context, depth: int, clean: bool
) -> DataElement | None:
    tag, vr = int(elem.tag), elem.VR
    if action is Action.X:
        ctx.changes["X"] += 1
        return None
    if (
        tag in (TAG_PATIENT_ID, TAG_PATIENT_NAME, TAG_ACCESSION)
        and action is not Action.K
        and tag not in ctx.profile.override_map
    ):
        return _pseudonym(elem, ctx)
    if action is Action.Z:
        ctx.changes["Z"] += 1
        return DataElement(tag, vr, empty_value(vr))
    if action is Action.K:
        return _keep(elem, ctx, depth, clean)
    if action is Action.U or (action is Action.D and vr == "UI"):
        if vr == "SQ":
            return _sequence(elem, ctx, depth, clean)
        if vr == "UI":
            return _remap_uids(elem, ctx)
        action = Action.D
    if action is Action.D:
        if vr == "SQ":
            return _sequence(elem, ctx, depth, clean=True)
        ctx.changes["D"] += 1
        site_value = ctx.profile.replacement_for(tag)
        return DataElement(tag, vr, dummy_value(vr) if site_value is None else site_value)
    return _clean(elem, ctx, depth)


def _keep(elem: DataElement, ctx: _Context, depth: int, clean: bool) -> DataElement | None:
    vr = elem.VR
    if vr == "SQ":
        return _sequence(elem, ctx, depth, clean)
    if vr == "AS" and elem.value:
        capped = cap_age(str(elem.value))
        if capped != str(elem.value).strip().upper():
            ctx.changes["C"] += 1
            ctx.note(f"{elem.keyword or elem.tag}: age over 89 capped (Safe Harbor)")
        return DataElement(elem.tag, vr, capped)
    if clean and vr in _TEXT_VRS and elem.value and elem.keyword not in CODE_KEYWORDS:
        return _clean_text(elem, ctx, depth, free=True)
    return DataElement(elem.tag, vr, elem.value)


def _sequence(elem: DataElement, ctx: _Context, depth: int, clean: bool) -> DataElement:
    items = [_walk(item, ctx, depth=depth + 1, clean_text=clean) for item in elem.value or []]
    return DataElement(elem.tag, "SQ", Sequence(items))


def _remap_uids(elem: DataElement, ctx: _Context) -> DataElement:
    def remap(uid: Any) -> str:
        text = str(uid).strip()
        if not text or is_well_known_uid(text):
            return text
        return ctx.keys.uid(text)

    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        new: Any = [remap(v) for v in value]
    elif value is None or value == "":
        return DataElement(elem.tag, "UI", value)
    else:
        new = remap(value)
    if new != value:
        ctx.changes["U"] += 1
    return DataElement(elem.tag, "UI", new)


def _pseudonym(elem: DataElement, ctx: _Context) -> DataElement:
    tag = int(elem.tag)
    original = str(elem.value or "").strip()
    if not original:
        return DataElement(tag, elem.VR, empty_value(elem.VR))
    ctx.changes["D"] += 1
    if tag == TAG_ACCESSION:
        return DataElement(tag, elem.VR, ctx.keys.accession_pseudonym(original))
    if tag == TAG_PATIENT_ID:
        return DataElement(tag, elem.VR, ctx.keys.patient_pseudonym(original))
    return DataElement(tag, elem.VR, ctx.patient_pseudonym or dummy_value(elem.VR))


def _clean(elem: DataElement, ctx: _Context, depth: int) -> DataElement | None:
    vr = elem.VR
    if vr == "SQ":
        return _sequence(elem, ctx, depth, clean=True)
    if vr in ("DA", "DT", "TM"):
        return _clean_date(elem, ctx)
    if vr in _TEXT_VRS or vr == "CS":
        if not elem.value or elem.keyword in CODE_KEYWORDS:
            return DataElement(elem.tag, vr, elem.value)
        return _clean_text(elem, ctx, depth, free=True)
    ctx.changes["X"] += 1
    ctx.note(f"{elem.keyword or elem.tag}: no cleaner for VR {vr}; removed")
    return None


def _clean_text(elem: DataElement, ctx: _Context, depth: int, *, free: bool) -> DataElement | None:
    """Replace identifying substrings with a neutral token (`free`: free text, so every
    PHI-like pattern too). A value left with nothing useful is removed when the attribute may
    be absent (Type 3 or not in the IOD, top level), emptied when it is Type 2, and kept as the
    token when it must have a value (Type 1, or nested: its Type depends on the sequence)."""
    value = elem.value
    scrub = ctx.scrubber.scrub if free else ctx.scrubber.scrub_identity
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    old = [str(v) for v in items]
    new = [scrub(v) for v in old]
    if new == old:
        return elem if isinstance(elem, DataElement) else DataElement(elem.tag, elem.VR, value)
    ctx.changes["C"] += 1
    name = elem.keyword or f"({int(elem.tag) >> 16:04X},{int(elem.tag) & 0xFFFF:04X})"
    if all(nothing_useful(v) for v in new):
        typ = _type_of(int(elem.tag), ctx, depth)
        if typ == "3":
            ctx.note(f"{name}: identifying text removed, nothing else in it; attribute removed")
            return None
        if typ == "2":
            ctx.note(f"{name}: identifying text removed, nothing else in it; emptied")
            return DataElement(elem.tag, elem.VR, empty_value(elem.VR))
    ctx.note(f"{name}: identifying text replaced by {REDACTED_TOKEN}")
    return DataElement(elem.tag, elem.VR, new[0] if len(new) == 1 else new)


def _type_of(tag: int, ctx: _Context, depth: int) -> str:
    """ "1", "2" or "3" (absent from the IOD counts as 3); nested or unknown: "1"."""
    if depth or ctx.sop_class_uid is None:
        return "1"
    types = iod_types().types_for(ctx.sop_class_uid)
    if types is None:
        return "1"
    return types.get(tag, "3")[0]


def _clean_date(elem: DataElement, ctx: _Context) -> DataElement:
    vr = elem.VR
    if vr == "TM" or not elem.value:
        return DataElement(elem.tag, vr, elem.value)  # whole-day shifts leave times unchanged
    if ctx.date_offset is None:
        ctx.changes["D"] += 1
        return DataElement(elem.tag, vr, dummy_value(vr))
    shift = shift_da if vr == "DA" else shift_dt
    values = elem.value if isinstance(elem.value, MultiValue | list | tuple) else [elem.value]
    shifted = [shift(str(v), ctx.date_offset) for v in values]
    ctx.changes["C"] += 1
    if any(s is None for s in shifted):
        ctx.note(f"{elem.keyword or elem.tag}: unparseable {vr}; replaced by a dummy")
        return DataElement(elem.tag, vr, dummy_value(vr))
    return DataElement(elem.tag, vr, shifted[0] if len(shifted) == 1 else shifted)
