"""Sharing policy as the hub serves it to agents: versioned, signed rules, deny by default.

A rule says: studies that match go to `destination_org`, identified or de-identified (with the
listed PS3.15 options, the site's recipe and a pixel policy), at a priority. Anything no rule
allows does not leave the site. The agent enforces the policy before anything leaves; the hub
checks it again at ingest. The hub signs every version (`SitePolicy.signature`, ECDSA P-256
over `signed_bytes()`); agents verify it before use and keep the last verified version.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wire.canonical import canonical_json
from wire.collection_key import collection_named
from wire.facts import StudyFacts
from wire.manifest import Name, UtcDatetime

__all__ = ["PixelPolicy", "PolicyMatch", "PolicyRule", "SitePolicy", "StudyFacts"]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CS = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_AE = re.compile(r"^[\x20-\x7e]{1,16}$")
_POLICY_TAG = b"hexchange/v1 site-policy\n"

PixelPolicy = Literal["blank", "strict", "ocr"]
"""Burned-in text in a de-identified share (`deidentify.pixels` text policy): `blank` (default)
blanks every detected text line unless OCR reads it as safe (orientation markers, W/L, ...);
`strict` blanks every detected line, safe or not; `ocr` blanks only what OCR reads as
identifying (looser: for sites whose modalities burn in nothing but technique data)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _strip_upper(values: list[str]) -> list[str]:
    return [v.strip().upper() for v in values]


class PolicyMatch(_Model):
    """Which studies a rule applies to. Every given criterion must hold (AND); inside a list,
    any value may match (OR); an empty criterion matches everything."""

    modalities: list[str] = Field(default_factory=list, max_length=64)
    sop_classes: list[str] = Field(default_factory=list, max_length=64)
    body_parts: list[str] = Field(default_factory=list, max_length=64)
    study_description: str | None = Field(
        default=None, max_length=128, description="glob, case-insensitive, e.g. '*chest*'"
    )
    min_age_years: int | None = Field(default=None, ge=0, le=150)
    max_age_years: int | None = Field(default=None, ge=0, le=150)
    calling_aes: list[str] = Field(default_factory=list, max_length=64)
    station_names: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("modalities", "body_parts")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        """DICOM code strings are upper case (CS); `ct` means CT."""
        value = _strip_upper(value)
        for v in value:
            if not _CS.fullmatch(v):
                raise ValueError(f"{v!r} is not a DICOM code string (A-Z, 0-9, _; <= 16)")
        return value

    @field_validator("sop_classes")
    @classmethod
    def _uids(cls, value: list[str]) -> list[str]:
        for v in value:
            if not (_UID.fullmatch(v) and len(v) <= 64):
                raise ValueError(f"{v!r} is not a SOP Class UID (digits and dots, <= 64)")
        return value

    @field_validator("calling_aes", "station_names")
    @classmethod
    def _titles(cls, value: list[str]) -> list[str]:
        value = [v.strip() for v in value]
        for v in value:
            if not _AE.fullmatch(v):
                raise ValueError(f"{v!r} must be 1-16 printable ASCII characters")
        return value

    @model_validator(mode="after")
    def _age_range(self) -> PolicyMatch:
        low, high = self.min_age_years, self.max_age_years
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_age_years {low} is above max_age_years {high}")
        return self

    def evaluate(self, facts: StudyFacts) -> bool | None:
        """True or False; None when a criterion needs a fact that `facts` does not carry."""
        undecided = False

        def any_of(wanted: list[str], have: list[str], fold: bool = False) -> bool:
            if fold:
                return bool({w.upper() for w in wanted} & {h.upper() for h in have})
            return bool(set(wanted) & set(have))

        if self.modalities and not any_of(self.modalities, facts.modalities):
            return False
        if self.sop_classes and not any_of(self.sop_classes, facts.sop_classes):
            return False
        if self.body_parts and not any_of(self.body_parts, facts.body_parts, fold=True):
            return False
        if self.calling_aes and not any_of(self.calling_aes, facts.calling_aes):
            return False
        if self.station_names and not any_of(self.station_names, facts.station_names, True):
            if not facts.station_names_withheld:
                return False
            undecided = True  # the study's other station names were not shown
        if self.min_age_years is not None or self.max_age_years is not None:
            age = facts.patient_age_years
            if age is None:
                undecided = True
            elif (self.min_age_years is not None and age < self.min_age_years) or (
                self.max_age_years is not None and age > self.max_age_years
            ):
                return False
        if self.study_description is not None:
            text = facts.study_description
            if text is None:
                undecided = True
            elif not fnmatch.fnmatchcase(text.casefold(), self.study_description.casefold()):
                return False
        return None if undecided else True

    def matches(self, modalities: set[str]) -> bool:
        """Modality-only check (for callers that know nothing else; other criteria pass)."""
        return not self.modalities or bool(modalities & set(self.modalities))

    @property
    def needs_more_than_modality(self) -> bool:
        return any(
            (
                self.sop_classes,
                self.body_parts,
                self.study_description is not None,
                self.min_age_years is not None,
                self.max_age_years is not None,
                self.calling_aes,
                self.station_names,
            )
        )


class PolicyRule(_Model):
    destination_org: Name
    mode: Literal["identified", "deidentified"]
    priority: int = Field(default=100, ge=0, le=1000, description="lower is sent first")
    deid_options: list[str] = Field(default_factory=list, max_length=16)
    recipe: str | None = Field(
        default=None, max_length=65536, description="site recipe (TOML) applied after the profile"
    )
    pixel_policy: PixelPolicy = "blank"
    match: PolicyMatch = Field(default_factory=PolicyMatch)

    @model_validator(mode="after")
    def _collections_take_deidentified_only(self) -> PolicyRule:
        """A research collection (`collection--NAME`, wire.collection_key) never holds an
        identified study: such a rule is refused where it is written."""
        name = collection_named(self.destination_org)
        if name is not None and self.mode != "deidentified":
            raise ValueError(
                f"research collection {name!r} takes de-identified studies only; "
                "make the rule mode 'deidentified'"
            )
        return self


class SitePolicy(_Model):
    org: Name
    site: Name
    version: int = Field(ge=0)
    rules: list[PolicyRule] = Field(default_factory=list, max_length=256)
    updated_at: UtcDatetime
    signature: str | None = Field(default=None, max_length=512)

    def rules_for(self, modalities: set[str]) -> list[PolicyRule]:
        return [rule for rule in self.rules if rule.match.matches(modalities)]

    def rules_matching(self, facts: StudyFacts) -> list[PolicyRule]:
        """Rules that certainly match `facts` (the agent has every fact)."""
        return [rule for rule in self.rules if rule.match.evaluate(facts) is True]

    def allows(
        self,
        destination_org: str,
        mode: str,
        modalities: set[str] | None = None,
        facts: StudyFacts | None = None,
    ) -> bool:
        """Does a rule send `mode` studies (of these modalities / with these facts, when given)
        to the org? With facts that lack what a rule needs (the hub never sees a study
        description), the rule is not ruled out: only a criterion that fails refuses."""
        return any(
            r.destination_org == destination_org
            and r.mode == mode
            and (modalities is None or r.match.matches(modalities))
            and (facts is None or r.match.evaluate(facts) is not False)
            for r in self.rules
        )

    def signed_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        return _POLICY_TAG + canonical_json(body)

    def signed_with(self, key: ec.EllipticCurvePrivateKey) -> SitePolicy:
        signature = key.sign(self.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        return self.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def verify(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        if not self.signature:
            return False
        try:
            public_key.verify(
                base64.b64decode(self.signature, validate=True),
                self.signed_bytes(),
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, ValueError):
            return False
        return True
