"""De-identification: the DICOM PS3.15 Annex E profile and options as data, keyed pseudonyms,
date shifting and independent verification. Pure: datasets in, results out.

    from deidentify import Profile, PseudonymKeys, apply, verify

    profile = Profile.from_names(["retain-long-modified-dates"])
    result = apply(ds, profile, PseudonymKeys(secret))   # new dataset; ds is not modified
    findings = verify(ds, result.dataset, profile)       # [] when nothing identifying survives

A whole study: `identity = StudyIdentity.collect(headers)` (every instance's dataset), then
`apply(..., identity=identity)` and `verify(..., identity=identity)`, so a name only another
instance carries (a reading physician, an operator) is found in this one's text too.
"""

from deidentify.documents import DocumentHeldBack
from deidentify.engine import DeidResult, PseudonymKeys, apply
from deidentify.heldback import HeldBack, HeldBackReason
from deidentify.identity import StudyIdentity
from deidentify.profile import Action, Option, Profile
from deidentify.verify import Finding, verify

__all__ = [
    "Action",
    "DeidResult",
    "DocumentHeldBack",
    "Finding",
    "HeldBack",
    "HeldBackReason",
    "Option",
    "Profile",
    "PseudonymKeys",
    "StudyIdentity",
    "apply",
    "verify",
]
