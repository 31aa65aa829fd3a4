"""The `[answering]` section: which organizations may query this site's PACS, and how.

```toml
[answering]
institution_name = "Clinic A"        # shown to the asking PACS as the studies' source
patient_id_issuer = "CLINIC-A"       # this site's patient-ID domain (IssuerOfPatientID)

[[answering.rules]]
org = "org-b"                        # who may ask
modalities = ["CT", "MR"]            # which studies it may see; empty: all
max_years_back = 10                  # how far back; unset: no limit
approval_required = false            # true: a person here approves each request first
mode = "identified"                  # or "de-identified" (see below)
```

Deny by default: an organization no rule names is refused, and so is one that the site's
sharing policy (from the hub) does not let receive studies in the rule's mode, since it could
see the studies but never retrieve them. A query must name the patient (name, ID, accession
number or study UID).

`mode = "identified"` (the default) answers with the patient's name, ID and the studies' own
UIDs (the clinician needs the priors of this patient). `mode = "de-identified"` answers as the
site's de-identified share to that organization would send the studies: pseudonymous study
UIDs, patient attributes and dates as the sharing rule's recipe treats them
(`node_agent/answer_deid.py`); a retrieve names the pseudonymous UID and is mapped back here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wire.policy import SitePolicy
from wire.query import QueryKeys, StudyMatch


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnswerRule(_Model):
    org: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    modalities: list[str] = Field(default_factory=list)
    max_years_back: int | None = Field(default=None, ge=0, le=150)
    approval_required: bool = False
    show_institution: bool = Field(
        default=True, description="name this site (institution_name) as the studies' source"
    )
    mode: Literal["identified", "deidentified"] = Field(
        default="identified",
        description="identified, or de-identified as the sharing policy's rule for the org",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("de-identified", "deidentified"):
            return "deidentified"
        if value != "identified":
            raise ValueError(f"mode must be 'identified' or 'de-identified', not {value!r}")
        return value

    @field_validator("modalities")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        out = [v.strip().upper() for v in value]
        for code in out:
            if not 0 < len(code) <= 16 or not code.replace("_", "").isalnum():
                raise ValueError(f"{code!r} is not a DICOM modality code such as CT or MR")
        return out


class AnsweringSection(_Model):
    enabled: bool = True
    institution_name: str | None = Field(default=None, max_length=64)
    patient_id_issuer: str | None = Field(default=None, max_length=64)
    rules: list[AnswerRule] = Field(default_factory=list)
    max_matches: int = Field(default=200, ge=1, le=500)
    wait_seconds: float = Field(
        default=20.0, gt=0, le=30, description="long poll: how long one wait for requests lasts"
    )


@dataclass(frozen=True)
class Decision:
    """Answer (with `rule`) or refuse (`outcome` and a reason the asking clinician reads)."""

    rule: AnswerRule | None
    outcome: str = "matches"
    reason: str = ""


def decide(
    section: AnsweringSection | None,
    sharing: SitePolicy | None,
    requester_org: str,
    keys: QueryKeys | None,
    own_org: str,
) -> Decision:
    if section is None or not section.enabled:
        return Decision(None, "refused", f"{own_org} does not answer federated queries")
    rule = next((r for r in section.rules if r.org == requester_org), None)
    if rule is None:
        return Decision(
            None, "refused", f"{own_org}'s policy does not let {requester_org} query its studies"
        )
    if sharing is None or not sharing.allows(requester_org, rule.mode):
        kind = "identified" if rule.mode == "identified" else "de-identified"
        return Decision(
            None,
            "refused",
            f"{own_org}'s sharing policy sends no {kind} studies to {requester_org}, "
            "so they could not be retrieved",
        )
    if keys is not None and not keys.identifies_patient:
        return Decision(
            None,
            "refused",
            "a federated query must name the patient (name, patient ID, accession number or "
            "study UID)",
        )
    if rule.approval_required:
        return Decision(rule, "awaiting_approval", f"waiting for approval at {own_org}")
    return Decision(rule)


def earliest_date(rule: AnswerRule, today: dt.date | None = None) -> str | None:
    """The oldest StudyDate (YYYYMMDD) the rule lets the requester see, or None."""
    if rule.max_years_back is None:
        return None
    today = today or dt.date.today()
    try:
        start = today.replace(year=today.year - rule.max_years_back)
    except ValueError:  # 29 February
        start = today.replace(year=today.year - rule.max_years_back, day=28)
    return start.strftime("%Y%m%d")


def allowed(rule: AnswerRule, match: StudyMatch, today: dt.date | None = None) -> bool:
    """Does the rule let the requester see this study (modalities, how far back)?"""
    if rule.modalities and match.modalities and not set(rule.modalities) & set(match.modalities):
        return False
    oldest = earliest_date(rule, today)
    return not (oldest and match.study_date and match.study_date < oldest)
