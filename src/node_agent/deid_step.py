"""The pipeline's de-identification step: apply the profile, verify independently, or reject.

An instance whose verification finds anything is rejected (quarantined by the pipeline) and
never sealed. Findings name attributes, never values.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from deidentify.engine import PseudonymKeys, apply
from deidentify.profile import Profile
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


def deidentify_file(path: Path, profile: Profile, keys: PseudonymKeys) -> bytes:
    try:
        original = dcmread(path)
    except (InvalidDicomError, EOFError, ValueError) as exc:
        raise InstanceRejected(f"unreadable DICOM ({type(exc).__name__})") from exc
    result = apply(original, profile, keys)
    findings = verify(original, result.dataset, profile)
    if findings:
        summary = "; ".join(f"{f.code} {f.keyword or f.tag} at {f.path}" for f in findings[:10])
        raise InstanceRejected(f"de-identification verification failed: {summary}")
    out = io.BytesIO()
    result.dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def make_deidentifier(config: AgentConfig) -> Callable[[Path, Destination], bytes]:
    """The policy rule's options win; the site's [deidentify] options are the default."""
    default = Profile.from_names(config.deidentify.options)
    keys: list[PseudonymKeys] = []

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
        return deidentify_file(path, profile, keys[0])

    return transform
