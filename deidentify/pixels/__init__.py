"""Clean Pixel Data: blank burned-in identity on every frame, verify by reading again, fail closed.

    from deidentify.pixels import PixelPolicy, TesseractBackend, scrub

    policy = PixelPolicy.default()                     # starter rules, safe OCR plan
    policy = policy.with_site_rules(toml_text)         # optional: a site's own layouts
    ocr = TesseractBackend()                           # ocr.is_available(), .unavailable_reason()
    result = scrub(ds, policy, ocr)                    # ds is not modified; every frame is
                                                       # screened for text (textdetect.py)
    if result.quarantined:                             # result.reason, result.preview (PNG bytes)
        ...
    else:
        result.dataset                                 # new dataset, pixels and attributes updated

Pure except `tesseract.py`, which runs the tesseract binary, and `networker.py`, which runs the
learned text detector (`netsession.py`, onnxruntime) in a worker process.
"""

from deidentify.pixels.detect import Hit, Needles, find_hits
from deidentify.pixels.frames import PixelError
from deidentify.pixels.ocr import Box, OcrBackend, OcrUnavailable, OcrWord
from deidentify.pixels.policy import OcrPlan, PixelPolicy
from deidentify.pixels.preview import Preview, encode_png
from deidentify.pixels.report import PixelTally, outcome, study_key
from deidentify.pixels.rules import RegionRule, RuleError, RuleSet, parse_rules, starter_rules
from deidentify.pixels.scrub import ScrubResult, make_preview, scrub
from deidentify.pixels.tesseract import TesseractBackend

__all__ = [
    "Box",
    "Hit",
    "Needles",
    "OcrBackend",
    "OcrPlan",
    "OcrUnavailable",
    "OcrWord",
    "PixelError",
    "PixelPolicy",
    "PixelTally",
    "Preview",
    "RegionRule",
    "RuleError",
    "RuleSet",
    "ScrubResult",
    "TesseractBackend",
    "encode_png",
    "find_hits",
    "make_preview",
    "outcome",
    "parse_rules",
    "scrub",
    "starter_rules",
    "study_key",
]
