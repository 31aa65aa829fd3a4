"""Dates, times and ages: keyed per-patient shifting and the Safe Harbor age cap.

Modified dates shift every DA and DT value of a patient by the same whole number of days, derived
from the patient ID under the network secret, so intervals between instances and studies of the
same patient survive. Because the shift is whole days, TM values (and the time part of DT) are
unchanged: a time of day carries no date, and shifting it would break DA+TM pairs.
"""

from __future__ import annotations

import datetime as dt
import re

from deidentify.uids import keyed_int

MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3652

DUMMY_DA = "19000101"
DUMMY_TM = "000000"
DUMMY_DT = "19000101000000"


def day_offset(secret: bytes, patient_key: str) -> int:
    """The per-patient shift in days: always backwards, between 1 and 10 years."""
    span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
    return -(MIN_SHIFT_DAYS + keyed_int(secret, "date-offset", patient_key) % span)


def _shift_date_text(value: str, days: int) -> str | None:
    """Shift a date given as YYYY, YYYYMM or YYYYMMDD, keeping its precision."""
    if not value.isdigit() or len(value) not in (4, 6, 8):
        return None
    year = int(value[:4])
    month = int(value[4:6]) if len(value) >= 6 else 1
    day = int(value[6:8]) if len(value) == 8 else 1
    try:
        shifted = dt.date(year, month, day) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return shifted.strftime("%Y%m%d")[: len(value)]


def shift_da(value: str, days: int) -> str | None:
    """Shift a DA value (or a DA range "A-B"); None when it cannot be parsed."""
    value = value.strip()
    if not value:
        return value
    if "-" in value:
        parts = value.split("-")
        if len(parts) != 2:
            return None
        shifted = [_shift_date_text(p, days) if p else "" for p in parts]
        if any(s is None for s in shifted):
            return None
        return "-".join(s or "" for s in shifted)
    return _shift_date_text(value, days)


_DT = re.compile(r"^(\d{4}(?:\d{2}(?:\d{2})?)?)(.*?)([+-]\d{4})?$")


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping time, fraction and UTC offset."""
    value = value.strip()
    if not value:
        return value
    m = _DT.match(value)
    if not m:
        return None
    date_part = _shift_date_text(m.group(1), days)
    if date_part is None:
        return None
    return date_part + m.group(2) + (m.group(3) or "")


_AS = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def cap_age(value: str, max_years: int = 89) -> str:
    """HIPAA Safe Harbor: an AS age over `max_years` becomes "090Y"; unparseable -> ""."""
    text = value.strip().upper()
    m = _AS.match(text)
    if not m:
        return ""
    years = int(m.group(1)) * _DAYS_PER_UNIT[m.group(2)] / 365.25
    return "090Y" if years > max_years else text
