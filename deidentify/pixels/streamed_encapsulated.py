"""Scrub a large compressed (encapsulated) multi-frame instance a batch of frames at a time.

The compressed counterpart of `deidentify.pixels.streamed`: `scrub()` decodes every frame at
once, so a long JPEG or JPEG 2000 cine would need its whole decoded size in memory. Here the
frames are read from the file one batch at a time (pydicom's `generate_frames` over the open
file: a fragment at a time), each batch is given to the very same `scrub()` as a small
encapsulated dataset carrying the instance's header, and nothing larger than a batch is held.

When no batch changes a pixel, the instance keeps its Pixel Data as it was (copied file to file
when written). When any batch changes, the whole Pixel Data is rewritten in the output syntax
the scrub chose (the source's own lossless syntax when an encoder is installed, else Explicit
VR Little Endian; never a lossy one), exactly as the whole-instance scrub writes it: the
changed batches' frames as the scrub encoded them, the unchanged ones decoded and encoded the
same way in a second pass, and, for an encapsulated output, a Basic Offset Table over all
frames, as `pydicom.encaps.encapsulate` builds it. The new value goes to a pixels file, and the
result's dataset points its deferred Pixel Data at offset 0 of that file, so
`deidentify.instance_file.write_streamed(dataset, target, pixels_file)` copies it into the
output. The output bytes are the whole-instance scrub's (tested).

    plan = EncapsulatedPlan.of(ds)        # None: not eligible
    result = scrub_encapsulated(ds, source, plan, pixels_out, policy, ocr)
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.tag import Tag
from pydicom.uid import UID

from deidentify.clean import identifying_values
from deidentify.pixels.frames import PixelError, decode, write
from deidentify.pixels.ocr import OcrBackend
from deidentify.pixels.policy import PixelPolicy
from deidentify.pixels.scrub import ScrubResult, finish_header, scrub
from deidentify.pixels.streamed import BATCH_BYTES, STREAM_FROM_BYTES, _merge, _without_pixels

PIXEL_DATA = Tag(0x7FE0, 0x0010)
_UNDEFINED = 0xFFFFFFFF
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


@dataclass(frozen=True)
class EncapsulatedPlan:
    """Where the encapsulated Pixel Data starts and how many frames go in one batch."""

    offset: int  # of the Pixel Data value (its Basic Offset Table item) in the source file
    frames: int
    batch: int

    @classmethod
    def of(
        cls, ds: Dataset, *, from_bytes: int | None = None, batch_bytes: int | None = None
    ) -> EncapsulatedPlan | None:
        """A plan when `ds` (read with deferred Pixel Data) has encapsulated multi-frame Pixel
        Data in an explicit little endian syntax, no Extended Offset Table, and a decoded size
        (frames x rows x columns x samples x bytes) of at least `from_bytes`."""
        from_bytes = STREAM_FROM_BYTES if from_bytes is None else from_bytes
        batch_bytes = BATCH_BYTES if batch_bytes is None else batch_bytes
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if syntax is None or not UID(syntax).is_encapsulated or PIXEL_DATA not in ds:
            return None
        if "ExtendedOffsetTable" in ds:
            return None
        element = ds.get_item(PIXEL_DATA, keep_deferred=True)
        if not isinstance(element, RawDataElement) or element.value is not None:
            return None
        if element.length != _UNDEFINED:
            return None
        try:
            rows, columns = int(ds.Rows), int(ds.Columns)
            allocated = int(ds.BitsAllocated)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            return None
        frame_bytes = rows * columns * samples * max(1, allocated // 8)
        if frames < 2 or frame_bytes <= 0 or frames * frame_bytes < from_bytes:
            return None
        batch = max(1, min(frames, batch_bytes // frame_bytes))
        return cls(int(element.value_tell), frames, batch)


def _frames(fp: BinaryIO, plan: EncapsulatedPlan) -> Iterator[bytes]:
    fp.seek(plan.offset)
    return generate_frames(fp, number_of_frames=plan.frames)


def _take(frames: Iterator[bytes], count: int) -> list[bytes]:
    taken = []
    for _ in range(count):
        try:
            taken.append(next(frames))
        except StopIteration as exc:
            raise PixelError("the encapsulated Pixel Data holds fewer frames than stated") from exc
    return taken


def _part(header: Dataset, frames: list[bytes]) -> Dataset:
    part = _without_pixels(header)
    # a new element: the header's own is shared with the caller's dataset, which must not change
    part["NumberOfFrames"] = DataElement(Tag(0x0028, 0x0008), "IS", len(frames))
    part["PixelData"] = DataElement(PIXEL_DATA, "OB", encapsulate(frames))
    part["PixelData"].is_undefined_length = True
    return part


def _output_frames(ds: Dataset, count: int) -> list[bytes]:
    """The `count` frames of a scrubbed batch as the scrub wrote them (encoded, or native)."""
    value = bytes(ds.PixelData)
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated:
        return list(generate_frames(value, number_of_frames=count))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    size = int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated) // 8
    if len(value) < size * count:
        raise PixelError("a scrubbed batch is shorter than its frames")
    return [value[i * size : (i + 1) * size] for i in range(count)]


def _reencoded(part: Dataset, syntax: UID) -> Dataset:
    """An unchanged batch written the way the scrub writes a changed one (decoded, encoded)."""
    out = copy.deepcopy(part)
    write(out, decode(part), syntax)
    return out


def scrub_encapsulated(
    ds: Dataset,
    source: Path,
    plan: EncapsulatedPlan,
    pixels_out: Path,
    policy: PixelPolicy | None = None,
    ocr: OcrBackend | None = None,
    *,
    identifying: Iterable[str] | None = None,
) -> ScrubResult:
    """Scrub `ds` (read from `source` with deferred Pixel Data) batch by batch; see the module
    docstring. `pixels_out` holds the new Pixel Data value when the result's pixels changed."""
    needles = list(identifying if identifying is not None else identifying_values(ds))
    header = _without_pixels(ds)
    merged = ScrubResult(None)
    first_changed: Dataset | None = None  # the first changed batch as the scrub wrote it
    spilled: dict[int, list[tuple[int, int]]] = {}  # changed batch -> its frames in the spill
    spill = pixels_out.with_name(pixels_out.name + ".batches")
    try:
        with source.open("rb") as src, spill.open("w+b") as batches:
            frames = _frames(src, plan)
            for first in range(0, plan.frames, plan.batch):
                count = min(plan.batch, plan.frames - first)
                result = scrub(
                    _part(header, _take(frames, count)), policy, ocr,
                    identifying=needles, preview=False, instance_frames=plan.frames,
                )  # fmt: skip
                _merge(merged, result, first)
                if result.quarantined or result.dataset is None:
                    merged.reason = f"{result.reason} (in frames {first}-{first + count - 1})"
                    merged.unreadable = result.unreadable
                    return merged
                if result.pixels_changed:
                    spilled[first] = []
                    for frame in _output_frames(result.dataset, count):
                        spilled[first].append((batches.tell(), len(frame)))
                        batches.write(frame)
                    if first_changed is None:
                        first_changed = _without_pixels(result.dataset)
                        first_changed.file_meta = copy.deepcopy(result.dataset.file_meta)
            every_frame_read = (policy or PixelPolicy.default()).ocr_plan(ds, plan.frames).complete
            if first_changed is None:  # nothing changed: Pixel Data stays as it was
                whole = scrub(header, policy, None, identifying=needles, preview=False)
                dataset = whole.dataset if whole.dataset is not None else copy.deepcopy(header)
                finish_header(dataset, ds, every_frame_read=every_frame_read)
                dataset[PIXEL_DATA] = ds.get_item(PIXEL_DATA, keep_deferred=True)
                merged.dataset = dataset
                return merged
            syntax = UID(first_changed.file_meta.TransferSyntaxUID)
            with pixels_out.open("wb") as out:
                length = _assemble(src, plan, header, spilled, batches, syntax, out)
    finally:
        spill.unlink(missing_ok=True)
    # the header as the scrub wrote the changed batch's (overlays and icons removed, the pixel
    # module and transfer syntax of the new Pixel Data, lossy compression history), with the
    # instance's own frame count and Burned In Annotation as the whole instance's plan decides
    dataset = first_changed
    dataset.NumberOfFrames = ds.NumberOfFrames
    if not every_frame_read:
        if "BurnedInAnnotation" in ds:
            dataset.BurnedInAnnotation = ds.BurnedInAnnotation
        elif "BurnedInAnnotation" in dataset:
            del dataset.BurnedInAnnotation
    bits = int(dataset.get("BitsAllocated", 8) or 8)
    vr = "OB" if syntax.is_encapsulated or bits <= 8 else "OW"
    value_length = _UNDEFINED if syntax.is_encapsulated else length
    dataset[PIXEL_DATA] = RawDataElement(PIXEL_DATA, vr, value_length, None, 0, False, True)
    merged.dataset = dataset
    merged.pixels_changed = True
    return merged


def _assemble(
    src: BinaryIO,
    plan: EncapsulatedPlan,
    header: Dataset,
    spilled: dict[int, list[tuple[int, int]]],
    batches: BinaryIO,
    syntax: UID,
    out: BinaryIO,
) -> int:
    """Write the new Pixel Data value to `out`: every frame in `syntax`, in order (a changed
    batch's frames from the spill file, an unchanged batch's decoded and encoded again); for
    an encapsulated syntax, items after a Basic Offset Table and a sequence delimiter, as
    `encapsulate` writes them. Returns the value's length (native: including the pad byte)."""
    encapsulated = syntax.is_encapsulated
    offsets: list[int] = []
    if encapsulated:
        out.write(_ITEM + struct.pack("<I", 4 * plan.frames) + b"\0" * (4 * plan.frames))
    start = out.tell()
    frames = _frames(src, plan)
    for first in range(0, plan.frames, plan.batch):
        count = min(plan.batch, plan.frames - first)
        originals = _take(frames, count)
        if first in spilled:
            output = []
            for at, size in spilled[first]:
                batches.seek(at)
                output.append(batches.read(size))
        else:
            output = _output_frames(_reencoded(_part(header, originals), syntax), count)
        for frame in output:
            if encapsulated:
                offsets.append(out.tell() - start)
                padded = frame + b"\0" * (len(frame) % 2)
                out.write(_ITEM + struct.pack("<I", len(padded)) + padded)
            else:
                out.write(frame)
    if encapsulated:
        if out.tell() - start > 0xFFFFFFFF:
            raise PixelError("the scrubbed Pixel Data is too large for a Basic Offset Table")
        out.write(_DELIMITER)
        out.seek(8)
        out.write(struct.pack(f"<{plan.frames}I", *offsets))
        out.seek(0, 2)
        return _UNDEFINED
    if out.tell() % 2:
        out.write(b"\0")
    return out.tell()
