from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from deidentify.pixels.ocr import Box
from deidentify.pixels.rules import RuleError, parse_rules, starter_rules

SITE = """
[[rule]]
name = "Site dose screen"
match.Modality = "CT"
match.Manufacturer = ["acme*", "ACME*"]
match.ManufacturerModelName = "Dose*"
match.SoftwareVersions = "V1.*"
match.ImageType = ["DERIVED", "SECONDARY"]
match.Rows = 512
match.Columns = [512, 1024]
blank = [{x = 0, y = 0, width = 512, height = 40}, {x = -100, y = -20, width = 100, height = 20}]
"""


def _ds(**kw: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.Manufacturer = "Acme Imaging"
    ds.ManufacturerModelName = "DoseView"
    ds.SoftwareVersions = ["V1.2", "build 7"]
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.Rows, ds.Columns = 512, 512
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_site_rule_matches_every_key_and_resolves_negative_corners() -> None:
    rules = parse_rules(SITE)
    assert len(rules) == 1
    (rule,) = rules.matching(_ds())
    assert rule.boxes(512, 512) == [Box(0, 0, 512, 40), Box(412, 492, 100, 20)]


@pytest.mark.parametrize(
    "change",
    [
        {"Modality": "MR"},
        {"Manufacturer": "Other"},
        {"SoftwareVersions": "V2.0"},
        {"ImageType": ["ORIGINAL", "PRIMARY"]},
        {"Rows": 600},
        {"Columns": 640},
    ],
)
def test_any_key_that_differs_means_no_match(change: dict[str, object]) -> None:
    assert parse_rules(SITE).matching(_ds(**change)) == []


def test_missing_attribute_does_not_match() -> None:
    ds = _ds()
    del ds.ManufacturerModelName
    assert parse_rules(SITE).matching(ds) == []


def test_bytes_source_and_rules_add() -> None:
    combined = starter_rules() + parse_rules(SITE.encode())
    assert len(combined) == len(starter_rules()) + 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[rule", "not valid TOML"),
        ('[[rule]]\nname="a"\nblank=[{x=0,y=0,width=1,height=1}]', "'match'"),
        (
            '[[rule]]\nname="a"\nmatch.Colour="red"\nblank=[{x=0,y=0,width=1,height=1}]',
            "cannot match",
        ),
        ('[[rule]]\nname="a"\nmatch.Rows="x"\nblank=[{x=0,y=0,width=1,height=1}]', "integer"),
        ('[[rule]]\nname="a"\nmatch.Modality="US"', "'blank'"),
        ('[[rule]]\nname="a"\nmatch.Modality="US"\nblank=[{x=0,y=0,width=0,height=1}]', "positive"),
        ('[[rule]]\nname="a"\nmatch.Modality="US"\nblank=[{x=0,y=0}]', "rectangle"),
        (
            '[[rule]]\nname="a"\nextra=1\nmatch.Modality="US"\nblank=[{x=0,y=0,width=1,height=1}]',
            "unknown",
        ),
    ],
)
def test_invalid_rules_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(text)


def test_starter_library_covers_the_deid_data_devices() -> None:
    rules = starter_rules()
    us = Dataset()
    us.Modality = "US"
    us.Manufacturer = "Philips Medical Systems"
    us.ManufacturerModelName = "EPIQ 5G"
    us.Rows, us.Columns = 768, 1024
    assert [r.name for r in rules.matching(us)] == ["Philips EPIQ, 600 or 768 rows: top banner"]
    us.Manufacturer, us.ManufacturerModelName = "SIEMENS", "S2000"
    assert rules.matching(us)
    us.Manufacturer, us.ManufacturerModelName = "Teratech Corp.", "Terason"
    assert rules.matching(us)
    us.Manufacturer = "Nobody"
    assert rules.matching(us) == []
