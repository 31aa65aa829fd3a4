"""Request bodies and query text: what people send is checked before any domain code runs.

Every body model derives from `ApiInput`: unknown fields are refused, and no string anywhere in
it (nested lists and objects included) may hold NUL or other control characters except tab and
line breaks. Such text cannot be stored (PostgreSQL refuses NUL), and shown in a terminal or a
page it could rewrite what an admin sees.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, model_validator

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"


def _check(value: Any, where: str) -> None:
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValueError(f"{where or 'text'} holds a control character (e.g. NUL); remove it")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, where)
            _check(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")


class ApiInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        _check(data, "")
        return data


def query_text(max_length: int) -> Any:
    return Query(max_length=max_length, pattern=ONE_LINE)


ShortText = Annotated[str | None, Query(max_length=140, pattern=ONE_LINE)]
