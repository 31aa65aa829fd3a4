"""`hexchange-deid`: a thin file-system shell over `deidentify.instance.deidentify_instance`
(the engine the node agent runs too).

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deidentify.engine import PseudonymKeys
from deidentify.heldback import HeldBack
from deidentify.identity import StudyIdentity
from deidentify.instance import PixelStage, RefusalKind, Refused, deidentify_instance, under
from deidentify.pixels import PixelPolicy, PixelTally, TesseractBackend, study_key
from deidentify.pixels import outcome as pixel_outcome
from deidentify.pixels.policy import LEARNED_ACTIONS
from deidentify.profile import Option, Profile
from deidentify.rawidentity import Seen
from deidentify.recipe import Recipe, RecipeError, parse_recipe
from deidentify.studyscan import reruns

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


@functools.lru_cache(maxsize=4)
def _pixel_stage(learned: str | None = None) -> PixelStage:
    """Clean Pixel Data with the default pixel policy (the agent's default too); `learned`:
    the policy's learned text detector setting (`--pixel-learned`, the agent's
    `[deidentify] pixel_learned`), None for the policy's default."""
    policy = PixelPolicy.default()
    if learned is not None:
        policy = replace(policy, learned=learned)
    return PixelStage(policy, TesseractBackend())


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
    learned: str | None = None,
) -> Outcome:
    """De-identify, verify and write one file (runs in a worker process); a refused instance
    is copied to the quarantine folder with its reason. `fast` False: the pydicom path only
    (see `deidentify_instance`). `identity`: the study's (see `studyscan`)."""
    return process_file_seen(
        src, rel, out_dir, qdir, options, secret, recipe, identity, fast=fast, learned=learned
    )[0]


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
    learned: str | None = None,
) -> tuple[Outcome, Seen | None]:
    """`process_file`, and what the study pass needs to know about the instance."""
    outcome = Outcome(source=rel)
    profile = _profile(tuple(options))
    pixels = _pixel_stage(learned) if profile.has(Option.CLEAN_PIXEL_DATA) else None
    try:
        written = deidentify_instance(
            src, under(out_dir), profile, _keys(secret),
            pixels=pixels, recipe=recipe, identity=identity, scratch=out_dir, fast=fast,
        )  # fmt: skip
    except Refused as refused:
        outcome.reason = refused.reason
        outcome.findings = [asdict(f) for f in refused.findings]
        if refused.scrubbed is not None:
            outcome.pixels = pixel_outcome(refused.scrubbed)
        elif refused.kind is RefusalKind.PIXELS_UNREADABLE:
            outcome.pixels = "quarantined"
        if outcome.pixels:
            outcome.study = study_key(refused.study_uid)
        if refused.previews:
            stem = qdir / Path(rel).with_suffix("")
            stem.parent.mkdir(parents=True, exist_ok=True)
            for name, data in refused.previews.items():
                stem.with_suffix(f".{name}").write_bytes(data)
        outcome.quarantined = True
        _quarantine(src, qdir, rel, outcome)
        return outcome, refused.seen
    outcome.output = str(written.path.relative_to(out_dir))
    outcome.changes, outcome.notes = written.changes, written.notes
    if written.scrubbed is not None:
        outcome.pixels = pixel_outcome(written.scrubbed)
        outcome.study = study_key(written.study_uid)
    return outcome, written.seen


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
    learned: str | None = None,
) -> list[Outcome]:
    """`process_file` for every (source, relative name), in order; `workers` processes
    (`fast` False: the pydicom path only, for comparisons). `study_identity`: the study pass
    (`deidentify.studyscan`) runs again, with the study's identity, the instances whose text
    may hold a name only another instance of their study carries. `learned`: the pixel
    policy's learned text detector (auto, off, every-frame; None: the policy's default)."""
    one = functools.partial(
        process_file_seen,
        out_dir=out_dir,
        qdir=qdir,
        options=options,
        secret=secret,
        recipe=recipe,
        fast=fast,
        learned=learned,
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
    pixel_learned: Annotated[
        str | None,
        typer.Option(
            "--pixel-learned",
            help="the learned text detector of the pixel scrub (clean-pixel-data): auto (on "
            "frames where the classical detector found text; the default), off (classical "
            "only), every-frame (every frame; an instance it cannot check is quarantined). "
            "The agent's [deidentify] pixel_learned.",
        ),
    ] = None,
) -> None:
    """De-identify DICOM files from IN into OUT."""
    console = Console(stderr=True)
    options = list(option or [])
    if pixel_learned is not None and pixel_learned not in LEARNED_ACTIONS:
        raise typer.BadParameter(
            f"{pixel_learned!r} is not one of {', '.join(LEARNED_ACTIONS)}",
            param_hint="--pixel-learned",
        )
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

    qdir = quarantine or output_path.resolve().parent / "quarantine"
    shared = output_path.resolve()
    if qdir.resolve() == shared or shared in qdir.resolve().parents:
        raise typer.BadParameter(
            "the quarantine folder must not be inside the output folder: quarantined files "
            "are the originals, identity and all, and the output is what gets shared",
            param_hint="--quarantine",
        )
    output_path.mkdir(parents=True, exist_ok=True)
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
            learned=pixel_learned,
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
    from deidentify.log_redaction import install as install_log_redaction

    # pydicom's warnings about the input's values quote them: said without the values
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    install_log_redaction()
    app()


__all__ = ["Option", "main", "process_file", "read_key"]
