"""The pipeline's de-identification step: apply the profile, verify independently, or reject.

An instance whose verification finds anything is rejected (quarantined by the pipeline) and
never sealed. Findings name attributes, never values.

The step is `deidentify.instance.deidentify_instance`, the engine `hexchange-deid` runs too:
the same reading with Pixel Data left on disk, the same pixel stage (Clean Pixel Data, a large
multi-frame instance in batches of frames), the same apply, verify and write with Pixel Data
copied file to file. The output bytes are those of `hexchange-deid IN OUT --option
clean-pixel-data` for the same input, key and pixel policy; a refusal becomes
`InstanceRejected` with the refusal's kind as the quarantine category.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from deidentify.engine import PseudonymKeys
from deidentify.identity import StudyIdentity
from deidentify.instance import PixelStage, RefusalKind, Refused, deidentify_instance
from deidentify.pixels import PixelPolicy, TesseractBackend
from deidentify.profile import Option, Profile
from deidentify.recipe import Recipe, RecipeError, parse_recipe
from node_agent.config import AgentConfig, Destination
from node_agent.pipeline import InstanceRejected
from wire.api import QuarantineReason

__all__ = ["PixelStage", "deidentify_file", "load_keys", "make_deidentifier", "share_profile"]


def share_profile(default: Profile, rule_options: Sequence[str]) -> Profile:
    """The profile of a de-identified share: the sharing rule's options win, the site's
    [deidentify] options are the default; Clean Pixel Data always. ValueError for an unknown
    option. (The federated answer of a de-identified rule uses it too: same treatment.)"""
    profile = Profile.from_names(rule_options) if rule_options else default
    return Profile(profile.options | {Option.CLEAN_PIXEL_DATA})


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
    InstanceRejected (nothing is left at `target` then). `identity`: every identifying value of
    the whole study, cleaned out of kept text wherever it is written.

    A write that fails for the disk's sake (full, read-only) is not the instance's fault: the
    OSError goes up and the part is sealed again later, rather than quarantining the
    instance."""
    try:
        deidentify_instance(
            path, lambda *_uids: target, profile, keys,
            pixels=pixels, recipe=recipe, identity=identity, scratch=target.parent,
        )  # fmt: skip
    except Refused as refused:
        if refused.kind is RefusalKind.WRITE and isinstance(refused.__cause__, OSError):
            raise refused.__cause__ from None
        category = (
            QuarantineReason.MALFORMED
            if refused.kind is RefusalKind.WRITE
            else QuarantineReason(refused.kind.value)
        )
        raise InstanceRejected(
            refused.detail, category, previews=dict(refused.previews)
        ) from refused


def make_deidentifier(config: AgentConfig) -> Callable[[Path, Destination, Path], None]:
    """The policy rule's options win; the site's [deidentify] options are the default.

    Every de-identified instance also goes through the pixel stage (Clean Pixel Data): its
    policy decides when OCR runs, and a missing OCR backend quarantines instead of sending.
    """
    default = Profile.from_names(config.deidentify.options)
    keys: list[PseudonymKeys] = []
    pixel_policy = replace(PixelPolicy.default(), learned=config.deidentify.pixel_learned)
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
                    f"the sharing rule's recipe does not parse: {exc}",
                    QuarantineReason.CONFIGURATION,
                ) from exc
        return recipes[destination.recipe]

    def transform(path: Path, destination: Destination, target: Path) -> None:
        if not keys:
            try:
                keys.append(load_keys(config.deidentify.key_file))
            except ValueError as exc:
                raise InstanceRejected(str(exc), QuarantineReason.CONFIGURATION) from exc
        try:
            profile = share_profile(default, destination.deid_options)
        except ValueError as exc:
            raise InstanceRejected(
                f"policy names an unknown de-identification option: {exc}",
                QuarantineReason.CONFIGURATION,
            ) from exc
        try:
            pixels = PixelStage(replace(pixel_policy, text=destination.pixel_policy), ocr)
        except ValueError as exc:
            raise InstanceRejected(
                f"the sharing rule's pixel policy: {exc}", QuarantineReason.CONFIGURATION
            ) from exc
        deidentify_file(
            path, target, profile, keys[0], pixels,
            recipe=recipe_of(destination), identity=study_identity(path),
        )  # fmt: skip

    return transform
