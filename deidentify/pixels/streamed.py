"""Scrub a large native multi-frame instance a batch of frames at a time, file to file.

`scrub()` decodes every frame of an instance at once, so a 2 GB cine or angiography run would
need gigabytes of memory. For uncompressed (Explicit VR Little Endian) Pixel Data whose frames
lie at known offsets, this module runs the very same `scrub()` on one batch of frames after
another (each batch a small dataset carrying the instance's header and those frames) and writes
each batch's output frames to a pixels file; memory stays at about one batch whatever the
instance's size. Every frame is screened, every frame's decisions are the same as the whole
instance's scrub would make (each step of the scrub works frame by frame, and the region rules
and OCR plan depend on the header only), so the output bytes are the same too.

    plan = StreamPlan.of(ds)            # None: not eligible, call scrub() as usual
    result = scrub_streamed(ds, source, plan, pixels_out, policy, ocr)
    # result.dataset: the header with Pixel Data still deferred to `source`; after writing the
    # instance, `patch_pixels(target, pixels_out)` puts the scrubbed frames in place.

Fail closed: a batch that quarantines quarantines the instance; a pixels file that does not
match the written instance's Pixel Data raises `PixelError` and nothing may be sent.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import dcmread
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from deidentify.clean import identifying_values
from deidentify.pixels.frames import PixelError
from deidentify.pixels.ocr import OcrBackend
from deidentify.pixels.policy import PixelPolicy
from deidentify.pixels.scrub import ScrubResult, finish_header, scrub

PIXEL_DATA = Tag(0x7FE0, 0x0010)
STREAM_FROM_BYTES = 8 << 20  # smaller ones are scrubbed whole: ~3x this in memory (agent < 200 MB)
BATCH_BYTES = 4 << 20  # frames read, screened and written together (memory: a few times this)
_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB")
_PIXEL_MODULE = (
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "LossyImageCompression",
    "LossyImageCompressionMethod",
)  # fmt: skip


@dataclass(frozen=True)
class StreamPlan:
    """Where the frames are in the source file and how many go in one batch."""

    offset: int  # of the Pixel Data value in the source file
    length: int
    frames: int
    frame_bytes: int
    batch: int

    @classmethod
    def of(
        cls, ds: Dataset, *, from_bytes: int | None = None, batch_bytes: int | None = None
    ) -> StreamPlan | None:
        """A plan when `ds` (read with deferred Pixel Data) can be scrubbed in batches: Explicit
        VR Little Endian, a deferred Pixel Data of at least `from_bytes` (STREAM_FROM_BYTES),
        whole-byte samples, greyscale or interleaved RGB, and a length that is frames x frame
        size (+1 pad byte). Batches of about `batch_bytes` (BATCH_BYTES)."""
        from_bytes = STREAM_FROM_BYTES if from_bytes is None else from_bytes
        batch_bytes = BATCH_BYTES if batch_bytes is None else batch_bytes
        meta = getattr(ds, "file_meta", None)
        if meta is None or meta.get("TransferSyntaxUID") != ExplicitVRLittleEndian:
            return None
        if PIXEL_DATA not in ds:
            return None
        element = ds.get_item(PIXEL_DATA, keep_deferred=True)
        if not isinstance(element, RawDataElement) or element.value is not None:
            return None
        length = int(element.length)
        if length < from_bytes or element.VR not in ("OB", "OW"):
            return None
        try:
            rows, columns = int(ds.Rows), int(ds.Columns)
            allocated = int(ds.BitsAllocated)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            photometric = str(ds.get("PhotometricInterpretation", "")).strip()
            planar = int(ds.get("PlanarConfiguration", 0) or 0)
        except (AttributeError, TypeError, ValueError):
            return None
        if allocated not in (8, 16) or photometric not in _PHOTOMETRIC or planar != 0:
            return None
        if (photometric == "RGB") != (samples == 3) or samples not in (1, 3):
            return None
        frame_bytes = rows * columns * samples * allocated // 8
        if (
            frames < 2
            or frame_bytes <= 0
            or length not in (frames * frame_bytes, frames * frame_bytes + 1)
        ):
            return None
        batch = max(1, min(frames, batch_bytes // frame_bytes))
        return cls(int(element.value_tell), length, frames, frame_bytes, batch)


def scrub_streamed(
    ds: Dataset,
    source: Path,
    plan: StreamPlan,
    pixels_out: Path,
    policy: PixelPolicy | None = None,
    ocr: OcrBackend | None = None,
    *,
    identifying: Iterable[str] | None = None,
) -> ScrubResult:
    """Scrub `ds` (read from `source` with deferred Pixel Data) batch by batch. The scrubbed
    Pixel Data value goes to `pixels_out`; the result's dataset keeps Pixel Data deferred."""
    needles = list(identifying if identifying is not None else identifying_values(ds))
    header = _without_pixels(ds)
    merged = ScrubResult(None)
    changed_any = False
    pixel_module: Dataset | None = None  # attributes the scrub's writer set (the first batch's)
    with source.open("rb") as src, pixels_out.open("wb") as out:
        for first in range(0, plan.frames, plan.batch):
            count = min(plan.batch, plan.frames - first)
            src.seek(plan.offset + first * plan.frame_bytes)
            raw = src.read(count * plan.frame_bytes)
            if len(raw) != count * plan.frame_bytes:
                raise PixelError("the file ended inside Pixel Data")
            part = _without_pixels(header)
            # a new element: the header's own is shared with `ds`, which must not change
            part["NumberOfFrames"] = DataElement(Tag(0x0028, 0x0008), "IS", count)
            part.PixelData = raw
            result = scrub(
                part, policy, ocr, identifying=needles, preview=False, instance_frames=plan.frames
            )
            _merge(merged, result, first)
            if result.quarantined or result.dataset is None:
                merged.reason = f"{result.reason} (in frames {first}-{first + count - 1})"
                merged.unreadable = result.unreadable
                return merged
            data = bytes(result.dataset.PixelData) if result.pixels_changed else raw
            if len(data) != len(raw):
                raise PixelError("a scrubbed batch changed the size of its frames")
            if result.pixels_changed and pixel_module is None:
                pixel_module = result.dataset
            changed_any |= result.pixels_changed
            out.write(data)
        if plan.length % plan.frame_bytes:
            out.write(b"\0")  # the pad byte of an odd length
    # the header as the scrub leaves it (overlays and icons removed, Burned In Annotation...)
    whole = scrub(header, policy, None, identifying=needles, preview=False)
    dataset = whole.dataset if whole.dataset is not None else copy.deepcopy(header)
    dataset[PIXEL_DATA] = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if "NumberOfFrames" in ds:
        dataset.NumberOfFrames = ds.NumberOfFrames
    if pixel_module is not None:  # as the whole instance's scrub would have written them
        for keyword in _PIXEL_MODULE:
            if keyword in pixel_module:
                setattr(dataset, keyword, pixel_module[keyword].value)
    every_frame_read = (policy or PixelPolicy.default()).ocr_plan(ds, plan.frames).complete
    finish_header(dataset, ds, every_frame_read=every_frame_read)
    merged.dataset = dataset
    merged.pixels_changed = changed_any
    merged.rules = list(dict.fromkeys(merged.rules + whole.rules))
    merged.notes = list(dict.fromkeys(merged.notes + whole.notes))
    return merged


def _without_pixels(ds: Dataset) -> Dataset:
    """A new dataset with every element of `ds` but Pixel Data (elements shared, still raw
    where they were: nothing is read or decoded here)."""
    tags = list(ds.keys())  # iterating a Dataset itself would read (convert) its elements
    out = Dataset({t: ds.get_item(t, keep_deferred=True) for t in tags if t != PIXEL_DATA})
    out.file_meta = ds.file_meta
    return out


def _merge(into: ScrubResult, part: ScrubResult, first: int) -> None:
    for index, boxes in part.boxes.items():
        into.boxes.setdefault(first + index, []).extend(boxes)
    for index, kept in part.kept.items():
        into.kept.setdefault(first + index, []).extend(kept)
    for index, hits in part.residual.items():
        into.residual.setdefault(first + index, []).extend(hits)
    into.rules = list(dict.fromkeys(into.rules + part.rules))
    into.notes = list(dict.fromkeys(into.notes + part.notes))
    into.ocr_frames += tuple(first + i for i in part.ocr_frames)
    into.ocr_complete = part.ocr_complete if first == 0 else into.ocr_complete and part.ocr_complete
    into.hits.update(part.hits)
    into.text_lines += part.text_lines
    into.learned_frames += part.learned_frames
    into.learned_regions += part.learned_regions


def patch_pixels(target: Path, pixels: Path) -> None:
    """Put the scrubbed Pixel Data value of `pixels` into the instance written at `target`, in
    place (the same length, so nothing else moves). Raises PixelError when they do not match:
    the caller must not send `target` then. Like `write_streamed`, syncs nothing: the caller
    makes the file durable when it needs to (the agent seals it into a bundle, then syncs)."""
    with target.open("rb") as fp:
        written = dcmread(fp, defer_size=1024)
        element = (
            written.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in written else None
        )
    size = pixels.stat().st_size
    if not isinstance(element, RawDataElement) or element.length != size:
        raise PixelError("the written instance's Pixel Data does not match the scrubbed frames")
    offset = int(element.value_tell)
    with pixels.open("rb") as src, target.open("r+b") as dst:
        copied = 0
        while copied < size:
            chunk = src.read(min(4 << 20, size - copied))
            if not chunk:
                raise PixelError("the scrubbed frames file ended early")
            os.pwrite(dst.fileno(), chunk, offset + copied)
            copied += len(chunk)
