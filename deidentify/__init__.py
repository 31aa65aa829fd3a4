"""De-identification: the DICOM PS3.15 Annex E profile and options as data, keyed pseudonyms,
date shifting and independent verification. Pure: datasets in, results out.

    from deidentify import Profile, PseudonymKeys, apply, verify

    profile = Profile.from_names(["retain-long-modified-dates"])
    result = apply(ds, profile, PseudonymKeys(secret))   # new dataset; ds is not modified
    findings = verify(ds, result.dataset, profile)       # [] when nothing identifying survives
"""

from deidentify.engine import DeidResult, PseudonymKeys, apply
from deidentify.profile import Action, Option, Profile
from deidentify.verify import Finding, verify

__all__ = [
    "Action",
    "DeidResult",
    "Finding",
    "Option",
    "Profile",
    "PseudonymKeys",
    "apply",
    "verify",
]
