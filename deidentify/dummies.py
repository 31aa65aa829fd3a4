"""Dummy (D) and empty (Z) values that are valid for each VR."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import empty_value_for_VR
from pydicom.sequence import Sequence

from deidentify.dates import DUMMY_DA, DUMMY_DT, DUMMY_TM

DUMMY_TEXT = "ANONYMIZED"

_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE"})
_DUMMIES: dict[str, Any] = {
    "PN": "ANONYMIZED",
    "DA": DUMMY_DA,
    "TM": DUMMY_TM,
    "DT": DUMMY_DT,
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "UR": "",
    "AT": 0,
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}


def dummy_value(vr: str) -> Any:
    """A non-empty value valid for `vr` (binary VRs get zero-length values)."""
    if vr in _TEXT_VRS:
        return DUMMY_TEXT
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr == "SQ":
        return Sequence([])
    return empty_value_for_VR(vr)


def empty_value(vr: str) -> Any:
    """The zero-length value for `vr` (an empty sequence for SQ)."""
    if vr == "SQ":
        return Sequence([])
    return empty_value_for_VR(vr)
