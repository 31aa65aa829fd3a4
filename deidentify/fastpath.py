"""The fast header path: de-identify, verify and write one instance from its raw header bytes.

`process` does what `instance.deidentify_instance` does with pydicom - `engine.apply`,
`verify.verify`, `instance_file.write_streamed` - for the common case, without building pydicom
datasets (`deidentify_instance` runs it first, when no pixel stage runs):

* the header is parsed once by `rawdicom.read_header` into (tag, VR, value bytes) and items;
* every element gets the action `Profile.action_for` gives it, with the same rules as
  `engine._walk` (private blocks and creators, overlays, file meta AE titles, group lengths);
  kept elements are written back as the bytes read, removed ones are skipped, emptied ones get a
  zero-length header, UIDs are remapped from their ASCII text; anything else (pseudonyms, dates,
  ages, multi-valued UIDs, recipe replacements...) is decoded by pydicom and handed to the very
  functions `engine.apply` uses (`engine._act` / `engine._keep`), then encoded like
  `encode.encode_elements`; the marks (Patient Identity Removed, ...) are those of
  `engine._mark`;
* `verify.verify_raw` checks the output header bytes it produced (parsed again, independently of
  the decisions above) against the original and the profile, and that Pixel Data is the input's
  (same VR and length, copied from the input's offset);
* the header is written, Pixel Data is copied file to file from the open input
  (``copy_file_range``), then the elements after Pixel Data.

The output is byte for byte what the pydicom path writes (tested), and the outcome (changes,
notes) is the same. Whatever this path does not handle exactly - see `rawdicom` for the inputs,
plus text that needs cleaning (a scrubber), UN/ambiguous/private values that need decoding,
an incomplete instance, a verification finding, an unusual File Meta Information - raises
`Fallback`, and the caller runs the pydicom path on the file, which then also produces the
quarantine reasons and findings.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deidentify.clean import Scrubber
from deidentify.dummies import dummy_value
from deidentify.encode import encode_data_element, encode_elements, header_bytes
from deidentify.engine import (
    _FILE_META_AE_TAGS,
    IDENTITY_VRS,
    TAG_ACCESSION,
    TAG_PATIENT_ID,
    TAG_PATIENT_NAME,
    PseudonymKeys,
    _act,
    _Context,
    _keep,
    _mark_elements,
    _mark_notes,
    _passes_through,
    _with_recipe,
)
from deidentify.hidden_bits import Plan, clear_file, plan
from deidentify.identity import (
    StudyIdentity,
)
from deidentify.instance_file import Placement, copy_range, write_all
from deidentify.profile import Action, Option, Profile
from deidentify.rawdicom import (
    PIXEL_DATA,
    Fallback,
    RawElement,
    RawHeader,
    read_header,
)
from deidentify.rawidentity import (
    IdentityItem,
    Seen,
    identity_scrubber,
    own_identity,
    raw_identity_elements,
)
from deidentify.rawvalues import (
    Charset,
    charset_of,
    charset_value,
    decodable,
    decoded,
    value_of,
)
from deidentify.uids import is_well_known_uid
from deidentify.verify import verify_raw

if TYPE_CHECKING:
    from deidentify.recipe import Recipe

__all__ = ["Fallback", "FastResult", "apply_raw", "process"]

_CHARSET = 0x00080005
_PSEUDONYM_TAGS = frozenset({TAG_PATIENT_ID, TAG_PATIENT_NAME, TAG_ACCESSION})
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_UNDEFINED = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_UID_TEXT = re.compile(rb"[0-9.]+\x00?")
_PATH_UID = re.compile(r"[0-9.]+")
_REQUIRED_UIDS = (0x00080016, 0x00080018, 0x0020000D, 0x0020000E)
_EMPTY_SOURCE = Dataset()
_U32 = struct.Struct("<I")


class _RawContext(_Context):
    """`engine._Context` without a source dataset: text that needs cleaning falls back.

    Kept text is searched for the study's identity by `apply_raw`: a hit falls back too, and
    the pydicom path cleans it."""

    @property
    def scrubber(self) -> Scrubber:
        raise Fallback("text to clean")


# --- encoding -----------------------------------------------------------------------------------


def _raw_bytes(elem: RawElement, implicit: bool) -> bytes:
    """A kept element as read (`encode._raw_element`)."""
    return header_bytes(elem.tag, elem.vr, len(elem.value), implicit) + elem.value


@functools.lru_cache(maxsize=4096)
def _dummy_bytes(tag: int, vr: str, site: str | None, implicit: bool, charset: Charset) -> bytes:
    value = dummy_value(vr) if site is None else site
    return encode_data_element(DataElement(tag, vr, value), implicit, charset_value(charset))


def _sequence_bytes(tag: int, items: list[tuple[bool, bytes]], implicit: bool) -> bytes:
    parts: list[bytes] = []
    for undefined, body in items:
        if undefined:
            parts.append(_ITEM_UNDEFINED + body + _ITEM_DELIMITER)
        else:
            parts.append(_ITEM + _U32.pack(len(body)) + body)
    content = b"".join(parts)
    return header_bytes(tag, "SQ", len(content), implicit) + content


@functools.lru_cache(maxsize=64)
def _marks(profile: Profile, implicit: bool) -> tuple[tuple[int, bytes], ...]:
    """`engine._mark`'s elements, encoded (the same for every instance of a profile)."""
    ds = Dataset()
    _mark_elements(ds, profile)
    return tuple(
        (int(tag), encode_elements(ds, [tag], implicit=implicit, encodings=None))
        for tag in sorted(ds.keys())
    )


# --- apply --------------------------------------------------------------------------------------


class _Walker:
    """`engine._walk` over raw elements; returns (tag, encoded bytes) per output element."""

    def __init__(self, ctx: _RawContext, implicit: bool) -> None:
        self.ctx = ctx
        self.implicit = implicit
        self.profile = ctx.profile
        self.action_for = ctx.profile.action_for
        self.retain_device = ctx.profile.has(Option.RETAIN_DEVICE_IDENTITY)
        self.overrides = ctx.profile.override_map
        self.kept_text: list[str] = []

    def walk(
        self, elems: list[RawElement], depth: int, clean: bool, parent: Charset
    ) -> list[tuple[int, bytes]]:
        ctx, implicit, action_for = self.ctx, self.implicit, self.action_for
        changes = ctx.changes
        charset = charset_of(elems, parent)
        creators: dict[tuple[int, int], str] = {}
        dropped: set[int] = set()
        for elem in elems:
            tag = elem.tag
            group = tag >> 16
            if group % 2 and 0x0010 <= tag & 0xFFFF <= 0x00FF:
                creators[(group, tag & 0xFFFF)] = (
                    elem.value.decode("latin-1").rstrip("\x00 ").strip()
                )
            elif 0x6000 <= group <= 0x60FF and not group % 2 and tag & 0xFFFF == 0x3000:
                action = action_for(tag, vr=elem.vr, sop_class_uid=ctx.sop_class_uid)
                if action is not Action.K:
                    dropped.add(group)
                    if action is Action.C:
                        ctx.note(f"clean-graphics: overlay group {group:04X} removed, not cleaned")
        sop_class = ctx.sop_class_uid if depth == 0 else None
        out: list[tuple[int, bytes]] = []
        kept_blocks: set[tuple[int, int]] = set()
        for elem in elems:
            tag, vr = elem.tag, elem.vr
            group, number = tag >> 16, tag & 0xFFFF
            if number == 0x0000:
                continue
            if group in dropped:
                changes["X"] += 1
                continue
            if group % 2:
                if 0x0010 <= number <= 0x00FF:
                    continue
                block = (group, number >> 8)
                action = action_for(tag, vr=vr, private_creator=creators.get(block))
                if action is not Action.K or number < 0x1000:
                    changes["X"] += 1
                    continue
                kept_blocks.add(block)
            elif tag in _FILE_META_AE_TAGS and not self.retain_device:
                changes["X"] += 1
                continue
            else:
                action = action_for(tag, vr=vr, sop_class_uid=sop_class)
            passes = action is Action.K and _passes_through(tag, vr, clean)
            if tag in (PIXEL_DATA, _CHARSET) and not passes:
                raise Fallback("Pixel Data or Specific Character Set not kept as they are")
            if action is Action.X:
                changes["X"] += 1
                continue
            if passes and vr in IDENTITY_VRS and elem.value:
                self._check_identity(elem, charset)
            if passes:
                if tag == PIXEL_DATA:
                    out.append((tag, b""))  # marker: the writer copies the input's value
                else:
                    out.append((tag, _raw_bytes(elem, implicit)))
                continue
            data = (
                self._sequence(elem, action, depth, clean, charset)
                if vr == "SQ"
                else self._element(elem, action, depth, clean, charset)
            )
            if data is not None:
                out.append((tag, data))
        encodings = charset_value(charset)
        for creator_group, creator_block in kept_blocks:
            creator_tag = (creator_group << 16) | creator_block
            creator = DataElement(creator_tag, "LO", creators[(creator_group, creator_block)])
            out.append((creator_tag, encode_data_element(creator, implicit, encodings)))
        if kept_blocks:
            out.sort()
        return out

    def _check_identity(self, elem: RawElement, charset: Charset) -> None:
        """Collect a kept text value; `apply_raw` searches them all at once for the study's
        identity (a hit falls back: the pydicom path cleans it)."""
        if not decodable(elem, self.implicit):
            raise Fallback("value of a private, UN or ambiguous VR element needs a look")
        value = decoded(elem.tag, elem.vr, elem.value, self.implicit, charset).value
        items = value if isinstance(value, MultiValue | list | tuple) else [value]
        self.kept_text.extend(str(v) for v in items if v)

    def _sequence(
        self, elem: RawElement, action: Action, depth: int, clean: bool, charset: Charset
    ) -> bytes | None:
        """`engine._act` / `engine._keep` for a sequence: recurse, or empty it (Z)."""
        if action is Action.Z:
            self.ctx.changes["Z"] += 1
            return _sequence_bytes(elem.tag, [], self.implicit)
        if action in (Action.D, Action.C):
            clean = True
        elif action not in (Action.K, Action.U):
            raise Fallback(f"action {action} on a sequence")
        items = []
        for item in elem.items or []:
            out = self.walk(item.elements, depth + 1, clean, charset)
            items.append((item.undefined, b"".join(data for _, data in out)))
        return _sequence_bytes(elem.tag, items, self.implicit)

    def _element(
        self, elem: RawElement, action: Action, depth: int, clean: bool, charset: Charset
    ) -> bytes | None:
        tag, vr, implicit, ctx = elem.tag, elem.vr, self.implicit, self.ctx
        if not decodable(elem, implicit):
            raise Fallback("value of a private, UN or ambiguous VR element needs a look")
        if action is not Action.K and not (tag in _PSEUDONYM_TAGS and tag not in self.overrides):
            if action is Action.Z:
                ctx.changes["Z"] += 1
                return header_bytes(tag, vr, 0, implicit)
            if action is Action.U or (action is Action.D and vr == "UI"):
                if vr == "UI":
                    uid = _remap_uid(elem.value, ctx)
                    if uid is not None:
                        return header_bytes(tag, "UI", len(uid), implicit) + uid
                else:
                    action = Action.D
            if action is Action.D and vr != "UI":
                ctx.changes["D"] += 1
                site = self.profile.replacement_for(tag)
                return _dummy_bytes(tag, vr, site, implicit, charset)
        # everything else exactly as engine.apply does it, on the decoded value
        full = decoded(tag, vr, elem.value, implicit, charset)
        new = (
            _keep(full, ctx, depth, clean)
            if action is Action.K
            else _act(full, action, ctx, depth, clean)
        )
        if new is None:
            return None
        if new.VR == "SQ":
            raise Fallback("sequence from a leaf")
        return encode_data_element(new, implicit, charset_value(charset))


def _remap_uid(value: bytes, ctx: _RawContext) -> bytes | None:
    """`engine._remap_uids` + encoding for a single plain UID; None for anything else."""
    if not _UID_TEXT.fullmatch(value):
        return None if value.strip(b"\x00 ") else b""
    text = value.rstrip(b"\x00").decode("ascii")
    if is_well_known_uid(text):
        new = text
    else:
        new = ctx.keys.uid(text)
        ctx.changes["U"] += 1
    data = new.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


class FastResult:
    """The de-identified header: bytes before Pixel Data (File Meta Information included, up to
    and including the Pixel Data element's tag and length) and the bytes after it."""

    __slots__ = ("changes", "header", "notes", "seen", "tail", "uids")

    def __init__(
        self,
        header: bytes,
        tail: bytes,
        changes: Counter[str],
        notes: tuple[str, ...],
        uids: dict[int, bytes],
    ) -> None:
        self.header, self.tail, self.changes, self.notes, self.uids = (
            header,
            tail,
            changes,
            notes,
            uids,
        )
        self.seen: Seen | None = None


def _empty(data: bytes) -> bool:
    """Is the (explicit VR) encoded element's value empty?"""
    vr = data[4:6]
    if vr in (b"OB", b"OW", b"UN", b"UT", b"UC", b"UR", b"SQ", b"OD", b"OF", b"OL", b"OV"):
        return len(data) == 12
    return len(data) == 8


def apply_raw(
    header: RawHeader,
    profile: Profile,
    keys: PseudonymKeys,
    recipe: Recipe | None = None,
    *,
    identity: StudyIdentity | None = None,
) -> FastResult:
    """`engine.apply` + `encode` on a raw header (see the module docstring)."""
    if recipe is not None:
        profile = _with_recipe(recipe, profile)
    implicit = header.implicit
    top = header.elements
    charset = charset_of(top, None)
    patient_id = str(value_of(top, TAG_PATIENT_ID, implicit, charset) or "")
    sop_class = str(value_of(top, 0x00080016, implicit, charset) or "") or None
    modified_dates = profile.has(Option.RETAIN_LONG_MODIFIED_DATES)
    ctx = _RawContext(
        profile=profile,
        keys=keys,
        source=_EMPTY_SOURCE,
        sop_class_uid=sop_class,
        patient_pseudonym=keys.patient_pseudonym(patient_id) if patient_id else "",
        date_offset=keys.day_offset(patient_id) if modified_dates else None,
    )
    if modified_dates and not patient_id:
        ctx.note("PatientID is empty: dates shifted by the offset of the empty patient key")
    found: list[IdentityItem] = []
    raw_identity_elements(top, implicit, None, found, 0)
    items = tuple(found)
    scrubber = identity_scrubber(items, implicit, profile, identity)
    walker = _Walker(ctx, implicit)
    pixel = RawElement(PIXEL_DATA, header.pixel.vr or "OB", b"")
    body = dict(walker.walk([*top, pixel, *header.tail], 0, False, None))
    if walker.kept_text and scrubber.has_identity("\x00".join(walker.kept_text)):
        raise Fallback("text to clean")
    if PIXEL_DATA not in body:
        raise Fallback("Pixel Data not kept")
    # file meta: always explicit VR little endian, written without a character set
    meta_walker = _Walker(ctx, implicit=False)
    meta = meta_walker.walk(header.meta, 0, False, None)
    body.update(_marks(profile, implicit))
    _mark_notes(profile, ctx)

    meta_map = dict(meta)
    for tag in (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012):
        if tag not in meta_map or _empty(meta_map[tag]):
            raise Fallback("File Meta Information needs completing")
    if 0x00020013 not in meta_map:
        raise Fallback("File Meta Information needs completing")
    meta_body = b"".join(data for _, data in meta)
    parts = [
        b"\x00" * 128 + b"DICM",
        struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta_body)),
        meta_body,
    ]
    tail: list[bytes] = []
    for tag in sorted(body):
        if tag < PIXEL_DATA:
            parts.append(body[tag])
        elif tag > PIXEL_DATA:
            tail.append(body[tag])
    if implicit:
        parts.append(struct.pack("<HHI", 0x7FE0, 0x0010, header.pixel.length))
    else:
        pixel_vr = header.pixel.vr.encode("ascii")
        parts.append(struct.pack("<HH2sHI", 0x7FE0, 0x0010, pixel_vr, 0, header.pixel.length))
    uids: dict[int, bytes] = {
        tag: body[tag] for tag in (0x00080018, 0x0020000D, 0x0020000E) if tag in body
    }
    result = FastResult(b"".join(parts), b"".join(tail), ctx.changes, tuple(ctx.notes), uids)
    study_uid = str(value_of(top, 0x0020000D, implicit, charset) or "")
    result.seen = Seen(study_uid, own_identity(items, implicit), "\x00".join(walker.kept_text))
    return result


# --- the instance: checks, write ----------------------------------------------------------------


def _int(elems: list[RawElement], tag: int, default: int, implicit: bool, charset: Charset) -> int:
    value = value_of(elems, tag, implicit, charset)
    return int(value or default)


def _check_complete(header: RawHeader) -> None:
    """`cli.incomplete` on the raw header; anything incomplete goes the pydicom way (which
    quarantines it with the reason)."""
    top, implicit = header.elements, header.implicit
    charset = charset_of(top, None)
    for tag in _REQUIRED_UIDS:
        if not value_of(top, tag, implicit, charset):
            raise Fallback("incomplete")
    try:
        frames = _int(top, 0x00280008, 1, implicit, charset)
        bits = _int(top, 0x00280100, 8, implicit, charset)
        samples = _int(top, 0x00280002, 1, implicit, charset)
        rows = _int(top, 0x00280010, 0, implicit, charset)
        columns = _int(top, 0x00280011, 0, implicit, charset)
    except (TypeError, ValueError):
        raise Fallback("unreadable image attributes") from None
    if header.pixel.length * 8 < rows * columns * samples * frames * bits:
        raise Fallback("truncated")


def _path_uid(data: bytes | None) -> str:
    """The UID text of an encoded output element (for the output path)."""
    if data is None:
        raise Fallback("no UID for the output path")
    text = data[8:].decode("ascii", "replace").rstrip("\x00 ")
    if not _PATH_UID.fullmatch(text):
        raise Fallback("unusual UID for the output path")
    return text


def _open_new(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o666)


def process(
    src: Path,
    place: Placement,
    profile: Profile,
    keys: PseudonymKeys,
    recipe: Recipe | None = None,
    *,
    identity: StudyIdentity | None = None,
) -> tuple[Path, Counter[str], tuple[str, ...], Seen | None]:
    """De-identify, verify and write `src` where `place` puts its output UIDs; (the output's
    path, changes, notes, what a study pass needs to know). Raises `Fallback` (nothing written)
    when the pydicom path must run."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        header = read_header(fd, size)
        _check_complete(header)
        result = apply_raw(header, profile, keys, recipe, identity=identity)
        if verify_raw(header, result.header, result.tail, profile, recipe, identity=identity):
            raise Fallback("verification findings: the pydicom path reports them")
        study = _path_uid(result.uids.get(0x0020000D))
        series = _path_uid(result.uids.get(0x0020000E))
        sop = _path_uid(result.uids.get(0x00080018))
        target = place(study, series, sop)
        tmp = target.with_name(target.name + ".part")
        notes = tuple(result.notes)
        out = _open_new(tmp)
        try:
            try:
                write_all(out, result.header, 0)
                at = len(result.header)
                copy_range(fd, out, header.pixel.offset, header.pixel.length, at)
                todo = _hidden_plan(header)
                if todo is not None:  # e.g. an embedded overlay in the unused high bits
                    cleared = clear_file(out, at, header.pixel.length, todo)
                    notes = (*notes, *cleared.notes())
                at += header.pixel.length
                if result.tail:
                    write_all(out, result.tail, at)
                    at += len(result.tail)
                if os.fstat(out).st_size != at:
                    raise OSError("output size differs from what was written")
            finally:
                os.close(out)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)
    return target, result.changes, notes, result.seen


def _hidden_plan(header: RawHeader) -> Plan | None:
    """What `hidden_bits` rewrites in the output's Pixel Data (always native Little Endian on
    the fast path): bits outside each sample's value, bytes after the last frame."""
    if header.pixel.length == 0:
        return None
    top, implicit = header.elements, header.implicit
    charset = charset_of(top, None)
    numbers = [
        _int(top, tag, default, implicit, charset)
        for tag, default in ((0x00280010, 0), (0x00280011, 0), (0x00280002, 1), (0x00280008, 1),
                             (0x00280100, 0), (0x00280101, 0), (0x00280102, -1),
                             (0x00280103, 0))
    ]  # fmt: skip
    rows, columns, samples, frames, allocated, stored, high, representation = numbers
    return plan(rows, columns, samples, frames, (allocated, stored, high, representation))
