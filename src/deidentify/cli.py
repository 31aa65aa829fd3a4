"""`hexchange-deid`: a thin file-system shell over `deidentify.apply` and `deidentify.verify`.

    hexchange-deid IN OUT [--option NAME ...] --key-file KEY [--report report.json]
                   [--quarantine DIR] [--workers N]

IN is a DICOM file or a folder (searched recursively). De-identified instances are written
under OUT as ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` (input paths are not reused: folder
and file names often carry patient names). A file that cannot be read as DICOM, or whose output
fails verification, is copied unchanged into the quarantine folder (default ``OUT/../quarantine``)
with a ``.reason.json`` naming the problem (attributes, never values); the batch continues and
the exit status is 1 when anything was quarantined.

The key file holds the network secret: at least 32 bytes, raw or as hex text.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deidentify.engine import PseudonymKeys, apply
from deidentify.profile import Option, Profile
from deidentify.verify import verify

app = typer.Typer(add_completion=False, help=__doc__)


@dataclass
class Outcome:
    source: str
    output: str | None = None
    quarantined: bool = False
    reason: str = ""
    findings: list[dict[str, str]] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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


def incomplete(ds: Dataset) -> str:
    """Why a parsed file is not a complete instance ("" when it is): catches truncation."""
    missing = [k for k in REQUIRED_UIDS if not ds.get(k)]
    if missing:
        return f"incomplete: missing {', '.join(missing)}"
    pixel = ds.get("PixelData")
    if pixel is not None and "TransferSyntaxUID" in ds.file_meta:
        if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            bits = int(ds.get("BitsAllocated", 8) or 8)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            expected = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * samples * frames
            if len(pixel) * 8 < expected * bits:
                return "truncated: PixelData shorter than Rows x Columns x frames"
        elif not bytes(pixel)[-8:].endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"):
            return "truncated: encapsulated PixelData has no sequence delimiter"
    return ""


def _write(out: Dataset, out_dir: Path) -> str:
    target = (
        out_dir
        / str(out.StudyInstanceUID)
        / str(out.SeriesInstanceUID)
        / f"{out.SOPInstanceUID}.dcm"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    out.save_as(tmp, enforce_file_format=True)
    tmp.replace(target)
    return str(target.relative_to(out_dir))


def process_file(
    src: Path, rel: str, out_dir: Path, qdir: Path, options: list[str], secret: bytes
) -> Outcome:
    """De-identify, verify and write one file (runs in a worker process)."""
    outcome = Outcome(source=rel)
    profile = Profile.from_names(options)
    try:
        ds = dcmread(src)
        problem = incomplete(ds)
    except InvalidDicomError:
        problem = "not-dicom: no DICOM preamble/prefix or unreadable header"
    except Exception as exc:  # truncated/corrupt files raise many kinds of errors
        problem = f"unparseable: {type(exc).__name__}"
    if problem:
        outcome.reason = problem
    else:
        try:
            result = apply(ds, profile, PseudonymKeys(secret))
            findings = verify(ds, result.dataset, profile)
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
                    outcome.output = _write(result.dataset, out_dir)
                    return outcome
                except Exception as exc:
                    outcome.reason = f"write-failed: {type(exc).__name__}"
    outcome.quarantined = True
    _quarantine(src, qdir, rel, outcome)
    return outcome


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
    for action in sorted(changes):
        table.add_row(f"attributes {action}", str(changes[action]))
    console.print(table)
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

    output_path.mkdir(parents=True, exist_ok=True)
    qdir = quarantine or output_path.resolve().parent / "quarantine"
    root = input_path if input_path.is_dir() else input_path.parent
    files = list(iter_inputs(input_path))
    jobs = [(f, str(f.relative_to(root))) for f in files]
    outcomes: list[Outcome] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("de-identifying", total=len(jobs))
        if workers == 1 or len(jobs) < 2:
            for src, rel in jobs:
                outcomes.append(process_file(src, rel, output_path, qdir, options, keys.secret))
                progress.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(process_file, src, rel, output_path, qdir, options, keys.secret)
                    for src, rel in jobs
                ]
                for future in futures:
                    outcomes.append(future.result())
                    progress.advance(task)

    changes = _summary(outcomes, console)
    if report is not None:
        payload: dict[str, Any] = {
            "profile": profile.method_values(),
            "options": sorted(o.value for o in profile.options),
            "instances": len(outcomes),
            "written": sum(1 for o in outcomes if o.output),
            "quarantined": sum(1 for o in outcomes if o.quarantined),
            "changes": dict(changes),
            "files": [asdict(o) for o in outcomes],
        }
        report.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if any(o.quarantined for o in outcomes):
        raise typer.Exit(code=1)


def main() -> None:
    app()


__all__ = ["Option", "main", "process_file", "read_key"]
