"""Region rules as data: which devices draw identity where, and the rectangles to blank.

A rule set is TOML the caller supplies (a site's own layouts) on top of the packaged starter
library (`data/region_rules.toml`). Format::

    [[rule]]
    name = "Philips EPIQ, 600 rows: top banner"
    match.Modality = "US"
    match.Manufacturer = "philips*"          # glob, case-insensitive; a list means any of
    match.ManufacturerModelName = ["EPIQ*", "Affiniti*"]
    match.Rows = 600                         # integers: equal, or a list of allowed values
    match.ImageType = ["DERIVED", "SECONDARY"]  # every listed component must be present
    blank = [{x = 0, y = 0, width = 800, height = 59}]   # negative x/y count from right/bottom

Match keys: Manufacturer, ManufacturerModelName, SoftwareVersions, Modality, ImageType, Rows,
Columns, SeriesDescription. Every key given must match; a rule with no keys matches nothing.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from deidentify.pixels.ocr import Box

TEXT_KEYS = (
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "Modality",
    "SeriesDescription",
)
INT_KEYS = ("Rows", "Columns")
LIST_KEYS = ("ImageType",)
MATCH_KEYS = frozenset(TEXT_KEYS + INT_KEYS + LIST_KEYS)
STARTER_RESOURCE = "region_rules.toml"


class RuleError(ValueError):
    """A rule file is not valid; the message names the rule and the field."""


@dataclass(frozen=True)
class Rect:
    """A rectangle in a rule; negative x / y are measured from the right / bottom edge."""

    x: int
    y: int
    width: int
    height: int

    def resolve(self, columns: int, rows: int) -> Box | None:
        left = self.x if self.x >= 0 else columns + self.x
        top = self.y if self.y >= 0 else rows + self.y
        return Box(left, top, self.width, self.height).clip(columns, rows)


@dataclass(frozen=True)
class RegionRule:
    name: str
    text: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ints: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    components: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    blank: tuple[Rect, ...] = ()

    def matches(self, ds: Dataset) -> bool:
        if not (self.text or self.ints or self.components):
            return False
        for key, patterns in self.text.items():
            values = [v.upper() for v in _strings(ds, key)]
            if not any(fnmatch.fnmatchcase(v, p.upper()) for v in values for p in patterns):
                return False
        for key, allowed in self.ints.items():
            value = ds.get(key, None)
            if value is None or int(value) not in allowed:
                return False
        for key, required in self.components.items():
            present = {v.upper() for v in _strings(ds, key)}
            if not all(r.upper() in present for r in required):
                return False
        return True

    def boxes(self, columns: int, rows: int) -> list[Box]:
        return [b for b in (r.resolve(columns, rows) for r in self.blank) if b is not None]


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[RegionRule, ...] = ()

    def matching(self, ds: Dataset) -> list[RegionRule]:
        return [rule for rule in self.rules if rule.matches(ds)]

    def __add__(self, other: RuleSet) -> RuleSet:
        return RuleSet(self.rules + other.rules)

    def __len__(self) -> int:
        return len(self.rules)


def _strings(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword, None)
    if value is None:
        return []
    items: Iterable[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def parse_rules(source: str | bytes) -> RuleSet:
    """Parse a TOML rule file (text or UTF-8 bytes). Raises `RuleError` naming the problem."""
    text = source.decode("utf-8") if isinstance(source, bytes) else source
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"region rules are not valid TOML: {exc}") from exc
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        raise RuleError("region rules: 'rule' must be an array of tables ([[rule]])")
    return RuleSet(tuple(_rule(raw, i) for i, raw in enumerate(raw_rules)))


def _rule(raw: object, index: int) -> RegionRule:
    if not isinstance(raw, dict):
        raise RuleError(f"rule #{index + 1}: must be a table")
    name = str(raw.get("name", f"rule #{index + 1}"))
    unknown = set(raw) - {"name", "match", "blank", "source"}
    if unknown:
        raise RuleError(f"rule {name!r}: unknown field(s) {sorted(unknown)}")
    match = raw.get("match", {})
    if not isinstance(match, dict) or not match:
        raise RuleError(f"rule {name!r}: 'match' must be a non-empty table")
    bad = set(match) - MATCH_KEYS
    if bad:
        raise RuleError(f"rule {name!r}: cannot match on {sorted(bad)}")
    text: dict[str, tuple[str, ...]] = {}
    ints: dict[str, tuple[int, ...]] = {}
    comps: dict[str, tuple[str, ...]] = {}
    for key, value in match.items():
        values = value if isinstance(value, list) else [value]
        if key in INT_KEYS:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise RuleError(f"rule {name!r}: match.{key} must be integer(s)")
            ints[key] = tuple(values)
        else:
            if not all(isinstance(v, str) for v in values):
                raise RuleError(f"rule {name!r}: match.{key} must be string(s)")
            (comps if key in LIST_KEYS else text)[key] = tuple(values)
    rects = raw.get("blank", [])
    if not isinstance(rects, list) or not rects:
        raise RuleError(f"rule {name!r}: 'blank' must be a non-empty array of rectangles")
    parsed = []
    for rect in rects:
        if not isinstance(rect, dict) or set(rect) != {"x", "y", "width", "height"}:
            raise RuleError(f"rule {name!r}: a rectangle is {{x, y, width, height}}")
        if not all(isinstance(rect[k], int) for k in rect):
            raise RuleError(f"rule {name!r}: rectangle values must be integers")
        if rect["width"] <= 0 or rect["height"] <= 0:
            raise RuleError(f"rule {name!r}: rectangle width and height must be positive")
        parsed.append(Rect(rect["x"], rect["y"], rect["width"], rect["height"]))
    return RegionRule(name, text, ints, comps, tuple(parsed))


def starter_rules() -> RuleSet:
    """The packaged starter library: common ultrasound banners and dose-report headers."""
    data = resources.files("deidentify.pixels.data").joinpath(STARTER_RESOURCE).read_bytes()
    return parse_rules(data)
