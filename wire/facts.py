"""What a sharing rule can match on: facts about a study, as the agent reads them from headers.

The agent knows all of it. The hub's index holds only `without_identity()` (no description,
age in 5-year bands), so a hub-side dry run reports rules that need the rest as undecided.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StudyFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    modalities: list[str] = Field(default_factory=list, max_length=64)
    sop_classes: list[str] = Field(default_factory=list, max_length=64)
    body_parts: list[str] = Field(default_factory=list, max_length=64)
    calling_aes: list[str] = Field(default_factory=list, max_length=64)
    station_names: list[str] = Field(default_factory=list, max_length=64)
    patient_age_years: int | None = Field(default=None, ge=0, le=150)
    study_description: str | None = Field(default=None, max_length=256)

    def without_identity(self) -> StudyFacts:
        """The part the hub may index: no description, age only in 5-year bands."""
        age = self.patient_age_years
        return self.model_copy(
            update={
                "study_description": None,
                "patient_age_years": None if age is None else age - age % 5,
            }
        )

    @property
    def is_indexable(self) -> bool:
        age = self.patient_age_years
        return self.study_description is None and (age is None or age % 5 == 0)
