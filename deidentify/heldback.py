"""Held-back instances: how many of a study's instances were not sent, and why, by reason class.

A study whose instances were quarantined or dropped by policy is *partial*: the sender's status
shows it, and the recipient learns the counts (`wire.manifest.Manifest.held_back`) so a
radiologist or researcher knows the study is incomplete. Classes only, never values: the
reasons `hexchange-deid` and the node agent record (`cli.Outcome.reason`, `InstanceRejected`)
are mapped to a small fixed vocabulary.

    held = HeldBack()
    held.add("verification-failed")            # any recorded reason
    held.partial, held.counts()                # True, {"verification-failed": 1}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class HeldBackReason(StrEnum):
    """Why an instance was held back (the same words as `wire.manifest.HeldBackReason`)."""

    UNREADABLE = "unreadable"  # not DICOM, unparseable header
    INCOMPLETE = "incomplete"  # truncated, missing required UIDs
    VERIFICATION = "verification-failed"  # the independent check found identity
    PIXELS = "pixel-scrub"  # burned-in text that could not be cleaned
    DOCUMENT = "document"  # an encapsulated document with identity, or not allowed
    POLICY = "policy"  # dropped by the sharing policy (SOP class, modality, ...)
    ERROR = "error"  # de-identification or writing failed


_PREFIXES: tuple[tuple[str, HeldBackReason], ...] = (
    ("not-dicom", HeldBackReason.UNREADABLE),
    ("unparseable", HeldBackReason.UNREADABLE),
    ("unreadable", HeldBackReason.UNREADABLE),
    ("incomplete", HeldBackReason.INCOMPLETE),
    ("truncated", HeldBackReason.INCOMPLETE),
    ("verification", HeldBackReason.VERIFICATION),
    ("de-identification verification", HeldBackReason.VERIFICATION),
    ("pixel", HeldBackReason.PIXELS),
    ("document", HeldBackReason.DOCUMENT),
    ("policy", HeldBackReason.POLICY),
)


def reason_class(reason: str) -> HeldBackReason:
    """The class of a recorded reason (anything unknown is an error: never silently 'fine')."""
    text = reason.strip().lower()
    for prefix, cls in _PREFIXES:
        if text.startswith(prefix):
            return cls
    return HeldBackReason.ERROR


@dataclass
class HeldBack:
    """Per-study counts of held-back instances by reason class."""

    _counts: Counter[HeldBackReason] = field(default_factory=Counter)

    def add(self, reason: str | HeldBackReason) -> HeldBackReason:
        cls = reason if isinstance(reason, HeldBackReason) else reason_class(reason)
        self._counts[cls] += 1
        return cls

    @property
    def partial(self) -> bool:
        return bool(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        """{reason class: count}, sorted, only non-zero classes (the manifest's `held_back`)."""
        return {str(k): v for k, v in sorted(self._counts.items()) if v}
