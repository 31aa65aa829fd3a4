"""Transfer syntaxes of the Q/R SCP's C-MOVE/C-GET sub-operations.

An instance retrieved from another organization arrives in the syntax its PACS holds it in
(JPEG, JPEG-LS, JPEG 2000, RLE, or uncompressed). The sub-operations propose, for the common
image storage classes, a context of the usual compressed syntaxes beside one of the uncompressed
ones (the storage classes of pynetdicom's `StoragePresentationContexts` fill the rest of the
128 contexts an association may propose, uncompressed); a C-GET viewer's own proposal is
accepted in any of these syntaxes. Each instance then goes in its own syntax when the
destination accepted it; otherwise, when the destination accepted an uncompressed syntax for
its class, it is decompressed losslessly (`transcode.decompress_to_explicit_le`: never a lossy
encoding, a lossy source stays flagged) and the log says so. Logs name syntaxes, never
patients.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
    XRayRadiofluoroscopicImageStorage,
)

from node_agent.dicom.transcode import (
    UNCOMPRESSED,
    TranscodeError,
    decompress_to_explicit_le,
    syntax_name,
)

log = structlog.get_logger("hexchange.agent.qr")

COMPRESSED: list[str | UID] = [
    JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1, RLELossless, JPEGBaseline8Bit,
    JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless,
]  # fmt: skip
IMAGE_CLASSES = [
    CTImageStorage, MRImageStorage, ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation, DigitalMammographyXRayImageStorageForPresentation,
    UltrasoundImageStorage, UltrasoundMultiFrameImageStorage, SecondaryCaptureImageStorage,
    XRayAngiographicImageStorage, XRayRadiofluoroscopicImageStorage,
    NuclearMedicineImageStorage, PositronEmissionTomographyImageStorage,
    EnhancedCTImageStorage, EnhancedMRImageStorage,
]  # fmt: skip
MAX_CONTEXTS = 128


def move_contexts() -> list[PresentationContext]:
    """What a C-MOVE sub-association proposes: each image class twice (uncompressed, and the
    compressed syntaxes), then other storage classes uncompressed, 128 contexts at most."""
    contexts = [build_context(c, list(UNCOMPRESSED)) for c in IMAGE_CLASSES]
    contexts += [build_context(c, COMPRESSED) for c in IMAGE_CLASSES]
    for context in StoragePresentationContexts:
        if len(contexts) >= MAX_CONTEXTS:
            break
        if context.abstract_syntax not in IMAGE_CLASSES:
            assert context.abstract_syntax is not None
            contexts.append(build_context(context.abstract_syntax, list(UNCOMPRESSED)))
    return contexts


def supported_syntaxes() -> list[str | UID]:
    """The syntaxes a C-GET viewer's storage proposal is accepted in (its order decides)."""
    return [*UNCOMPRESSED, *COMPRESSED]


def fit(ds: Dataset, accepted: Sequence[PresentationContext], role: str) -> Dataset:
    """`ds` in a syntax the destination accepted for its class: as it is, or decompressed
    (lossless) when only uncompressed was accepted. Left as it is when nothing fits (the
    sub-operation then fails, counted)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return ds
    syntax = UID(str(meta.TransferSyntaxUID))
    if not syntax.is_compressed:
        return ds
    sop_class = str(ds.get("SOPClassUID", ""))
    offered = {
        str(cx.transfer_syntax[0])
        for cx in accepted
        if cx.abstract_syntax == sop_class and cx.transfer_syntax and getattr(cx, f"as_{role}")
    }
    if str(syntax) in offered or not offered & {str(u) for u in UNCOMPRESSED}:
        return ds
    try:
        decompress_to_explicit_le(ds)
    except TranscodeError as exc:
        log.warning("sub-operation instance could not be decompressed", reason=str(exc))
        return ds
    log.info("destination refused the instance's syntax: decompressed losslessly",
             syntax=syntax_name(str(syntax)))  # fmt: skip
    return ds
