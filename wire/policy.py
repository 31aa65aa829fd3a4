"""Sharing policy as the hub serves it to agents: versioned rules, deny by default.

A rule says: studies that match go to `destination_org`, identified or de-identified (with the
listed PS3.15 options), at a priority. Anything no rule allows does not leave the site. The
agent enforces the policy before anything leaves; the hub checks it again at ingest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wire.manifest import Name, UtcDatetime


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicyMatch(_Model):
    """Which studies a rule applies to; an empty list matches everything."""

    modalities: list[str] = Field(default_factory=list, max_length=64)

    @field_validator("modalities")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        """DICOM modalities are upper case (CS); `ct` means CT."""
        return [m.strip().upper() for m in value]

    def matches(self, modalities: set[str]) -> bool:
        return not self.modalities or bool(modalities & set(self.modalities))


class PolicyRule(_Model):
    destination_org: Name
    mode: Literal["identified", "deidentified"]
    priority: int = Field(default=100, ge=0, le=1000, description="lower is sent first")
    deid_options: list[str] = Field(default_factory=list, max_length=16)
    match: PolicyMatch = Field(default_factory=PolicyMatch)


class SitePolicy(_Model):
    org: Name
    site: Name
    version: int = Field(ge=0)
    rules: list[PolicyRule] = Field(default_factory=list, max_length=256)
    updated_at: UtcDatetime

    def rules_for(self, modalities: set[str]) -> list[PolicyRule]:
        return [rule for rule in self.rules if rule.match.matches(modalities)]

    def allows(self, destination_org: str, mode: str, modalities: set[str] | None = None) -> bool:
        """Does a rule send `mode` studies (of these modalities, when given) to the org?"""
        return any(
            r.destination_org == destination_org
            and r.mode == mode
            and (modalities is None or r.match.matches(modalities))
            for r in self.rules
        )
