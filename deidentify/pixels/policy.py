"""When the pixel scrubber blanks what, and when OCR runs (it costs time; the default is safe).

Default plan:
* Modalities that usually carry burned-in text (US, SC, XA, RF, ES, OT, DX, CR, XC, GM, IO,
  PX, DOC) and any instance whose Burned In Annotation is YES: OCR every frame.
* Other instances with Burned In Annotation missing: OCR every frame, except the volumetric
  modalities (CT, MR, PT, NM), which are sampled: frames 0, last and every `sample_every`th of
  a multi-frame image, and single-frame instances whose Instance Number is missing or
  1 + k * `sample_every`. Burned In Annotation NO is sampled the same way: it is an
  assertion by the device, checked, not trusted.
A sampled plan cannot prove an instance clean, so the scrubber leaves Burned In Annotation as it
was; a complete plan that finds nothing left sets it to NO.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pydicom.dataset import Dataset

from deidentify.pixels.rules import RuleSet, parse_rules, starter_rules

ALWAYS_OCR = frozenset(
    {"US", "SC", "XA", "RF", "ES", "OT", "DX", "CR", "XC", "GM", "IO", "PX", "DOC"}
)
VOLUMETRIC = frozenset({"CT", "MR", "PT", "NM"})


@dataclass(frozen=True)
class OcrPlan:
    frames: tuple[int, ...]
    complete: bool  # every frame is read
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
    """

    rules: RuleSet = field(default_factory=starter_rules)
    ocr_modalities: frozenset[str] = ALWAYS_OCR
    sampled_modalities: frozenset[str] = VOLUMETRIC
    sample_every: int = 16
    ultrasound_regions_only: bool = True
    margin: int = 3
    patterns: bool = True
    second_pass: bool = True
    output_syntax: str | None = None
    ocr_upscale: int = 1
    ocr_enabled: bool = True

    @classmethod
    def default(cls) -> PixelPolicy:
        return cls()

    def with_site_rules(self, toml: str | bytes) -> PixelPolicy:
        """This policy plus a site's own region rules (TOML text the caller read)."""
        return replace(self, rules=self.rules + parse_rules(toml))

    def ocr_plan(self, ds: Dataset, frames: int) -> OcrPlan:
        if not self.ocr_enabled or frames <= 0:
            return OcrPlan((), False, "OCR disabled by policy")
        modality = str(ds.get("Modality", "") or "").upper()
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        everything = tuple(range(frames))
        if modality in self.ocr_modalities:
            return OcrPlan(everything, True, f"modality {modality}")
        if burned == "YES":
            return OcrPlan(everything, True, "Burned In Annotation YES")
        if not burned and modality not in self.sampled_modalities:
            return OcrPlan(everything, True, "Burned In Annotation missing")
        step = max(self.sample_every, 1)
        if frames > 1:
            picked = sorted({0, frames - 1, *range(0, frames, step)})
            return OcrPlan(tuple(picked), len(picked) == frames, "sampled frames")
        number = ds.get("InstanceNumber", None)
        try:
            sampled = number is None or str(number).strip() == "" or (int(number) - 1) % step == 0
        except (TypeError, ValueError):
            sampled = True
        if sampled:
            return OcrPlan((0,), False, "sampled instance")
        return OcrPlan((), False, "not sampled")
