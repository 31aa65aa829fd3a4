"""One instance, file to file: the de-identification engine that `hexchange-deid` and the node
agent both run.

    written = deidentify_instance(src, place, profile, keys, pixels=PixelStage(policy, ocr))

The steps, in order:

1. The fast header path (`deidentify.fastpath`) when no pixel stage runs: the header is
   de-identified and verified from its raw bytes. Whatever it does not handle exactly raises
   `fastpath.Fallback` and the steps below run instead; its output is byte for byte theirs.
2. Read with Pixel Data left on disk (`DEFER_SIZE`) and check the instance is whole
   (`incomplete`).
3. The pixel stage (Clean Pixel Data: region rules, text detection and OCR, a second screen that
   fails closed); a large multi-frame instance is scrubbed in batches of frames into a scratch
   file (`deidentify.pixels.streamed` for native frames, `streamed_encapsulated` for
   compressed ones, decoded a batch at a time), so memory stays flat.
4. `engine.apply`, then `verify.verify` independently against the original.
5. The output is written with Pixel Data copied file to file, never through memory, under a
   temporary name renamed into place: nothing is left at the target when anything fails.

Anything that keeps the instance from leaving raises `Refused` with a kind (the fixed
vocabulary the agent's quarantine and the CLI's report both count) and a reason that names
attributes and exception types, never values.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from deidentify import codestream_file, fastpath, hidden_bits
from deidentify.clean import identifying_values
from deidentify.codestream import CodestreamError
from deidentify.documents import DocumentHeldBack
from deidentify.engine import PseudonymKeys, apply
from deidentify.identity import StudyIdentity
from deidentify.instance_file import DEFER_SIZE, Placement, incomplete, write_streamed
from deidentify.pixels import OcrBackend, PixelPolicy, ScrubResult, scrub
from deidentify.pixels.frames import PixelError
from deidentify.pixels.streamed import StreamPlan, patch_pixels, scrub_streamed
from deidentify.pixels.streamed_encapsulated import EncapsulatedPlan, scrub_encapsulated
from deidentify.profile import Profile
from deidentify.rawidentity import Seen
from deidentify.recipe import Recipe
from deidentify.verify import Finding, verify

_log = logging.getLogger(__name__)
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def under(out_dir: Path) -> Placement:
    """``out_dir/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``; a UID that is not digits and
    dots is refused rather than used as a path (a kept UID comes from the input)."""

    def place(study: str, series: str, sop: str) -> Path:
        for uid in (study, series, sop):
            if not _UID.fullmatch(uid) or len(uid) > 64:
                raise Refused(
                    RefusalKind.MALFORMED,
                    "unparseable: an output UID is not a valid UID (digits and dots, at most "
                    "64 characters); it cannot name the output file",
                )
        return out_dir / study / series / f"{sop}.dcm"

    return place


@dataclass(frozen=True)
class PixelStage:
    """Clean Pixel Data: the site's pixel policy and the OCR backend that reads for it."""

    policy: PixelPolicy
    ocr: OcrBackend


class RefusalKind(StrEnum):
    """Why an instance did not leave (the values of `wire.api.QuarantineReason` they share)."""

    MALFORMED = "malformed"  # not DICOM, truncated, a value that does not parse
    PIXELS_UNREADABLE = "pixels-unreadable"  # the pixel data could not be decoded
    BURNED_IN_TEXT = "burned-in-text"  # text in the pixels the scrub may not clear
    DOCUMENT = "document"  # an encapsulated document with identity, or not allowed
    VERIFICATION = "verification"  # the independent check found identity
    WRITE = "write"  # the output could not be written


class Refused(Exception):
    """The instance may not leave; nothing was written at its target.

    `reason` starts with the words `deidentify.heldback` classifies (``not-dicom``,
    ``unparseable``, ``incomplete``/``truncated``, ``pixel-scrub``, ``document``,
    ``verification-failed``, ``write-failed``); `findings` are the verification's (attributes
    and paths, never values); `scrubbed` is the pixel stage's result when it ran (previews for
    a reviewer); `seen` what a study pass needs to know of the instance, when it was read.
    """

    def __init__(
        self,
        kind: RefusalKind,
        reason: str,
        *,
        findings: tuple[Finding, ...] = (),
        scrubbed: ScrubResult | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.findings = findings
        self.scrubbed = scrubbed
        self.seen: Seen | None = None
        self.study_uid = ""

    @property
    def detail(self) -> str:
        """The reason with the first findings spelled out (for a quarantine's one line)."""
        if not self.findings:
            return self.reason
        listed = "; ".join(f"{f.code} {f.keyword or f.tag} at {f.path}" for f in self.findings[:10])
        return f"{self.reason}: {listed}"

    @property
    def previews(self) -> Mapping[str, bytes]:
        preview = self.scrubbed.preview if self.scrubbed is not None else None
        if preview is None:
            return {}
        return {"before.png": preview.before_png, "after.png": preview.after_png}


@dataclass
class Written:
    """An instance de-identified, verified and written at `path`."""

    path: Path
    changes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seen: Seen | None = None  # from the read, for the study pass (None when `identity` given)
    scrubbed: ScrubResult | None = None  # the pixel stage's result when it ran
    study_uid: str = ""  # the input's Study Instance UID (for per-study pixel reports)


def deidentify_instance(
    src: Path,
    place: Placement,
    profile: Profile,
    keys: PseudonymKeys,
    *,
    pixels: PixelStage | None = None,
    recipe: Recipe | None = None,
    identity: StudyIdentity | None = None,
    scratch: Path | None = None,
    fast: bool = True,
) -> Written:
    """De-identify `src` to the path `place` gives for its output UIDs, or raise `Refused`.

    `pixels`: run the pixel stage (Clean Pixel Data). `identity`: every identifying value of
    the whole study, cleaned out of kept text wherever it is written. `scratch`: a folder for
    the scrubbed frames of a large multi-frame instance (default: the input's). `fast` False:
    the pydicom path only (for comparisons)."""
    if fast and pixels is None:  # the pixel stage decodes pixels: the pydicom path
        try:
            target, changes, notes, seen = fastpath.process(
                src, place, profile, keys, recipe, identity=identity
            )
        except Refused:
            raise
        except Exception as exc:  # Fallback, or anything unexpected: the pydicom path decides
            # the reason or the exception type only: messages may quote values
            why = str(exc) if isinstance(exc, fastpath.Fallback) else type(exc).__name__
            _log.debug("fast path not taken: %s", why)
        else:
            return Written(target, dict(changes), list(notes), seen)
    original, seen = _read(src, identity)
    try:
        return _dataset_path(
            src, place, original, profile, keys, pixels, recipe, identity, scratch, seen
        )
    except Refused as refused:
        refused.seen, refused.study_uid = seen, _study_uid(original)
        raise
    except Exception as exc:  # a value read lazily that does not parse, wherever it is read:
        # refused with the error's kind, never a crash of the caller's loop
        unparseable = Refused(
            RefusalKind.MALFORMED, f"unparseable: a value does not parse ({type(exc).__name__})"
        )
        unparseable.seen, unparseable.study_uid = seen, _study_uid(original)
        raise unparseable from exc


def _study_uid(ds: Dataset) -> str:
    try:
        return str(ds.get("StudyInstanceUID", "") or "")
    except Exception:  # unparseable: the per-study report counts it under no study
        return ""


def _read(src: Path, identity: StudyIdentity | None) -> tuple[Dataset, Seen | None]:
    seen = None
    try:
        original = dcmread(src, defer_size=DEFER_SIZE)
        problem = incomplete(original, src.stat().st_size)
        if identity is None:
            study_uid = str(original.get("StudyInstanceUID", "") or "")
            seen = Seen(study_uid, StudyIdentity.collect([original]), None)
    except InvalidDicomError as exc:
        raise Refused(
            RefusalKind.MALFORMED, "not-dicom: no DICOM preamble/prefix or unreadable header"
        ) from exc
    except Exception as exc:  # a truncated or corrupt file raises many kinds of errors
        raise Refused(RefusalKind.MALFORMED, f"unparseable: {type(exc).__name__}") from exc
    if problem:
        refused = Refused(RefusalKind.MALFORMED, problem)
        refused.seen = seen
        raise refused
    return original, seen


def _dataset_path(
    src: Path,
    place: Placement,
    original: Dataset,
    profile: Profile,
    keys: PseudonymKeys,
    pixels: PixelStage | None,
    recipe: Recipe | None,
    identity: StudyIdentity | None,
    scratch: Path | None,
    seen: Seen | None,
) -> Written:
    source: Dataset = original
    scrubbed: ScrubResult | None = None
    frames: Path | None = None
    written_from = src  # the file the output's deferred Pixel Data is copied from
    patch: Path | None = None  # scrubbed native frames to put over the copied ones
    try:
        if pixels is not None and "PixelData" in original:
            native = StreamPlan.of(original)
            encapsulated = EncapsulatedPlan.of(original) if native is None else None
            if native is not None or encapsulated is not None:  # large: scrubbed in batches
                folder = scratch if scratch is not None else src.parent
                folder.mkdir(parents=True, exist_ok=True)
                frames = folder / f".{os.getpid()}-{id(original)}.frames"
            try:
                if native is not None and frames is not None:
                    scrubbed = scrub_streamed(
                        original, src, native, frames, pixels.policy, pixels.ocr
                    )
                    patch = frames
                elif encapsulated is not None and frames is not None:
                    scrubbed = scrub_encapsulated(
                        original, src, encapsulated, frames, pixels.policy, pixels.ocr
                    )
                    written_from = frames if scrubbed.pixels_changed else src
                else:
                    scrubbed = scrub(original, pixels.policy, pixels.ocr)
            except Exception as exc:  # malformed pixel data: refused with the error's kind
                raise Refused(
                    RefusalKind.PIXELS_UNREADABLE,
                    f"pixel-scrub: the pixel data could not be decoded ({type(exc).__name__})",
                ) from exc
            if scrubbed.quarantined or scrubbed.dataset is None:
                raise Refused(
                    RefusalKind.PIXELS_UNREADABLE
                    if scrubbed.unreadable
                    else RefusalKind.BURNED_IN_TEXT,
                    f"pixel-scrub: {scrubbed.reason}",
                    scrubbed=scrubbed,
                )
            source = scrubbed.dataset
        try:
            result = apply(source, profile, keys, recipe, identity=identity)
            findings = verify(original, result.dataset, profile, recipe, identity=identity)
        except DocumentHeldBack as held:
            raise Refused(RefusalKind.DOCUMENT, str(held), scrubbed=scrubbed) from held
        if findings:
            raise Refused(
                RefusalKind.VERIFICATION,
                "verification-failed",
                findings=tuple(findings),
                scrubbed=scrubbed,
            )
        out = result.dataset
        uids = (str(out.StudyInstanceUID), str(out.SeriesInstanceUID), str(out.SOPInstanceUID))
        target = place(*uids)
        needles = hidden_bits.scanned_needles(identifying_values(original, include_dates=False))
        try:
            written_notes = _write(
                out, target, written_from, patch, streamed_only=written_from != src,
                needles=needles,
            )  # fmt: skip
        except Refused as refused:
            refused.scrubbed = scrubbed
            raise
        except Exception as exc:
            unreadable = isinstance(exc, PixelError)
            kind = RefusalKind.PIXELS_UNREADABLE if unreadable else RefusalKind.WRITE
            raise Refused(kind, f"write-failed: {type(exc).__name__}", scrubbed=scrubbed) from exc
        notes = list(result.notes)
        notes.extend(written_notes)
        return Written(
            target, dict(result.changes), notes, seen, scrubbed,
            _study_uid(original),
        )  # fmt: skip
    finally:
        if frames is not None:
            frames.unlink(missing_ok=True)


def _write(
    out: Dataset,
    target: Path,
    source: Path,
    frames: Path | None,
    *,
    streamed_only: bool,
    needles: Sequence[bytes] = (),
) -> list[str]:
    """Pixel Data copied from `source` (where `out`'s deferred element lies); `frames`: the
    scrubbed native frames of an instance scrubbed in batches, which replace the copied ones
    before the file appears at `target`. `streamed_only`: the deferred element lies in a
    file of its own (the rewritten Pixel Data of a compressed instance), so pydicom's own
    writing, which would read it from the input file, must not run. Native Pixel Data's bits
    outside the stored value and any bytes after its last frame are cleared (`hidden_bits`);
    compressed frames lose their comments and application segments (`codestream_file`), then
    are searched for the original's identifying values. Returns the notes (counts only)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    try:
        if frames is not None or streamed_only:
            if not write_streamed(out, tmp, source):
                raise PixelError("the instance scrubbed in batches could not be written")
            if frames is not None:
                patch_pixels(tmp, frames)
        elif not write_streamed(out, tmp, source):  # e.g. pixels changed by the scrub
            out.save_as(tmp, enforce_file_format=True)
        try:  # a JPEG comment, EXIF or XMP, a JPEG 2000 comment or JP2 box
            removed = codestream_file.strip_file(tmp)
        except CodestreamError as exc:
            raise Refused(RefusalKind.PIXELS_UNREADABLE, f"pixel-codestream: {exc}") from None
        try:  # e.g. an embedded overlay in the unused high bits; a name where no segment is
            cleared = hidden_bits.clean_written(tmp, hidden_bits.plan_of(out), needles)
        except hidden_bits.ValueInPixelData:
            raise Refused(
                RefusalKind.VERIFICATION,
                "verification-failed: an identifying value of the original is in the bytes of "
                "the compressed Pixel Data (e.g. a JPEG comment or application segment)",
            ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)  # may hold unscrubbed frames: never left behind
        raise
    tmp.replace(target)
    return [*cleared.notes(), *removed.notes()]
