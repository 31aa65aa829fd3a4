"""What a sharing rule can match on: facts about a study, as the agent reads them from headers.

The agent knows all of it. The hub's index holds only `without_identity()` (no description,
age in 5-year bands, only the station names the matching rule names), so a hub-side dry run
reports rules that need the rest as undecided.
"""

from __future__ import annotations

from collections.abc import Collection

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
    station_names_withheld: bool = Field(
        default=False,
        description="station names were left out (not named by the rule): a rule on station "
        "names that does not match the ones listed is undecided, not refused",
    )

    def without_identity(self, stations: Collection[str] = ()) -> StudyFacts:
        """The part the hub may index: no description, age only in 5-year bands, and only the
        station names in `stations` (the ones the matching rule names: a site's admin typed
        those into the policy the hub holds). Station Name is free text at the modality (PS3.15
        lists it for removal): an operator's or a patient's name typed there must not reach
        the hub, so every other station name is left out and `station_names_withheld` says so."""
        age = self.patient_age_years
        named = {name.upper() for name in stations}
        kept = [name for name in self.station_names if name.upper() in named]
        return self.model_copy(
            update={
                "study_description": None,
                "patient_age_years": None if age is None else age - age % 5,
                "station_names": kept,
                "station_names_withheld": self.station_names_withheld
                or len(kept) < len(self.station_names),
            }
        )

    @property
    def is_indexable(self) -> bool:
        age = self.patient_age_years
        return self.study_description is None and (age is None or age % 5 == 0)
