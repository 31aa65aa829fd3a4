"""Per-study pixel outcomes: scrubbed, kept, quarantined, named by a digest of the study."""

from __future__ import annotations

import pytest

from deidentify.pixels import PixelPolicy, PixelTally, RuleSet, outcome, scrub, study_key
from tests.deidentify.pixels.synth import FakeOcr, Text, mono_image

POLICY = PixelPolicy(rules=RuleSet(), learned="off")
STUDY = "1.2.826.0.1.3680043.8.498.12345"


def test_study_outcomes_are_counted_without_the_uid() -> None:
    clean = mono_image(64, 64, modality="CT").ds
    texted = mono_image(200, 300, texts=[Text("QUIGLEY ROSALIND", 10, 10, 16)], modality="CT").ds
    unavailable = mono_image(64, 64, modality="US").ds
    tally = PixelTally()
    results = [
        scrub(clean, POLICY, FakeOcr()),
        scrub(texted, POLICY, FakeOcr()),
        scrub(unavailable, POLICY, FakeOcr(available=False)),
    ]
    assert [outcome(r) for r in results] == ["kept", "scrubbed", "quarantined"]
    for result in results:
        tally.add(STUDY, result)
    tally.add("1.2.3", results[0])
    rows = dict(tally.rows())
    assert rows[study_key(STUDY)] == {"scrubbed": 1, "kept": 1, "quarantined": 1}
    assert rows[study_key("1.2.3")] == {"scrubbed": 0, "kept": 1, "quarantined": 0}
    assert all(STUDY not in key for key in rows)
    with pytest.raises(ValueError, match="pixel outcome"):
        tally.add_outcome(study_key(STUDY), "lost")
