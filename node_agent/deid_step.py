"""The pipeline's de-identification step: apply the profile, verify independently, or reject.

An instance whose verification finds anything is rejected (quarantined by the pipeline) and
never sealed. Findings name attributes, never values.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from deidentify.engine import PseudonymKeys, apply
from deidentify.pixels import OcrBackend, PixelPolicy, TesseractBackend, scrub
from deidentify.profile import Option, Profile
from deidentify.verify import verify
from node_agent.config import AgentConfig, Destination
from node_agent.pipeline import InstanceRejected


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
    path: Path, profile: Profile, keys: PseudonymKeys, pixels: PixelStage | None = None
) -> bytes:
    try:
        original = dcmread(path)
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise InstanceRejected(f"unreadable DICOM ({type(exc).__name__})") from exc
    source = original
    if pixels is not None and "PixelData" in original:
        scrubbed = scrub(original, pixels.policy, pixels.ocr)
        if scrubbed.quarantined or scrubbed.dataset is None:
            previews = {}
            if scrubbed.preview is not None:
                previews = {
                    "before.png": scrubbed.preview.before_png,
                    "after.png": scrubbed.preview.after_png,
                }
            raise InstanceRejected(f"pixel scrub: {scrubbed.reason}", previews=previews)
        source = scrubbed.dataset
    result = apply(source, profile, keys)
    findings = verify(original, result.dataset, profile)
    if findings:
        summary = "; ".join(f"{f.code} {f.keyword or f.tag} at {f.path}" for f in findings[:10])
        raise InstanceRejected(f"de-identification verification failed: {summary}")
    out = io.BytesIO()
    result.dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_deidentifier(config: AgentConfig) -> Callable[[Path, Destination], bytes]:
    """The policy rule's options win; the site's [deidentify] options are the default.

    Every de-identified instance also goes through the pixel stage (Clean Pixel Data): its
    policy decides when OCR runs, and a missing OCR backend quarantines instead of sending.
    """
    default = Profile.from_names(config.deidentify.options)
    keys: list[PseudonymKeys] = []
    pixel_policy = PixelPolicy.default()
    if config.deidentify.pixel_rules_file is not None:
        pixel_policy = pixel_policy.with_site_rules(config.deidentify.pixel_rules_file.read_bytes())
    pixels = PixelStage(pixel_policy, TesseractBackend())

    def transform(path: Path, destination: Destination) -> bytes:
        if not keys:
            try:
                keys.append(load_keys(config.deidentify.key_file))
            except ValueError as exc:
                raise InstanceRejected(str(exc)) from exc
        try:
            profile = (
                Profile.from_names(destination.deid_options)
                if destination.deid_options
                else default
            )
        except ValueError as exc:
            raise InstanceRejected(
                f"policy names an unknown de-identification option: {exc}"
            ) from exc
        profile = Profile(profile.options | {Option.CLEAN_PIXEL_DATA})
        return deidentify_file(path, profile, keys[0], pixels)

    return transform
