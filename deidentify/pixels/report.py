"""Per-study counts of what the pixel scrubber did: scrubbed, kept unchanged, quarantined.

    tally = PixelTally()
    tally.add(ds.StudyInstanceUID, result)        # or tally.add_outcome(study, "scrubbed")
    for study, counts in tally.rows(): ...        # study: a short digest, never the UID

A study is named by a digest of its Study Instance UID (`study_key`): the original UID is an
identifier the de-identified share replaces, so reports and logs never show it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from deidentify.pixels.scrub import ScrubResult

OUTCOMES = ("scrubbed", "kept", "quarantined")


def study_key(study_uid: str) -> str:
    digest = hashlib.sha256(study_uid.strip().encode("ascii", "replace")).hexdigest()
    return f"study-{digest[:10]}"


def outcome(result: ScrubResult) -> str:
    """scrubbed: pixels changed; kept: sent as they were; quarantined: not sent."""
    if result.quarantined:
        return "quarantined"
    return "scrubbed" if result.pixels_changed else "kept"


@dataclass
class PixelTally:
    studies: dict[str, Counter[str]] = field(default_factory=dict)

    def add_outcome(self, study: str, what: str) -> None:
        if what not in OUTCOMES:
            raise ValueError(f"pixel outcome must be one of {OUTCOMES}, not {what!r}")
        self.studies.setdefault(study, Counter())[what] += 1

    def add(self, study_uid: str, result: ScrubResult) -> None:
        self.add_outcome(study_key(study_uid), outcome(result))

    def rows(self) -> list[tuple[str, dict[str, int]]]:
        return [
            (study, {what: counts[what] for what in OUTCOMES})
            for study, counts in sorted(self.studies.items())
        ]
