"""The study pass of `hexchange-deid`: clean text of identity that only *another* instance of
the study carries (a reading physician named only in the report), as the agent does with the
whole study's `StudyIdentity`.

The batch runs once with each instance's own identity; every instance reports what it saw
(`fastpath.Seen`: its Study Instance UID, its own identifying values and the text it kept as
it was). The identities are merged per study; an instance is run again with its study's
identity when the study holds values it did not know *and* its kept text holds any of them
(or its kept text is not known: the pydicom path). In the common case - every instance of a
study carries the same names - nothing runs twice, and nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from deidentify.clean import Scrubber
from deidentify.engine import retained_out
from deidentify.identity import StudyIdentity
from deidentify.profile import Profile
from deidentify.rawidentity import Seen


def study_identities(seen: Sequence[Seen | None]) -> dict[str, StudyIdentity]:
    """Study Instance UID -> the merged identity of its instances."""
    studies: dict[str, StudyIdentity] = {}
    for item in seen:
        if item is not None and item.study_uid:
            uid = item.study_uid
            studies[uid] = studies[uid].merge(item.identity) if uid in studies else item.identity
    return studies


def reruns(seen: Sequence[Seen | None], profile: Profile) -> dict[int, StudyIdentity]:
    """Index -> study identity, for the instances to run again (see the module docstring)."""
    studies = study_identities(seen)
    out: dict[int, StudyIdentity] = {}
    for index, item in enumerate(seen):
        if item is None or not item.study_uid:
            continue
        study = studies[item.study_uid]
        if study == item.identity:
            continue
        if item.kept_text is not None:
            scrubber = Scrubber.for_identity(retained_out(study, profile))
            if not item.kept_text or not scrubber.has_identity(item.kept_text):
                continue
        out[index] = study
    return out
