"""The pipeline's de-identification step: apply the profile, verify independently, or reject.

An instance whose verification finds anything is rejected (quarantined by the pipeline) and
never sealed. Findings name attributes, never values.

File to file, like `hexchange-deid` (deidentify/cli.py, its pydicom path with Clean Pixel
Data): the spool file is read with Pixel Data left on disk (`DEFER_SIZE`), the header is
de-identified and verified, and the output is written by `write_streamed`, which copies Pixel
Data from the spool file to the output file by the kernel, never through memory. The output
bytes are those of `hexchange-deid IN OUT --option clean-pixel-data` for the same input and
key. Pixel Data is decoded only when the pixel policy must look at the pixels (region rules
or OCR for the instance); then `deidentify.pixels.scrub` holds the decoded frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from deidentify.cli import DEFER_SIZE, incomplete, write_streamed
from deidentify.documents import DocumentHeldBack
from deidentify.engine import PseudonymKeys, apply
from deidentify.identity import StudyIdentity
from deidentify.pixels import OcrBackend, PixelPolicy, TesseractBackend, scrub
from deidentify.pixels.frames import PixelError
from deidentify.pixels.streamed import StreamPlan, patch_pixels, scrub_streamed
from deidentify.profile import Option, Profile
from deidentify.recipe import Recipe, RecipeError, parse_recipe
from deidentify.verify import verify
from node_agent.config import AgentConfig, Destination
from node_agent.pipeline import InstanceRejected
from wire.api import QuarantineReason

MALFORMED = QuarantineReason.MALFORMED
PIXELS_UNREADABLE = QuarantineReason.PIXELS_UNREADABLE
BURNED_IN_TEXT = QuarantineReason.BURNED_IN_TEXT
CONFIGURATION = QuarantineReason.CONFIGURATION


def load_keys(path: Path | None) -> PseudonymKeys:
    if path is None:
        raise ValueError(
            "a de-identified destination needs [deidentify] key_file: the pseudonym secret "
            "issued for the network (at least 32 random bytes)"
        )
    try:
        return PseudonymKeys.from_key_file_bytes(path.read_bytes())
    except FileNotFoundError as exc:
        raise ValueError(f"deidentify.key_file {path} does not exist") from exc


@dataclass(frozen=True)
class PixelStage:
    """Clean Pixel Data: region rules and OCR, verified by a second read; fails closed."""

    policy: PixelPolicy
    ocr: OcrBackend


def deidentify_file(
    path: Path,
    target: Path,
    profile: Profile,
    keys: PseudonymKeys,
    pixels: PixelStage | None = None,
    *,
    recipe: Recipe | None = None,
    identity: StudyIdentity | None = None,
) -> None:
    """De-identify the instance at `path` into the new file `target`, or raise
    InstanceRejected (nothing usable is left at `target` then). `identity`: every identifying
    value of the whole study, cleaned out of kept text wherever it is written."""
    try:
        original = dcmread(path, defer_size=DEFER_SIZE)
        problem = incomplete(original, path.stat().st_size)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise InstanceRejected(f"unreadable DICOM ({type(exc).__name__})", MALFORMED) from exc
    except Exception as exc:  # a truncated or corrupt file raises many kinds of errors
        raise InstanceRejected(f"unparseable DICOM ({type(exc).__name__})", MALFORMED) from exc
    if problem:
        raise InstanceRejected(problem, MALFORMED)
    source: Dataset = original
    plan = StreamPlan.of(original) if pixels is not None and "PixelData" in original else None
    frames_file = target.with_name(target.name + ".frames") if plan is not None else None
    if pixels is not None and "PixelData" in original:
        try:
            if plan is not None and frames_file is not None:  # a large multi-frame: in batches
                scrubbed = scrub_streamed(
                    original, path, plan, frames_file, pixels.policy, pixels.ocr
                )
            else:
                scrubbed = scrub(original, pixels.policy, pixels.ocr)
        except Exception as exc:  # malformed pixel data: quarantined with the error's kind
            raise InstanceRejected(
                f"pixel scrub: the pixel data could not be decoded ({type(exc).__name__})",
                PIXELS_UNREADABLE,
            ) from exc
        if scrubbed.quarantined or scrubbed.dataset is None:
            previews = {}
            if scrubbed.preview is not None:
                previews = {
                    "before.png": scrubbed.preview.before_png,
                    "after.png": scrubbed.preview.after_png,
                }
            raise InstanceRejected(
                f"pixel scrub: {scrubbed.reason}", BURNED_IN_TEXT, previews=previews
            )
        source = scrubbed.dataset
    try:
        _apply_verify_write(
            path, target, original, source, profile, keys, recipe, identity,
            frames_file=frames_file,
        )  # fmt: skip
    except InstanceRejected:
        target.unlink(missing_ok=True)
        raise
    except Exception as exc:  # values read lazily can still be malformed (wrong lengths, bad
        # VRs): the instance is quarantined with the error's kind, never a crash of the loop
        target.unlink(missing_ok=True)
        raise InstanceRejected(
            f"unparseable DICOM value ({type(exc).__name__})", MALFORMED
        ) from exc
    finally:
        if frames_file is not None:
            frames_file.unlink(missing_ok=True)


def _apply_verify_write(
    path: Path,
    target: Path,
    original: Dataset,
    source: Dataset,
    profile: Profile,
    keys: PseudonymKeys,
    recipe: Recipe | None,
    identity: StudyIdentity | None,
    *,
    frames_file: Path | None = None,
) -> None:
    """`frames_file`: the scrubbed Pixel Data of a large multi-frame instance, scrubbed in
    batches; the instance is written with the original frames streamed from `path`, then its
    Pixel Data is overwritten in place with these (or nothing is left at `target`)."""
    try:
        result = apply(source, profile, keys, recipe, identity=identity)
    except DocumentHeldBack as exc:
        raise InstanceRejected(str(exc), QuarantineReason.DOCUMENT) from exc
    findings = verify(original, result.dataset, profile, recipe, identity=identity)
    if findings:
        summary = "; ".join(f"{f.code} {f.keyword or f.tag} at {f.path}" for f in findings[:10])
        raise InstanceRejected(
            f"de-identification verification failed: {summary}", QuarantineReason.VERIFICATION
        )
    if frames_file is not None:
        if not write_streamed(result.dataset, target, path):
            raise InstanceRejected(
                "pixel scrub: the large instance could not be written frame by frame",
                QuarantineReason.PIXELS_UNREADABLE,
            )
        try:
            patch_pixels(target, frames_file)
        except PixelError as exc:
            target.unlink(missing_ok=True)  # it holds the unscrubbed frames: never sent
            raise InstanceRejected(
                f"pixel scrub: {exc}", QuarantineReason.PIXELS_UNREADABLE
            ) from exc
    elif not write_streamed(result.dataset, target, path):  # e.g. pixels changed by the scrub
        result.dataset.save_as(target, enforce_file_format=True)


def make_deidentifier(config: AgentConfig) -> Callable[[Path, Destination, Path], None]:
    """The policy rule's options win; the site's [deidentify] options are the default.

    Every de-identified instance also goes through the pixel stage (Clean Pixel Data): its
    policy decides when OCR runs, and a missing OCR backend quarantines instead of sending.
    """
    default = Profile.from_names(config.deidentify.options)
    keys: list[PseudonymKeys] = []
    pixel_policy = PixelPolicy.default()
    if config.deidentify.pixel_rules_file is not None:
        pixel_policy = pixel_policy.with_site_rules(config.deidentify.pixel_rules_file.read_bytes())
    ocr = TesseractBackend()
    recipes: dict[str, Recipe] = {}
    identities: dict[Path, tuple[int, StudyIdentity]] = {}

    def study_identity(path: Path) -> StudyIdentity:
        """Every identifying value the study's headers carry (the spool keeps a study's
        instances in one folder); read again only when the folder changed (an instance added),
        so the folder is not listed once per instance."""
        version = path.parent.stat().st_mtime_ns
        known = identities.get(path.parent)
        if known is None or known[0] != version:
            while len(identities) >= 64:
                identities.pop(next(iter(identities)))
            members = sorted(path.parent.glob("*.dcm"))
            identities[path.parent] = (version, StudyIdentity.from_files(members))
        return identities[path.parent][1]

    def recipe_of(destination: Destination) -> Recipe | None:
        if destination.recipe is None:
            return None
        if destination.recipe not in recipes:
            try:
                recipes[destination.recipe] = parse_recipe(destination.recipe)
            except RecipeError as exc:
                raise InstanceRejected(
                    f"the sharing rule's recipe does not parse: {exc}", CONFIGURATION
                ) from exc
        return recipes[destination.recipe]

    def transform(path: Path, destination: Destination, target: Path) -> None:
        if not keys:
            try:
                keys.append(load_keys(config.deidentify.key_file))
            except ValueError as exc:
                raise InstanceRejected(str(exc), CONFIGURATION) from exc
        try:
            profile = (
                Profile.from_names(destination.deid_options)
                if destination.deid_options
                else default
            )
        except ValueError as exc:
            raise InstanceRejected(
                f"policy names an unknown de-identification option: {exc}", CONFIGURATION
            ) from exc
        profile = Profile(profile.options | {Option.CLEAN_PIXEL_DATA})
        try:
            pixels = PixelStage(replace(pixel_policy, text=destination.pixel_policy), ocr)
        except ValueError as exc:
            raise InstanceRejected(
                f"the sharing rule's pixel policy: {exc}", CONFIGURATION
            ) from exc
        deidentify_file(
            path, target, profile, keys[0], pixels,
            recipe=recipe_of(destination), identity=study_identity(path),
        )  # fmt: skip

    return transform
