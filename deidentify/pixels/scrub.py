"""Clean Pixel Data: blank burned-in identity on every frame, verify by reading again, fail closed.

    result = scrub(ds, PixelPolicy.default(), TesseractBackend())
    if result.quarantined:
        reason, preview = result.reason, result.preview   # preview: PNG bytes, caller writes
    else:
        out = result.dataset                                # a new dataset; ds is unchanged

Order: overlays (60xx) and Icon Image Sequences are removed; region rules and (for US) the
complement of Sequence of Ultrasound Regions are blanked on every frame; the text detector
screens every frame (`screen.py`, no OCR); a frame that is a page of text is quarantined or
blanked whole (policy `documents`); OCR reads the frames the policy plans plus the detected
lines, and blanks words that match the instance's identifying values or PHI patterns; every
detected line is blanked unless OCR read it as safe text (policy `text`, `allow.py`), and so is
every region the learned detector (`netdetect.py`, policy `learned`: by default on the frames
where the screen found text) finds, as its rotated polygon, unless it lies on a safe line. Then a
second OCR pass over the changed frames must read nothing identifying, and the detector,
run again, must find no text-like line but the kept ones. A missing decoder, a missing OCR
backend when the plan needs OCR, a decode or encode failure, a page of text (by default) or
a second-pass finding quarantines the instance (`dataset` is None), with a before/after
preview for the second-pass findings; so does a missing learned detector when the policy says
every frame must be checked by it (`learned = "every-frame"`; with "auto" the classical
detector alone is used and the notes say so). Without OCR, detected lines are all blanked.

Identifying values come from the dataset itself (`deidentify.clean.identifying_values`); when
scrubbing an already de-identified copy, pass the original's values as `identifying`.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from deidentify.clean import identifying_values
from deidentify.pixels import netdetect
from deidentify.pixels.detect import Hit, Needles, find_hits
from deidentify.pixels.frames import Decoded, PixelError, decode, fill_value, output_syntax, write
from deidentify.pixels.frames import rgb8 as _rgb8
from deidentify.pixels.netdetect import TextRegion
from deidentify.pixels.ocr import Box, OcrBackend, OcrUnavailable, OcrWord, merge_until_stable
from deidentify.pixels.ocr_input import ocr_image
from deidentify.pixels.policy import OcrPlan, PixelPolicy
from deidentify.pixels.preview import Preview, encode_png, outline
from deidentify.pixels.screen import decide, learned, learned_boxes, ocr_view, rescreen, screen
from deidentify.pixels.textdetect import TextLine, document_like

_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)
AUTO_EVERY_FRAME_UP_TO = 2  # "auto" runs the learned stage on every radiograph-sized frame
# of an instance of at most this many frames (not a tomosynthesis stack of 60)
RESCREEN_ROUNDS = 2  # rounds of blanking what the screen finds after scrubbing


@dataclass
class ScrubResult:
    """What was done. `dataset` is None when quarantined. Never holds header or OCR text."""

    dataset: Dataset | None = field(repr=False)
    reason: str | None = None  # quarantine reason (no PHI)
    boxes: dict[int, list[Box]] = field(default_factory=dict)  # blanked, per frame
    rules: list[str] = field(default_factory=list)  # names of the region rules applied
    ocr_frames: tuple[int, ...] = ()
    ocr_complete: bool = False
    hits: Counter[str] = field(default_factory=Counter)  # kinds of OCR hits blanked
    residual: dict[int, list[Hit]] = field(default_factory=dict)  # second-pass hits
    text_lines: int = 0  # lines the detector found (all frames)
    learned_frames: int = 0  # frames the learned detector looked at
    learned_regions: int = 0  # text regions it found there
    kept: dict[int, list[Box]] = field(default_factory=dict)  # lines OCR read as safe text
    notes: list[str] = field(default_factory=list)
    pixels_changed: bool = False
    preview: Preview | None = field(default=None, repr=False)
    unreadable: bool = False  # quarantined because the pixels could not be decoded or encoded

    @property
    def quarantined(self) -> bool:
        return self.reason is not None

    @property
    def blanked_box_count(self) -> int:
        return sum(len(b) for b in self.boxes.values())


def scrub(
    ds: Dataset,
    policy: PixelPolicy | None = None,
    ocr: OcrBackend | None = None,
    *,
    identifying: Iterable[str] | None = None,
    preview: bool = True,
    instance_frames: int | None = None,
) -> ScrubResult:
    """Scrub burned-in identity from `ds` (not modified); see the module docstring.
    `instance_frames`: the whole instance's frame count when `ds` holds a batch of them."""
    policy = policy or PixelPolicy.default()
    out = copy.deepcopy(ds)
    result = ScrubResult(out)
    _remove_overlays_and_icons(out, result)
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            result.notes.append("float pixel data is not scanned")
        return result
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.Rows), int(ds.Columns)
    static = _static_mask(ds, policy, rows, columns, result)
    plan = policy.ocr_plan(ds, frames_n)
    result.ocr_frames, result.ocr_complete = plan.frames, plan.complete
    reader = ocr if ocr is not None and policy.ocr_enabled else None
    if plan.frames:
        if reader is None:
            return _quarantine(result, "OCR is required by the policy but no OCR backend is set")
        if not reader.is_available():
            return _quarantine(
                result, f"OCR is required but unavailable: {reader.unavailable_reason()}"
            )
    every_frame = policy.learned == "every-frame" and policy.text != "ocr"
    if every_frame and (missing := netdetect.unavailable_reason()) is not None:
        return _quarantine(
            result,
            "the pixel policy requires the learned text detector on every frame (learned = "
            f"every-frame) but it is unavailable: {missing}",
        )
    if static is None and not plan.frames and policy.detect is None and not every_frame:
        return result
    try:
        decoded = decode(ds)
    except PixelError as exc:
        return _quarantine(result, str(exc), unreadable=True)
    if static is not None:
        _blank_mask(decoded, static)
        result.pixels_changed = True
    needles = Needles.from_values(
        identifying if identifying is not None else identifying_values(ds)
    )
    lines = screen(decoded, policy.detect) if policy.detect is not None else {}
    result.text_lines = sum(len(v) for v in lines.values())
    pages = [i for i, found in lines.items() if document_like(found, rows, columns)]
    if pages:
        if policy.documents == "quarantine":
            return _quarantine(
                result,
                f"frame(s) {', '.join(map(str, pages[:10]))} hold a page of text (a document "
                "or screenshot): quarantined by the pixel policy (documents = quarantine)",
            )
        for index in pages:
            _blank_box(decoded, index, Box(0, 0, columns, rows))
            result.boxes.setdefault(index, []).append(Box(0, 0, columns, rows))
            del lines[index]
        result.pixels_changed = True
        result.notes.append(f"blanked {len(pages)} page(s) of text whole")
    few = (instance_frames or frames_n) <= AUTO_EVERY_FRAME_UP_TO
    regions = _learned(decoded, lines, policy, result, few=few)
    if regions is None:
        return _quarantine(
            result,
            "the pixel policy requires the learned text detector on every frame (learned = "
            f"every-frame) but it failed: {result.notes[-1]}",
        )
    if reader is not None and lines and not reader.is_available():
        result.notes.append("OCR unavailable: every detected text line is blanked")
        reader = None
    changed: set[int] = set()
    try:
        read = _read_frames(decoded, plan, lines, policy, reader, needles) if reader else {}
        words = {i: w for i, (w, _) in read.items()}
        for index, (_, hits) in read.items():
            changed |= _blank_hits(decoded, index, hits, policy, result)
        for index, found in lines.items():
            hits = read[index][1] if index in read else []
            blank, kept = decide(found, words.get(index), hits, policy)
            if kept:
                result.kept[index] = kept
            for box in dict.fromkeys(blank):  # words of detected lines, already joined
                clipped = box.clip(columns, rows)
                if clipped is not None:
                    _blank_box(decoded, index, clipped)
                    result.boxes.setdefault(index, []).append(clipped)
                    changed.add(index)
        for index, found_regions in regions.items():
            done = result.boxes.get(index, [])
            kept = result.kept.get(index, [])
            net = policy.net
            for box in learned_boxes(found_regions, kept, done, columns, rows, net.covered):
                _blank_box(decoded, index, box)
                result.boxes.setdefault(index, []).append(box)
                changed.add(index)
        if changed:
            result.pixels_changed = True
        if policy.second_pass and changed and reader is not None:
            _second_pass(decoded, sorted(changed), policy, reader, needles, result)
    except OcrUnavailable as exc:
        return _quarantine(result, f"OCR failed: {exc}")
    if policy.second_pass and policy.detect is not None and policy.text != "ocr":
        _rescreen(decoded, set(lines) | changed, policy, result)
    if result.residual:
        frames = ", ".join(str(i) for i in sorted(result.residual)[:10])
        kinds = sorted({h.kind for hits in result.residual.values() for h in hits})
        what = (
            "text-like marks remain after scrubbing"
            if kinds == ["text-like"]
            else "second OCR pass still reads identifying text"
        )
        _quarantine(result, f"{what} ({', '.join(kinds)}) on frame(s) {frames}")
        if preview:
            result.preview = _make_preview(ds, decoded, result)
        return result
    if result.pixels_changed:
        try:
            write(out, decoded, output_syntax(decoded.source_syntax, policy.output_syntax))
        except PixelError as exc:
            return _quarantine(result, str(exc), unreadable=True)
    finish_header(out, ds, every_frame_read=plan.complete)
    return result


def finish_header(out: Dataset, source: Dataset, *, every_frame_read: bool) -> None:
    """What the scrub records in the header of an instance it lets through: Burned In
    Annotation NO once every frame was screened and read, and Recognizable Visual Features YES
    for photographs (XC, GM), whose faces are not removed here."""
    if every_frame_read:
        out.BurnedInAnnotation = "NO"
    modality = str(source.get("Modality", "")).upper()
    if modality in ("XC", "GM") and "RecognizableVisualFeatures" not in out:
        out.RecognizableVisualFeatures = "YES"


def _learned(
    decoded: Decoded,
    lines: dict[int, list[TextLine]],
    policy: PixelPolicy,
    result: ScrubResult,
    *,
    few: bool = False,
) -> dict[int, list[TextRegion]] | None:
    """The learned detector's regions on the frames the policy names: every frame, or those
    where the classical screen found text ("auto"); under "auto" also every frame of an
    instance of `few` radiograph-sized frames (a CR, DX or mammogram: one frame, its text
    small against its size, affordable to look at whole). Unavailable or failing under
    "auto": the notes say so and the classical detector's lines are all there is; failing
    under "every-frame": None (the caller quarantines; unavailable was quarantined earlier)."""
    if policy.learned == "off" or policy.text == "ocr":
        return {}
    rows, columns = decoded.frames.shape[1:3]
    large = few and netdetect.tiled_scale(rows, columns, policy.net) is not None
    every = policy.learned == "every-frame" or large
    frames = range(decoded.count) if every else sorted(lines)
    if not frames:
        return {}
    missing = netdetect.unavailable_reason()
    if missing is not None:
        result.notes.append(
            f"learned text detector unavailable, classical detector only: {missing}"
        )
        return {}
    try:
        found = learned(decoded, frames, policy.net)
    except netdetect.NetFailed as exc:
        result.notes.append(f"{exc}: classical detector only")
        return None if policy.learned == "every-frame" else {}
    result.learned_frames = len(frames)
    result.learned_regions = sum(len(r) for r in found.values())
    return found


def _rescreen(decoded: Decoded, frames: set[int], policy: PixelPolicy, result: ScrubResult) -> None:
    """Screen the scrubbed frames again. Text-like lines left over (what blanking uncovered:
    the rest of a line, marks no longer joined to their neighbours) are blanked too, for up
    to `RESCREEN_ROUNDS` rounds; what the last screen still finds is residual (quarantine)."""
    assert policy.detect is not None
    for round_ in range(RESCREEN_ROUNDS + 1):
        left = rescreen(decoded, frames, policy.detect, result.kept, result.boxes)
        if not left:
            return
        if round_ == RESCREEN_ROUNDS:
            for index, boxes in left.items():
                result.residual.setdefault(index, []).extend(Hit(b, "text-like") for b in boxes)
            return
        for index, boxes in left.items():
            for box in boxes:
                _blank_box(decoded, index, box)
                result.boxes.setdefault(index, []).append(box)
        result.pixels_changed = True
        frames = set(left)


def _quarantine(result: ScrubResult, reason: str, *, unreadable: bool = False) -> ScrubResult:
    result.reason = reason
    result.unreadable = unreadable
    result.dataset = None
    return result


def _remove_overlays_and_icons(ds: Dataset, result: ScrubResult) -> None:
    removed = 0
    for group in _OVERLAY_GROUPS:
        tags = [elem.tag for elem in ds if elem.tag.group == group]
        if tags:
            removed += 1
            for tag in tags:
                del ds[tag]
    if removed:
        result.notes.append(f"removed {removed} overlay group(s)")
    icons = _remove_icons(ds)
    if icons:
        result.notes.append(f"removed {icons} Icon Image Sequence(s)")


def _remove_icons(ds: Dataset) -> int:
    count = 0
    if "IconImageSequence" in ds:
        del ds["IconImageSequence"]
        count += 1
    for elem in list(ds.iterall()):
        if elem.VR == "SQ" and isinstance(elem.value, DicomSequence):
            for item in elem.value:
                if "IconImageSequence" in item:
                    del item["IconImageSequence"]
                    count += 1
    return count


def _static_mask(
    ds: Dataset, policy: PixelPolicy, rows: int, columns: int, result: ScrubResult
) -> npt.NDArray[np.bool_] | None:
    """Pixels to blank on every frame: region rules and, for US, outside the regions."""
    mask = np.zeros((rows, columns), dtype=bool)
    boxes: list[Box] = []
    for rule in policy.rules.matching(ds):
        result.rules.append(rule.name)
        boxes.extend(rule.boxes(columns, rows))
    for box in boxes:
        mask[box.top : box.bottom, box.left : box.right] = True
    if policy.ultrasound_regions_only and str(ds.get("Modality", "")).upper() == "US":
        regions = ds.get("SequenceOfUltrasoundRegions", None)
        if regions:
            keep = np.zeros_like(mask)
            for item in regions:
                try:
                    x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
                    x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
                except (AttributeError, TypeError, ValueError):
                    continue
                keep[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
            if keep.any():
                mask |= ~keep
                result.notes.append("kept only the ultrasound regions")
        else:
            result.notes.append("no Sequence of Ultrasound Regions: OCR and rules only")
    if boxes:
        for frame in range(int(ds.get("NumberOfFrames", 1) or 1)):
            result.boxes.setdefault(frame, []).extend(boxes)
    return mask if mask.any() else None


def _blank_mask(decoded: Decoded, mask: npt.NDArray[np.bool_]) -> None:
    for i in range(decoded.count):
        frame = decoded.frames[i]
        frame[mask] = fill_value(frame, decoded.photometric)


def _blank_box(decoded: Decoded, index: int, box: Box) -> None:
    frame = decoded.frames[index]
    frame[box.top : box.bottom, box.left : box.right] = fill_value(frame, decoded.photometric)


def _read(
    decoded: Decoded,
    indices: Sequence[int],
    policy: PixelPolicy,
    ocr: OcrBackend,
    needles: Needles,
    *,
    verify: bool = False,
    only: dict[int, list[TextLine]] | None = None,
) -> dict[int, tuple[list[OcrWord], list[Hit]]]:
    """OCR words (frame coordinates) and hits per frame; `only` limits a frame to its lines."""
    scale = max(policy.ocr_upscale, 1)
    images = []
    for i in indices:
        image = ocr_image(decoded.frames[i], decoded.photometric)
        if only is not None and i in only:
            image = ocr_view(image, only[i], policy.margin)
        if scale > 1:
            image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
        images.append(image)
    pages = ocr.read(images)
    if len(pages) != len(indices):
        raise OcrUnavailable("OCR returned a different number of pages than it was given")
    found: dict[int, tuple[list[OcrWord], list[Hit]]] = {}
    for index, page in zip(indices, pages, strict=True):
        hits = find_hits(page, needles, patterns=policy.patterns, verify=verify)
        words = [
            OcrWord(w.text, w.box.scaled(scale), w.confidence, w.line, w.reading) for w in page
        ]
        found[index] = (words, [Hit(h.box.scaled(scale), h.kind) for h in hits])
    return found


def _read_frames(
    decoded: Decoded,
    plan: OcrPlan,
    lines: dict[int, list[TextLine]],
    policy: PixelPolicy,
    ocr: OcrBackend,
    needles: Needles,
) -> dict[int, tuple[list[OcrWord], list[Hit]]]:
    """The planned frames read whole, the other frames with detected text read in its lines."""
    whole = set(plan.frames)
    only = {i: found for i, found in lines.items() if i not in whole}
    indices = sorted(whole | set(only))
    if not indices:
        return {}
    return _read(decoded, indices, policy, ocr, needles, only=only)


def _blank_hits(
    decoded: Decoded, index: int, hits: Sequence[Hit], policy: PixelPolicy, result: ScrubResult
) -> set[int]:
    changed: set[int] = set()
    for hit in hits:
        result.hits[hit.kind] += 1
    grown = [h.box.grow(policy.margin) for h in hits]
    for box in merge_boxes(grown):
        clipped = box.clip(decoded.columns, decoded.rows)
        if clipped is None:
            continue
        _blank_box(decoded, index, clipped)
        result.boxes.setdefault(index, []).append(clipped)
        changed.add(index)
    return changed


def merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Join boxes of one text line that touch or are at most one text height apart, so the
    gaps between blanked words of a value do not stay as slivers; drop duplicates."""

    def same_line_neighbours(box: Box, other: Box) -> bool:
        overlap_rows = min(box.bottom, other.bottom) - max(box.top, other.top)
        gap = max(box.left, other.left) - min(box.right, other.right)
        height = min(box.height, other.height)
        return overlap_rows >= height // 2 and gap <= height

    return merge_until_stable(
        sorted(set(boxes), key=lambda b: (b.top, b.left)), same_line_neighbours
    )


def _second_pass(
    decoded: Decoded,
    indices: Sequence[int],
    policy: PixelPolicy,
    ocr: OcrBackend,
    needles: Needles,
    result: ScrubResult,
) -> None:
    for index, (_, hits) in _read(decoded, indices, policy, ocr, needles, verify=True).items():
        if hits:
            result.residual[index] = hits


def _make_preview(source: Dataset, scrubbed: Decoded, result: ScrubResult) -> Preview | None:
    """Before (input, blanked boxes outlined) and after (output, residual hits outlined)."""
    frames = sorted(result.residual) or sorted(result.boxes) or [0]
    index = frames[0]
    try:
        original = decode(source)
    except PixelError:
        return None
    before = outline(
        _rgb8(original.frames[index], original.photometric), result.boxes.get(index, [])
    )
    after = outline(
        _rgb8(scrubbed.frames[index], scrubbed.photometric),
        [h.box for h in result.residual.get(index, [])],
    )
    return Preview(index, encode_png(before), encode_png(after))


def make_preview(source: Dataset, result: ScrubResult, frame: int | None = None) -> Preview:
    """A preview for any finished result with a dataset (e.g. for spot checks)."""
    if result.dataset is None:
        if result.preview is None:
            raise ValueError("this result has no output and no preview")
        return result.preview
    index = frame if frame is not None else (sorted(result.boxes) or [0])[0]
    before_px, after_px = decode(source), decode(result.dataset)
    before = outline(
        _rgb8(before_px.frames[index], before_px.photometric), result.boxes.get(index, [])
    )
    after = _rgb8(after_px.frames[index], after_px.photometric)
    return Preview(index, encode_png(before), encode_png(after))
