"""`hexchange-deid`: a thin file-system shell over `deidentify.apply` and `deidentify.verify`.

    hexchange-deid IN OUT [--option NAME ...] [--recipe site.toml] --key-file KEY
                   [--report report.json] [--quarantine DIR] [--workers N]

IN is a DICOM file or a folder (searched recursively). De-identified instances are written
under OUT as ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` (input paths are not reused: folder
and file names often carry patient names). A file that cannot be read as DICOM, or whose output
fails verification, is copied unchanged into the quarantine folder (default ``OUT/../quarantine``)
with a ``.reason.json`` naming the problem (attributes, never values); the batch continues and
the exit status is 1 when anything was quarantined.

Files are read with ``defer_size`` so Pixel Data stays on disk; the header is encoded by
`deidentify.encode` and Pixel Data is copied file to file (``copy_file_range``), so memory stays
flat whatever the instance size.

A recipe (``--recipe``) adds site overrides, validated before anything is read (see
`deidentify.recipe`); an invalid recipe stops the run with every problem, its line and fix.

The key file holds the network secret: at least 32 bytes, raw or as hex text.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import shutil
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deidentify import fastpath
from deidentify.documents import DocumentHeldBack
from deidentify.encode import encode_elements, encode_file_meta
from deidentify.engine import PseudonymKeys, apply
from deidentify.heldback import HeldBack
from deidentify.identity import StudyIdentity
from deidentify.pixels import (
    PixelPolicy,
    PixelTally,
    ScrubResult,
    TesseractBackend,
    scrub,
    study_key,
)
from deidentify.pixels import outcome as pixel_outcome
from deidentify.pixels.frames import PixelError
from deidentify.pixels.streamed import StreamPlan, patch_pixels, scrub_streamed
from deidentify.profile import Option, Profile
from deidentify.rawidentity import Seen
from deidentify.recipe import Recipe, RecipeError, parse_recipe
from deidentify.studyscan import reruns
from deidentify.verify import verify

app = typer.Typer(add_completion=False, help=__doc__)
_log = logging.getLogger(__name__)


@dataclass
class Outcome:
    source: str
    output: str | None = None
    quarantined: bool = False
    reason: str = ""
    findings: list[dict[str, str]] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pixels: str = ""  # pixel scrub outcome: scrubbed, kept, quarantined ("" when not run)
    study: str = ""  # digest of the Study Instance UID (pixels.study_key), never the UID


def read_key(path: Path) -> PseudonymKeys:
    return PseudonymKeys.from_key_file_bytes(path.read_bytes())


def iter_inputs(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _quarantine(src: Path, qdir: Path, rel: str, outcome: Outcome) -> None:
    target = qdir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)
    reason = {"source": rel, "reason": outcome.reason, "findings": outcome.findings}
    target.with_name(target.name + ".reason.json").write_text(
        json.dumps(reason, indent=2), encoding="utf-8"
    )


REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
# Values larger than this stay on disk when reading (Pixel Data is streamed, never loaded).
DEFER_SIZE = "1 KB"


def _items_end(path: Path, offset: int, file_size: int) -> bool:
    """Do the items of encapsulated Pixel Data starting at `offset` end with the sequence
    delimiter inside the file? Reads the item headers only (8 bytes each)."""
    with path.open("rb") as fp:
        position = offset
        while position + 8 <= file_size:
            fp.seek(position)
            group, element, length = struct.unpack("<HHI", fp.read(8))
            if (group, element) == (0xFFFE, 0xE0DD):
                return True
            if (group, element) != (0xFFFE, 0xE000) or length == UNDEFINED_LENGTH:
                return False
            position += 8 + length
    return False


def _items_whole(value: bytes) -> bool:
    """Is `value` (encapsulated Pixel Data as read, without its delimiter) whole items?"""
    position = 0
    while position + 8 <= len(value):
        group, element, length = struct.unpack_from("<HHI", value, position)
        if (group, element) == (0xFFFE, 0xE0DD):
            return position + 8 == len(value)
        if (group, element) != (0xFFFE, 0xE000) or length == UNDEFINED_LENGTH:
            return False
        position += 8 + length
    return position == len(value)


def incomplete(ds: Dataset, file_size: int | None = None) -> str:
    """Why a parsed file is not a complete instance ("" when it is): catches truncation.

    Pixel Data read with `defer_size` is not loaded: its length and position are checked
    against `file_size` instead.
    """
    missing = [k for k in REQUIRED_UIDS if not ds.get(k)]
    if missing:
        return f"incomplete: missing {', '.join(missing)}"
    pixel = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
    if pixel is not None and "TransferSyntaxUID" in ds.file_meta:
        deferred = pixel if isinstance(pixel, RawDataElement) and pixel.value is None else None
        if deferred and deferred.length == UNDEFINED_LENGTH:  # encapsulated, left in the file
            source = getattr(ds, "filename", None)
            readable = file_size is not None and isinstance(source, str)
            if readable and not _items_end(Path(str(source)), deferred.value_tell, file_size or 0):
                return "truncated: encapsulated PixelData has no sequence delimiter"
            return ""
        if deferred and file_size is not None and deferred.value_tell + deferred.length > file_size:
            return "truncated: PixelData runs past the end of the file"
        if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            bits = int(ds.get("BitsAllocated", 8) or 8)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            expected = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * samples * frames
            length = deferred.length if deferred else len(pixel.value or b"")
            if length * 8 < expected * bits:
                return "truncated: PixelData shorter than Rows x Columns x frames"
        elif not deferred and not _items_whole(bytes(pixel.value or b"")):
            return "truncated: encapsulated PixelData ends inside an item"
    return ""


def _write(
    out: Dataset, out_dir: Path, source: Path | None = None, frames: Path | None = None
) -> str:
    """`frames`: the scrubbed Pixel Data of an instance scrubbed in batches
    (`deidentify.pixels.streamed`); it replaces the streamed copy's before the file appears."""
    target = (
        out_dir
        / str(out.StudyInstanceUID)
        / str(out.SeriesInstanceUID)
        / f"{out.SOPInstanceUID}.dcm"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    try:
        if frames is not None:
            if source is None or not write_streamed(out, tmp, source):
                raise PixelError("the instance scrubbed in batches could not be written")
            patch_pixels(tmp, frames)
        elif source is None or not write_streamed(out, tmp, source):
            out.save_as(tmp, enforce_file_format=True)
    except BaseException:
        tmp.unlink(missing_ok=True)  # may hold unscrubbed frames: never left behind
        raise
    tmp.replace(target)
    return str(target.relative_to(out_dir))


def write_streamed(ds: Dataset, path: Path, source: Path) -> bool:
    """Write `ds` with its deferred Pixel Data copied from `source` file to file (the kernel's
    copy_file_range where available), never through memory. False (nothing written) when the
    Pixel Data is not a deferred, defined-length element of a little endian transfer syntax;
    the caller then writes the ordinary way."""
    pixel = ds.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in ds else None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if (
        not isinstance(pixel, RawDataElement)
        or pixel.value is not None
        or pixel.length in (0, UNDEFINED_LENGTH)
        or syntax is None
        or not syntax.is_little_endian
        or syntax.is_deflated
        or (not syntax.is_implicit_VR and pixel.VR not in ("OB", "OW"))
    ):
        return False
    implicit = bool(syntax.is_implicit_VR)
    encodings = ds.get("SpecificCharacterSet") or None
    tags = sorted(ds.keys())
    header = encode_file_meta(meta) + encode_elements(
        ds, [t for t in tags if t < PIXEL_DATA], implicit=implicit, encodings=encodings
    )
    if implicit:
        header += struct.pack("<HHI", 0x7FE0, 0x0010, pixel.length)
    else:
        header += struct.pack("<HH2sHI", 0x7FE0, 0x0010, pixel.VR.encode(), 0, pixel.length)
    tail = encode_elements(
        ds, [t for t in tags if t > PIXEL_DATA], implicit=implicit, encodings=encodings
    )
    with path.open("wb") as fp:
        fp.write(header)
        fp.flush()
        _copy_range(source, fp.fileno(), pixel.value_tell, pixel.length, len(header))
        fp.seek(0, os.SEEK_END)
        fp.write(tail)
    return True


def _copy_range(source: Path, dst_fd: int, offset: int, length: int, dst_offset: int) -> None:
    with source.open("rb") as src:
        copied = 0
        if hasattr(os, "copy_file_range"):
            try:
                while copied < length:
                    n = os.copy_file_range(
                        src.fileno(),
                        dst_fd,
                        length - copied,
                        offset + copied,
                        dst_offset + copied,
                    )
                    if n == 0:
                        break
                    copied += n
            except OSError:
                pass  # e.g. across file systems on old kernels: copy in chunks below
        src.seek(offset + copied)
        while copied < length:
            chunk = src.read(min(1 << 20, length - copied))
            if not chunk:
                raise EOFError("source ended inside Pixel Data")
            os.pwrite(dst_fd, chunk, dst_offset + copied)
            copied += len(chunk)


class _PixelsRefused(Exception):
    def __init__(self, result: ScrubResult) -> None:
        super().__init__(result.reason)
        self.result = result


@functools.lru_cache(maxsize=1)
def _pixel_stage() -> tuple[PixelPolicy, TesseractBackend]:
    return PixelPolicy.default(), TesseractBackend()


def _scrub_pixels(ds: Dataset) -> ScrubResult:
    """Clean Pixel Data (rules + OCR, verified by a second read; fails closed)."""
    policy, ocr = _pixel_stage()
    return scrub(ds, policy, ocr)


def process_file(
    src: Path,
    rel: str,
    out_dir: Path,
    qdir: Path,
    options: list[str],
    secret: bytes,
    recipe: Recipe | None = None,
    identity: StudyIdentity | None = None,
    *,
    fast: bool = True,
) -> Outcome:
    """De-identify, verify and write one file (runs in a worker process).

    The fast header path (`deidentify.fastpath`) goes first; whatever it does not handle - or
    any error in it - runs the pydicom path below, which also quarantines and reports. `fast`
    False: the pydicom path only. `identity`: the study's (see `studyscan`)."""
    return process_file_seen(src, rel, out_dir, qdir, options, secret, recipe, identity, fast=fast)[
        0
    ]


def process_file_seen(
    src: Path,
    rel: str,
    out_dir: Path,
    qdir: Path,
    options: list[str],
    secret: bytes,
    recipe: Recipe | None = None,
    identity: StudyIdentity | None = None,
    *,
    fast: bool = True,
) -> tuple[Outcome, Seen | None]:
    """`process_file`, and what the study pass needs to know about the instance."""
    outcome = Outcome(source=rel)
    seen: Seen | None = None
    profile = _profile(tuple(options))
    scrub_pixels = profile.has(Option.CLEAN_PIXEL_DATA)
    if fast and not scrub_pixels:  # the pixel stage decodes pixels: pydicom path
        try:
            output, changes, notes, seen = fastpath.process(
                src, out_dir, profile, _keys(secret), recipe, identity=identity
            )
        except Exception as exc:  # Fallback, or anything unexpected: the pydicom path decides
            # the reason or the exception type only: messages may quote values
            reason = str(exc) if isinstance(exc, fastpath.Fallback) else type(exc).__name__
            _log.debug("fast path not taken for %s: %s", rel, reason)
        else:
            outcome.output, outcome.changes, outcome.notes = output, dict(changes), list(notes)
            return outcome, seen
    try:
        ds = dcmread(src, defer_size=DEFER_SIZE)
        problem = incomplete(ds, src.stat().st_size)
        study_uid = str(ds.get("StudyInstanceUID", "") or "")
        seen = Seen(study_uid, StudyIdentity.collect([ds]), None) if identity is None else None
    except InvalidDicomError:
        problem = "not-dicom: no DICOM preamble/prefix or unreadable header"
    except Exception as exc:  # truncated/corrupt files raise many kinds of errors
        problem = f"unparseable: {type(exc).__name__}"
    if problem:
        outcome.reason = problem
    else:
        plan = StreamPlan.of(ds) if scrub_pixels and "PixelData" in ds else None
        frames = out_dir / f".{os.getpid()}-{id(ds)}.frames" if plan is not None else None
        try:
            source: Dataset = ds
            if scrub_pixels and "PixelData" in ds:
                if plan is not None and frames is not None:  # large multi-frame: in batches
                    out_dir.mkdir(parents=True, exist_ok=True)
                    policy, ocr = _pixel_stage()
                    scrubbed = scrub_streamed(ds, src, plan, frames, policy, ocr)
                else:
                    scrubbed = _scrub_pixels(ds)
                outcome.pixels = pixel_outcome(scrubbed)
                outcome.study = study_key(str(ds.get("StudyInstanceUID", "")))
                if scrubbed.quarantined or scrubbed.dataset is None:
                    raise _PixelsRefused(scrubbed)
                source = scrubbed.dataset
            result = apply(source, profile, PseudonymKeys(secret), recipe, identity=identity)
            findings = verify(ds, result.dataset, profile, recipe, identity=identity)
        except DocumentHeldBack as held:
            outcome.reason = str(held)  # "document: ..." names the problem, never a value
        except _PixelsRefused as refused:
            outcome.reason = f"pixel-scrub: {refused.result.reason}"
            if refused.result.preview is not None:
                stem = qdir / Path(rel).with_suffix("")
                stem.parent.mkdir(parents=True, exist_ok=True)
                stem.with_suffix(".before.png").write_bytes(refused.result.preview.before_png)
                stem.with_suffix(".after.png").write_bytes(refused.result.preview.after_png)
        except Exception as exc:
            outcome.reason = f"deidentify-failed: {type(exc).__name__}"
        else:
            outcome.changes = dict(result.changes)
            outcome.notes = list(result.notes)
            if findings:
                outcome.reason = "verification-failed"
                outcome.findings = [asdict(f) for f in findings]
            else:
                try:
                    outcome.output = _write(result.dataset, out_dir, src, frames)
                    return outcome, seen
                except Exception as exc:
                    outcome.reason = f"write-failed: {type(exc).__name__}"
        finally:
            if frames is not None:
                frames.unlink(missing_ok=True)
    outcome.quarantined = True
    _quarantine(src, qdir, rel, outcome)
    return outcome, seen


def process_batch(
    jobs: list[tuple[Path, str]],
    out_dir: Path,
    qdir: Path,
    options: list[str],
    secret: bytes,
    recipe: Recipe | None = None,
    *,
    workers: int = 1,
    on_done: Callable[[], object] | None = None,
    fast: bool = True,
    study_identity: bool = True,
) -> list[Outcome]:
    """`process_file` for every (source, relative name), in order; `workers` processes
    (`fast` False: the pydicom path only, for comparisons). `study_identity`: the study pass
    (`deidentify.studyscan`) runs again, with the study's identity, the instances whose text
    may hold a name only another instance of their study carries."""
    one = functools.partial(
        process_file_seen,
        out_dir=out_dir,
        qdir=qdir,
        options=options,
        secret=secret,
        recipe=recipe,
        fast=fast,
    )
    none: list[StudyIdentity | None] = [None] * len(jobs)
    if workers == 1 or len(jobs) < 2:
        first = _run(one, jobs, none, None, on_done)
        again = _again(first, options, recipe) if study_identity else {}
        return _merge(
            first, _run(one, [jobs[i] for i in again], list(again.values()), None), again, out_dir
        )
    # Small chunks: fewer round trips than one task per file, still balanced at the end.
    chunk = max(1, min(8, len(jobs) // (workers * 16)))
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
        first = _run(one, jobs, none, (pool, chunk), on_done)
        again = _again(first, options, recipe) if study_identity else {}
        rerun = _run(one, [jobs[i] for i in again], list(again.values()), (pool, 1))
    return _merge(first, rerun, again, out_dir)


_Pool = tuple[ProcessPoolExecutor, int]


def _run(
    one: Callable[..., tuple[Outcome, Seen | None]],
    jobs: list[tuple[Path, str]],
    identities: list[StudyIdentity | None],
    pool: _Pool | None,
    on_done: Callable[[], object] | None = None,
) -> list[tuple[Outcome, Seen | None]]:
    sources, names = [src for src, _ in jobs], [rel for _, rel in jobs]
    if pool is None:
        results: Iterable[tuple[Outcome, Seen | None]] = (
            one(src, rel, identity=ident)
            for src, rel, ident in zip(sources, names, identities, strict=True)
        )
    else:
        executor, chunk = pool
        results = executor.map(
            _call, [one] * len(jobs), sources, names, identities, chunksize=chunk
        )
    out = []
    for result in results:
        out.append(result)
        if on_done is not None:
            on_done()
    return out


def _again(
    first: list[tuple[Outcome, Seen | None]], options: list[str], recipe: Recipe | None
) -> dict[int, StudyIdentity]:
    profile = _profile(tuple(options))
    profile = recipe.apply_to(profile) if recipe is not None else profile
    return {
        index: study
        for index, study in reruns([seen for _, seen in first], profile).items()
        if not first[index][0].quarantined
    }


def _merge(
    first: list[tuple[Outcome, Seen | None]],
    rerun: list[tuple[Outcome, Seen | None]],
    again: dict[int, StudyIdentity],
    out_dir: Path,
) -> list[Outcome]:
    outcomes = [outcome for outcome, _ in first]
    for index, (outcome, _) in zip(again, rerun, strict=True):
        old = outcomes[index].output
        if old and old != outcome.output:
            (out_dir / old).unlink(missing_ok=True)  # the first output may not stay
        outcomes[index] = outcome
    return outcomes


def _call(
    one: Callable[..., tuple[Outcome, Seen | None]],
    src: Path,
    rel: str,
    identity: StudyIdentity | None,
) -> tuple[Outcome, Seen | None]:
    return one(src, rel, identity=identity)


def _worker_init() -> None:
    # Each instance allocates many small objects and frees them all; collect less often.
    gc.set_threshold(50_000, 50, 100)


@functools.lru_cache(maxsize=16)
def _keys(secret: bytes) -> PseudonymKeys:
    return PseudonymKeys(secret)


@functools.lru_cache(maxsize=16)
def _profile(options: tuple[str, ...]) -> Profile:
    return Profile.from_names(options)


def held_back(outcomes: Iterable[Outcome]) -> HeldBack:
    """Quarantined instances by reason class (`deidentify.heldback`): what the recipient of
    this output should be told is missing."""
    held = HeldBack()
    for outcome in outcomes:
        if outcome.quarantined:
            held.add(outcome.reason)
    return held


def _summary(outcomes: list[Outcome], console: Console) -> Counter[str]:
    changes: Counter[str] = Counter()
    for o in outcomes:
        changes.update(o.changes)
    table = Table(title="hexchange-deid")
    table.add_column("item")
    table.add_column("count", justify="right")
    table.add_row("instances", str(len(outcomes)))
    table.add_row("written", str(sum(1 for o in outcomes if o.output)))
    table.add_row("quarantined", str(sum(1 for o in outcomes if o.quarantined)))
    for reason, count in held_back(outcomes).counts().items():
        table.add_row(f"held back: {reason} (output partial)", str(count))
    for action in sorted(changes):
        table.add_row(f"attributes {action}", str(changes[action]))
    console.print(table)
    tally = PixelTally()
    for o in outcomes:
        if o.pixels:
            tally.add_outcome(o.study, o.pixels)
    if tally.studies:
        pixels = Table(title="pixel scrub per study")
        for column in ("study", "scrubbed", "kept", "quarantined"):
            pixels.add_column(column, justify="left" if column == "study" else "right")
        for study, counts in tally.rows():
            pixels.add_row(study, *(str(counts[k]) for k in ("scrubbed", "kept", "quarantined")))
        console.print(pixels)
    for o in outcomes:
        if o.quarantined:
            console.print(f"[red]quarantined[/red] {o.source}: {o.reason}")
    return changes


@app.command()
def run(
    input_path: Annotated[Path, typer.Argument(metavar="IN", exists=True, help="file or folder")],
    output_path: Annotated[Path, typer.Argument(metavar="OUT", help="output folder")],
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="profile option (kebab case), repeatable"),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="network secret (>= 32 bytes, raw or hex)")
    ] = None,
    recipe_file: Annotated[
        Path | None, typer.Option("--recipe", help="site overrides (TOML), validated first")
    ] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write a JSON report")] = None,
    quarantine: Annotated[
        Path | None, typer.Option("--quarantine", help="default: OUT/../quarantine")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes")] = (
        os.cpu_count() or 1
    ),
) -> None:
    """De-identify DICOM files from IN into OUT."""
    console = Console(stderr=True)
    options = list(option or [])
    try:
        profile = Profile.from_names(options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--option") from None
    if key_file is None:
        raise typer.BadParameter(
            "a key file with the network secret is required", param_hint="--key-file"
        )
    try:
        keys = read_key(key_file)
    except (OSError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--key-file") from None

    recipe: Recipe | None = None
    if recipe_file is not None:
        try:
            recipe = parse_recipe(recipe_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(
                f"cannot read {recipe_file}: {type(exc).__name__}", param_hint="--recipe"
            ) from None
        except RecipeError as exc:
            raise typer.BadParameter(f"{recipe_file}: {exc}", param_hint="--recipe") from None
        profile = recipe.apply_to(profile)

    output_path.mkdir(parents=True, exist_ok=True)
    qdir = quarantine or output_path.resolve().parent / "quarantine"
    root = input_path if input_path.is_dir() else input_path.parent
    files = list(iter_inputs(input_path))
    jobs = [(f, str(f.relative_to(root))) for f in files]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("de-identifying", total=len(jobs))
        outcomes = process_batch(
            jobs,
            output_path,
            qdir,
            options,
            keys.secret,
            recipe,
            workers=workers,
            on_done=lambda: progress.advance(task),
        )

    changes = _summary(outcomes, console)
    if report is not None:
        payload: dict[str, Any] = {
            "profile": profile.method_values(),
            "options": sorted(o.value for o in profile.options),
            "instances": len(outcomes),
            "written": sum(1 for o in outcomes if o.output),
            "quarantined": sum(1 for o in outcomes if o.quarantined),
            "held_back": held_back(outcomes).counts(),
            "changes": dict(changes),
            "files": [asdict(o) for o in outcomes],
        }
        report.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if any(o.quarantined for o in outcomes):
        raise typer.Exit(code=1)


def main() -> None:
    app()


__all__ = ["Option", "main", "process_file", "read_key"]
