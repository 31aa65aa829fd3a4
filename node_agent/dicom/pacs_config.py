"""The `[pacs]` section: which PACS the agent pulls studies from, how and how often.

```toml
[pacs]
host = "10.0.0.5"
port = 104
ae_title = "CLINIC_PACS"
retrieve = "move"        # "move": C-MOVE to this agent's AE (dicom.ae_title); "get": C-GET
schedule = 300           # seconds between scheduled pulls, or "off"
lookback_days = 2        # a scheduled pull asks for studies of the last N days

[pacs.query]
modalities = ["CT", "MR"]                    # empty: every modality
keys = { StudyDescription = "CHEST*" }       # more STUDY-level matching keys
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydicom.datadict import dictionary_VR, tag_for_keyword

_RESERVED_KEYS = {
    "QueryRetrieveLevel",
    "StudyInstanceUID",
    "StudyDate",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
    "SOPClassesInStudy",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ae(value: str) -> str:
    if not 0 < len(value) <= 16 or "\\" in value:
        raise ValueError("an AE title is 1 to 16 characters without backslashes")
    return value


class PacsQuery(_Model):
    modalities: list[str] = Field(
        default_factory=list, description="ModalitiesInStudy to ask for; empty means all"
    )
    keys: dict[str, str] = Field(
        default_factory=dict,
        description="More STUDY-level matching keys by DICOM keyword, e.g. StudyDescription",
    )

    @field_validator("modalities")
    @classmethod
    def _modalities(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            code = item.strip().upper()
            if not 0 < len(code) <= 16 or not code.replace("_", "").isalnum():
                raise ValueError(f"{item!r} is not a DICOM modality code such as CT, MR or US")
            out.append(code)
        return out

    @field_validator("keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for keyword in value:
            if tag_for_keyword(keyword) is None:
                raise ValueError(f"{keyword!r} is not a DICOM keyword (e.g. StudyDescription)")
            if keyword in _RESERVED_KEYS:
                raise ValueError(f"{keyword} is set by the agent; use the other [pacs] settings")
            if dictionary_VR(keyword) == "SQ":
                raise ValueError(f"{keyword} is a sequence; only simple matching keys are allowed")
        return value


class PacsSection(_Model):
    host: str = Field(description="Host name or address of the PACS")
    port: int = Field(default=104, ge=1, le=65535)
    ae_title: str = Field(description="The PACS's AE title (called AE)")
    retrieve: Literal["move", "get"] = Field(
        default="move",
        description="move: C-MOVE to this agent's own AE; get: C-GET over the same association",
    )
    move_destination: str | None = Field(
        default=None,
        description="AE title the PACS knows this agent by; default dicom.ae_title",
    )
    schedule: float | None = Field(
        default=None, description='Seconds between scheduled pulls, or "off"'
    )
    lookback_days: int = Field(default=1, ge=0, le=3650)
    query: PacsQuery = PacsQuery()
    timeout_seconds: float = Field(default=30.0, gt=0, description="Association and C-FIND")
    retrieve_timeout_seconds: float = Field(
        default=600.0, gt=0, description="Longest wait for the next C-MOVE/C-GET response"
    )
    move_associations: int = Field(
        default=2,
        ge=1,
        le=8,
        description="C-MOVE a large study over this many associations at once, each with a "
        "share of its instances (IMAGE level); the PACS sends one instance at a time per "
        "association, so two keep both ends busy. 1: one STUDY-level C-MOVE",
    )

    @field_validator("ae_title", "move_destination")
    @classmethod
    def _ae(cls, value: str | None) -> str | None:
        return None if value is None else _check_ae(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if value is None or value is False:
            return None
        if isinstance(value, str):
            if value.strip().lower() in {"off", "no", "never", ""}:
                return None
            raise ValueError('schedule is a number of seconds or "off"')
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value == 0:
                return None
            if value < 10:
                raise ValueError('schedule is at least 10 seconds, or "off"')
            return float(value)
        raise ValueError('schedule is a number of seconds or "off"')
