"""When the pixel scrubber blanks what, and when OCR runs (the default is the safe one).

Every frame of every instance with pixel data is screened by the text detector
(`textdetect.find_text`, no OCR), whatever its modality or Burned In Annotation says. Then:

* `text`: what happens to a detected text line. "blank" (default): blanked unless OCR reads
  it and everything it reads is safe (`allow.SAFE_WORDS` plus the site's `allowed_words`);
  "strict": blanked even when OCR reads it as safe; "ocr": only what OCR reads as identifying
  is blanked (the old, looser behaviour, for a site that measured it on its own images).
* OCR reads every frame of the modalities that usually carry burned-in text (US, SC, XA, RF,
  ES, OT, DX, CR, XC, GM, IO, PX, DOC), of Burned In Annotation YES, and of Burned In
  Annotation missing outside CT/MR/PT/NM; elsewhere it reads the frames where the detector
  found text (only those lines). Nothing is sampled.
* `documents`: a frame that is mostly text (a scanned page, a screenshot, a dose report) is
  "quarantine"d (default) or "blank"ed wholesale.
* `learned`: the learned text detector (`netdetect.py`, PP-OCRv4's DB network on the CPU) as a
  second stage after the classical screen; its regions are blanked with the detected lines
  (as rotated polygons), except where OCR read a line as safe text. "auto" (default): it runs
  on the frames where the classical screen found at least one line (about 140 ms per 512 x
  512 frame with text, on one core; frames without text cost nothing more), and finds the
  faint, slanted, large or small letters of those frames that the classical detector misses;
  "every-frame": on every frame (finds text on frames where the screen found none too, at
  ~140 ms per frame, ~15x the screen); "off": the classical detector only. If the model or
  onnxruntime is missing, "auto" falls back to the classical detector and says so in the
  result's notes; "every-frame" quarantines the instance (it was told every frame must be
  checked). With `text = "ocr"` (only what OCR reads is blanked) it does not run. The re-screen
  after scrubbing stays the classical detector's. Measured in bench/RESULTS.md ("Learned text
  detector").
With the detector on, every frame is screened: an instance that comes out clean gets Burned In
Annotation NO.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pydicom.dataset import Dataset

from deidentify.pixels.allow import SAFE_WORDS
from deidentify.pixels.netdetect import DEFAULT_NET, NetParams
from deidentify.pixels.rules import RuleSet, parse_rules, starter_rules
from deidentify.pixels.textdetect import DEFAULT_DETECT, DetectParams

ALWAYS_OCR = frozenset(
    {"US", "SC", "XA", "RF", "ES", "OT", "DX", "CR", "XC", "GM", "IO", "PX", "DOC"}
)
VOLUMETRIC = frozenset({"CT", "MR", "PT", "NM"})
TEXT_ACTIONS = ("blank", "strict", "ocr")
LEARNED_ACTIONS = ("auto", "off", "every-frame")
DOCUMENT_ACTIONS = ("quarantine", "blank")


@dataclass(frozen=True)
class OcrPlan:
    frames: tuple[int, ...]  # read whole by OCR
    complete: bool  # every frame is read or screened
    reason: str


@dataclass(frozen=True)
class PixelPolicy:
    """What to blank and when to read. Build with `PixelPolicy.default()` or `with_site_rules`.

    * `rules`: region rules (starter library by default; a site adds its own TOML).
    * `ultrasound_regions_only`: for US, blank everything outside Sequence of Ultrasound Regions.
    * `margin`: pixels added around every OCR box before blanking.
    * `patterns`: blank dates, times, phone numbers, MRN-like numbers and words after labels,
      not only the instance's own header values.
    * `second_pass`: OCR the output again; anything identifying still read quarantines it.
    * `output_syntax`: None = the source's lossless syntax if encodable, else Explicit VR LE.
    * `ocr_upscale`: 1 or 2; 2 reads text under ~10 px high better at four times the cost.
    * `detect`: text detector parameters; None turns the screen off (OCR plan only).
    * `text`, `documents`, `allowed_words`, `learned`: see the module docstring.
    * `net`: the learned detector's parameters (`netdetect.NetParams`).
    """

    rules: RuleSet = field(default_factory=starter_rules)
    ocr_modalities: frozenset[str] = ALWAYS_OCR
    volumetric: frozenset[str] = VOLUMETRIC
    ultrasound_regions_only: bool = True
    margin: int = 3
    patterns: bool = True
    second_pass: bool = True
    output_syntax: str | None = None
    ocr_upscale: int = 1
    ocr_enabled: bool = True
    detect: DetectParams | None = DEFAULT_DETECT
    text: str = "blank"
    documents: str = "quarantine"
    allowed_words: frozenset[str] = SAFE_WORDS
    learned: str = "auto"
    net: NetParams = DEFAULT_NET

    def __post_init__(self) -> None:
        if self.text not in TEXT_ACTIONS:
            raise ValueError(f"pixel policy: text must be one of {TEXT_ACTIONS}, not {self.text!r}")
        if self.learned not in LEARNED_ACTIONS:
            raise ValueError(
                f"pixel policy: learned must be one of {LEARNED_ACTIONS}, not {self.learned!r}"
            )
        if self.documents not in DOCUMENT_ACTIONS:
            raise ValueError(
                f"pixel policy: documents must be one of {DOCUMENT_ACTIONS}, not {self.documents!r}"
            )

    @classmethod
    def default(cls) -> PixelPolicy:
        return cls()

    def with_site_rules(self, toml: str | bytes) -> PixelPolicy:
        """This policy plus a site's own region rules (TOML text the caller read)."""
        return replace(self, rules=self.rules + parse_rules(toml))

    def with_allowed_words(self, words: Iterable[str]) -> PixelPolicy:
        """This policy plus a site's own safe words (e.g. its department's name)."""
        extra = {w.strip().upper() for w in words if w.strip()}
        return replace(self, allowed_words=self.allowed_words | extra)

    def ocr_plan(self, ds: Dataset, frames: int) -> OcrPlan:
        """The frames OCR reads whole; the detector adds the frames where it finds text."""
        screened = self.detect is not None
        if not self.ocr_enabled or frames <= 0:
            return OcrPlan((), screened, "OCR disabled by policy")
        modality = str(ds.get("Modality", "") or "").upper()
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        everything = tuple(range(frames))
        if modality in self.ocr_modalities:
            return OcrPlan(everything, True, f"modality {modality}")
        if burned == "YES":
            return OcrPlan(everything, True, "Burned In Annotation YES")
        if not burned and modality not in self.volumetric:
            return OcrPlan(everything, True, "Burned In Annotation missing")
        if screened:
            return OcrPlan((), True, "frames where the detector finds text")
        return OcrPlan(everything, True, "no detector: every frame")
