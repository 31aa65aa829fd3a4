from __future__ import annotations

import pytest

from deidentify.clean import date_forms, person_name_forms
from deidentify.pixels.detect import Needles, find_hits, pattern_kind
from deidentify.pixels.ocr import Box, OcrWord

NEEDLES = Needles.from_values(
    [
        *person_name_forms("ZZZ TEST PATIENTFIVE^NEW^P^"),
        "2020202020202",
        "CCHS CLEVELAND CLINIC",
        *date_forms("19510829"),
    ]
)


@pytest.mark.parametrize(
    "text",
    [
        "PATIENTFIVE",
        "PATIENTFI...",
        "PATIENTF1VE",
        "PAT1ENTFIVE,",
        "ZZZ",
        "TEST,",
        "CCHS",
        "CLEVELAN\u2026",
        "2020202020202",
        "2O2O2O2O2O2O2",
        "1951-08-29",
        "29/08/1951",
    ],
)
def test_identifying_values_match_despite_ocr_noise(text: str) -> None:
    assert NEEDLES.matches(text)


@pytest.mark.parametrize("text", ["P", "Adv", "Breast", "L12-5", "36Hz", "1951", "08", "29"])
def test_other_words_do_not_match(text: str) -> None:
    assert not NEEDLES.matches(text)


@pytest.mark.parametrize(
    "text, kind",
    [
        ("08/29/1951", "date"),
        ("4/14/2020", "date"),
        ("7-OCT-2016", "date"),
        ("2017.03.02", "date"),
        ("14 APR 2020", "date"),
        ("20170302", "date"),
        ("05:24:57PM", "time"),
        ("8:48", "time"),
        ("00079241539", "mrn-like"),
        ("MRN0O12345", "mrn-like"),
        ("(555) 123-4567", "phone"),
        ("TIS0.0", None),
        ("20dB/DR60", None),
        ("4.0cm", None),
        ("M3", None),
    ],
)
def test_patterns(text: str, kind: str | None) -> None:
    assert pattern_kind(text) == kind


def _w(text: str, x: int, y: int = 10) -> OcrWord:
    return OcrWord(text, Box(x, y, 10 * len(text), 14), 90.0, (1, 1, 1))


def test_label_blanks_the_following_words_and_split_dates_are_joined() -> None:
    words = [
        _w("Name:", 0),
        _w("Harriet", 60),
        _w("Vane", 140),
        _w("14", 300),
        _w("APR", 330),
        _w("2020", 370),
        _w("Liver", 600, 100),
    ]
    hits = find_hits(words, Needles.from_values([]))
    kinds = sorted(h.kind for h in hits)
    assert kinds.count("after-label") == 2  # Harriet, Vane; "14" is too far to belong
    assert "date" in kinds
    assert all(h.box.top == 10 for h in hits)  # "Liver" on another line untouched


def test_a_value_split_over_words_is_found() -> None:
    needles = Needles.from_values(["88123456"])
    hits = find_hits([_w("8812", 0), _w("3456", 50)], needles, patterns=False)
    assert [h.kind for h in hits] == ["identifying-value"]
    assert hits[0].box == Box(0, 10, 90, 14)


def test_hits_never_carry_text() -> None:
    (hit,) = find_hits([_w("PATIENTFIVE", 0)], NEEDLES)
    assert "PATIENTFIVE" not in repr(hit)


def test_numbers_next_to_a_date_belong_to_it() -> None:
    # OCR lost the colon of "14:32"; "mm" further on is not a number
    words = [_w("2024-06-11", 0), _w("14", 105), _w("32", 130), _w("12mm", 300)]
    kinds = sorted(h.kind for h in find_hits(words, Needles.from_values([])))
    assert kinds == ["date", "date-part", "date-part"]
    # also when the date matched as the instance's own value
    words = [_w("1951-08-29", 0), _w("0824", 105)]
    assert "date-part" in {h.kind for h in find_hits(words, NEEDLES)}


def test_punctuation_never_hits_and_verification_ignores_one_character_after_a_label() -> None:
    needles = Needles.from_values([])
    words = [_w("DOB", 0), _w("[", 35), _w("1", 50)]  # the edges of a blanked box
    assert [h.kind for h in find_hits(words, needles)] == ["after-label"]  # "1": first pass
    assert find_hits(words, needles, verify=True) == []
    words = [_w("DOB", 0), _w("Quigley", 40)]
    assert [h.kind for h in find_hits(words, needles, verify=True)] == ["after-label"]


def test_readings_are_matched_separately() -> None:
    # the same label read twice must not make the second copy "follow" the first
    a = OcrWord("ID", Box(0, 10, 20, 14), 90.0, (1, 1, 1), reading=0)
    b = OcrWord("ID", Box(1, 10, 20, 14), 90.0, (1, 1, 1), reading=1)
    assert find_hits([a, b], Needles.from_values([])) == []
