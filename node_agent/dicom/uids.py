"""UID checks for anything that becomes a file name."""

from __future__ import annotations

import re

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: str) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (safe as a file name)."""
    return 0 < len(value) <= 64 and bool(_UID.match(value))
