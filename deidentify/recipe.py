"""Site recipes: validated TOML overrides on top of the PS3.15 profile.

A recipe is parsed from a string (pure; the CLI reads the file) and every problem is reported at
once, each naming its line and the fix::

    description = "Site A research export"          # optional, free text

    [attributes]                                      # keyword or "(gggg,eeee)" = action
    PatientAge = "keep"
    StudyDescription = { replace = "RESEARCH CT" }    # or { action = "replace", value = "..." }
    SeriesDescription = "empty"                       # zero length (Z)
    "(0018,1030)" = "remove"                          # X
    InstitutionName = { action = "keep", allow_identifying = true }

    [private]                                         # kept whatever the options say
    keep = [{ creator = "ACME 1.0", group = "0019", element = "10" }]   # element: omit = block

    [dates]
    policy = "shift"                                  # "shift" | "remove" | "keep"

Rules
-----
* Actions: ``keep`` (K), ``remove`` (X), ``empty`` (Z), ``replace`` (D with the site's value,
  which must be valid for the attribute's VR; string VRs only). An override applies wherever the
  attribute occurs, at any depth.
* Keeping an attribute whose value `verify` treats as identifying (patient and staff names, IDs,
  birth date, addresses, institution, station, device serial number) needs
  ``allow_identifying = true`` on that attribute: a deliberate, reviewable acknowledgment.
* Not overridable: UID attributes (use the retain-uids option: remapping must stay consistent
  across references), file meta (group 0002), the de-identification markers and Pixel Data.
  Private attributes go in ``[private]``.
* ``[dates] policy`` replaces the profile's date options: ``shift`` = retain-long-modified-dates
  (keyed per-patient shift), ``keep`` = retain-long-full-dates, ``remove`` = neither.

Error messages quote keys, never values (a replacement value may be anything a site typed).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag
from pydicom.valuerep import validate_value

from deidentify.profile import Action, Option, Override, Profile, is_private_tag
from deidentify.verify import IDENTIFYING_KEYWORDS

ACTIONS: dict[str, Action] = {
    "keep": Action.K,
    "remove": Action.X,
    "empty": Action.Z,
    "replace": Action.D,
}
DATE_POLICIES = ("shift", "remove", "keep")
_SECTIONS = ("description", "attributes", "private", "dates", "documents")
DOCUMENT_POLICIES = ("send-if-clean", "hold")
_ATTRIBUTE_KEYS = ("action", "value", "replace", "allow_identifying")
_PRIVATE_KEYS = ("creator", "group", "element")
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
_PROTECTED = frozenset(
    {
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "SpecificCharacterSet",
    }
)
_TAG_TEXT = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?$")


@dataclass(frozen=True)
class RecipeProblem:
    line: int | None  # 1-based; None when the problem is not tied to a line
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "recipe"
        return f"{where}: {self.message}; fix: {self.fix}"


class RecipeError(ValueError):
    """Every problem of a recipe, each with its line and fix."""

    def __init__(self, problems: list[RecipeProblem]) -> None:
        self.problems = problems
        super().__init__("invalid recipe:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class AttributeOverride:
    tag: int
    keyword: str
    action: Action
    value: str | None = None
    allow_identifying: bool = False


@dataclass(frozen=True)
class PrivateKeep:
    creator: str
    group: int
    element: int | None  # element byte within the creator's block; None = the whole block


@dataclass(frozen=True)
class Recipe:
    attributes: tuple[AttributeOverride, ...] = ()
    private_keep: tuple[PrivateKeep, ...] = ()
    date_policy: str | None = None
    document_policy: str | None = None  # "send-if-clean" or "hold" ([documents] policy)
    description: str = ""
    sha256: str = ""  # of the recipe text, recorded in DeidentificationMethod

    def apply_to(self, profile: Profile) -> Profile:
        """`profile` with this recipe's overrides, private keeps and date policy."""
        options = set(profile.options)
        if self.date_policy is not None:
            options -= {Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES}
            if self.date_policy == "shift":
                options.add(Option.RETAIN_LONG_MODIFIED_DATES)
            elif self.date_policy == "keep":
                options.add(Option.RETAIN_LONG_FULL_DATES)
        overrides = dict(profile.overrides)
        for a in self.attributes:
            overrides[a.tag] = Override(a.action, a.value)
        return Profile(
            options=frozenset(options),
            overrides=frozenset(overrides.items()),
            private_keep=profile.private_keep
            | {(p.creator, p.group, p.element) for p in self.private_keep},
            recipe_id=self.sha256 or profile.recipe_id,
            send_documents=(
                profile.send_documents
                if self.document_policy is None
                else self.document_policy == "send-if-clean"
            ),
        )

    @property
    def kept(self) -> frozenset[int]:
        """Tags the recipe keeps."""
        return frozenset(a.tag for a in self.attributes if a.action is Action.K)


class _Lines:
    """Where keys and inline tables sit in the TOML text (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, str], int] = {}
        self.headers: dict[str, list[int]] = {}
        self.braces: dict[str, list[int]] = {}  # section -> line of each "{" in it
        section = ""
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                section = header.group(1).strip()
                self.headers.setdefault(section, []).append(number)
                continue
            key = self._KEY.match(line)
            if key:
                name = key.group(1)
                if name[:1] in "\"'":
                    name = name[1:-1]
                self.keys.setdefault((section, name), number)
            stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line.split("#", 1)[0])
            self.braces.setdefault(section, []).extend([number] * stripped.count("{"))

    def key(self, section: str, name: str) -> int | None:
        found = self.keys.get((section, name))
        if found is None and section in self.headers:
            return self.headers[section][0]
        return found

    def entry(self, section: str, name: str, index: int) -> int | None:
        """Line of the index-th entry of an array of inline tables (or of [[section.name]])."""
        tables = self.headers.get(f"{section}.{name}")
        if tables and index < len(tables):
            return tables[index]
        start = self.keys.get((section, name))
        braces = [n for n in self.braces.get(section, []) if start is None or n >= start]
        return braces[index] if index < len(braces) else start


def _suggest(word: str, choices: Any, what: str) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"use a {what}"


def _resolve_tag(key: str) -> tuple[int | None, str]:
    """(tag, keyword) for a keyword or "(gggg,eeee)"; (None, "") when unknown."""
    m = _TAG_TEXT.match(key.strip())
    if m:
        tag = int(m.group(1) + m.group(2), 16)
        return tag, str(keyword_for_tag(tag) or "")
    found = keyword_dict.get(key.strip())
    return (int(found), key.strip()) if found is not None else (None, "")


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def parse_recipe(text: str) -> Recipe:
    """Parse and validate a recipe; raises `RecipeError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        reason = re.sub(r"\s*\(at .*\)$", "", str(exc))
        raise RecipeError(
            [RecipeProblem(line, f"not valid TOML ({reason})", "correct the TOML syntax")]
        ) from None
    lines = _Lines(text)
    problems: list[RecipeProblem] = []

    for name in data:
        if name not in _SECTIONS:
            problems.append(
                RecipeProblem(
                    lines.key("", name) or _first(lines.headers.get(name)),
                    f"unknown section or key {name!r}",
                    _suggest(name, _SECTIONS, "section: " + ", ".join(_SECTIONS)),
                )
            )
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(
            RecipeProblem(lines.key("", "description"), "description must be text", "quote it")
        )
        description = ""

    attributes = _parse_attributes(data.get("attributes", {}), lines, problems)
    private = _parse_private(data.get("private", {}), lines, problems)
    policy = _parse_dates(data.get("dates", {}), lines, problems)
    documents = _parse_documents(data.get("documents", {}), lines, problems)
    if problems:
        raise RecipeError(problems)
    return Recipe(
        attributes=attributes,
        private_keep=private,
        date_policy=policy,
        document_policy=documents,
        description=description,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _first(numbers: list[int] | None) -> int | None:
    return numbers[0] if numbers else None


def _parse_attributes(
    section: Any, lines: _Lines, problems: list[RecipeProblem]
) -> tuple[AttributeOverride, ...]:
    if not isinstance(section, Mapping):
        problems.append(
            RecipeProblem(
                lines.key("", "attributes"),
                "attributes must be a table",
                'write [attributes] with one `Keyword = "action"` per line',
            )
        )
        return ()
    found: dict[int, AttributeOverride] = {}
    for key, spec in section.items():
        line = lines.key("attributes", key)
        override = _parse_attribute(str(key), spec, line, problems)
        if override is None:
            continue
        if override.tag in found:
            problems.append(
                RecipeProblem(
                    line,
                    f"{key!r} is the same attribute as {found[override.tag].keyword!r}",
                    "keep one entry per attribute",
                )
            )
            continue
        found[override.tag] = override
    return tuple(found[t] for t in sorted(found))


def _parse_attribute(
    key: str, spec: Any, line: int | None, problems: list[RecipeProblem]
) -> AttributeOverride | None:
    def problem(message: str, fix: str) -> None:
        problems.append(RecipeProblem(line, message, fix))

    tag, keyword = _resolve_tag(key)
    if tag is None:
        hint = _suggest(key, keyword_dict, 'DICOM keyword or a tag written "(gggg,eeee)"')
        problem(f"unknown attribute {key!r}", hint)
        return None
    name = keyword or key
    if is_private_tag(tag):
        problem(
            f"{name} is a private attribute",
            'list it under [private] keep = [{creator = "...", group = "gggg", element = "ee"}]',
        )
        return None
    vr = _vr(tag)
    if (tag >> 16) == 0x0002:
        problem(f"{name} is file meta information", "remove the entry (it is managed)")
        return None
    if vr == "UI":
        problem(
            f"{name} is a UID: UIDs are remapped consistently across references",
            "remove the entry; use the retain-uids option to keep UIDs",
        )
        return None
    if keyword in _PROTECTED:
        problem(f"{name} is set by the de-identifier", "remove the entry")
        return None

    allow = False
    value: Any = None
    if isinstance(spec, str):
        action_name = spec
    elif isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in _ATTRIBUTE_KEYS]
        for k in unknown:
            problem(
                f"{name}: unknown setting {k!r}",
                _suggest(str(k), _ATTRIBUTE_KEYS, "setting: " + ", ".join(_ATTRIBUTE_KEYS)),
            )
        if unknown:
            return None
        if "replace" in spec:
            if "action" in spec or "value" in spec:
                problem(
                    f"{name}: both `replace` and `action`/`value`",
                    'write either { replace = "..." } or { action = "replace", value = "..." }',
                )
                return None
            action_name, value = "replace", spec["replace"]
        else:
            action_name = spec.get("action", "")
            value = spec.get("value")
        allow_raw = spec.get("allow_identifying", False)
        if not isinstance(allow_raw, bool):
            problem(f"{name}: allow_identifying must be true or false", "write true or false")
            return None
        allow = allow_raw
    else:
        problem(
            f"{name}: the action must be text or an inline table",
            'write "keep", "remove", "empty" or { replace = "..." }',
        )
        return None

    if not isinstance(action_name, str) or action_name not in ACTIONS:
        shown = action_name if isinstance(action_name, str) else ""
        problem(
            f"{name}: unknown action {shown!r}",
            _suggest(shown, ACTIONS, "action: keep, remove, empty or replace"),
        )
        return None
    action = ACTIONS[action_name]
    if action is Action.D:
        if not isinstance(value, str):
            problem(f"{name}: replace needs a text value", f'write {key} = {{ replace = "..." }}')
            return None
        if vr not in _STRING_VRS:
            problem(
                f"{name} has VR {vr or 'unknown'}: only text attributes can be replaced",
                "use keep, remove or empty",
            )
            return None
        try:
            validate_value(vr, value, pydicom_config.RAISE)
        except ValueError:
            problem(
                f"{name}: the replacement is not a valid {vr} value",
                f"give a value valid for VR {vr} (see PS3.5 Table 6.2-1)",
            )
            return None
    elif value is not None:
        problem(f"{name}: a value is only used with replace", "remove `value`")
        return None
    if action is Action.K and keyword in IDENTIFYING_KEYWORDS and not allow:
        problem(
            f"{name} identifies the patient or staff; keeping it needs an acknowledgment",
            f'write {key} = {{ action = "keep", allow_identifying = true }} '
            "if the site has approved releasing it",
        )
        return None
    if allow and action is not Action.K:
        problem(f"{name}: allow_identifying only applies to keep", "remove allow_identifying")
        return None
    return AttributeOverride(tag, keyword, action, value, allow)


def _one_setting_table(
    name: str,
    setting: str,
    example: str,
    section: Any,
    lines: _Lines,
    problems: list[RecipeProblem],
) -> Mapping[str, Any] | None:
    """The [name] table, which knows only `setting`: None (and a problem) when it is not a
    table; a problem for each other key in it."""
    if not isinstance(section, Mapping):
        problems.append(
            RecipeProblem(lines.key("", name), f"{name} must be a table", f"write [{name}]")
        )
        return None
    for key in section:
        if key != setting:
            problems.append(
                RecipeProblem(
                    lines.key(name, str(key)),
                    f"unknown setting {key!r} in [{name}]",
                    _suggest(str(key), [setting], example),
                )
            )
    return section


def _parse_private(
    section: Any, lines: _Lines, problems: list[RecipeProblem]
) -> tuple[PrivateKeep, ...]:
    section = _one_setting_table("private", "keep", "`keep = [...]`", section, lines, problems)
    if section is None:
        return ()
    entries = section.get("keep", [])
    if not isinstance(entries, list):
        problems.append(
            RecipeProblem(
                lines.key("private", "keep"),
                "private.keep must be a list",
                'write keep = [{ creator = "...", group = "gggg", element = "ee" }]',
            )
        )
        return ()
    kept: list[PrivateKeep] = []
    for index, entry in enumerate(entries):
        line = lines.entry("private", "keep", index)

        def problem(message: str, fix: str, line: int | None = line) -> None:
            problems.append(RecipeProblem(line, message, fix))

        if not isinstance(entry, Mapping):
            problem(
                f"private.keep entry {index + 1} is not a table",
                'write { creator = "...", group = "gggg", element = "ee" }',
            )
            continue
        unknown = [k for k in entry if k not in _PRIVATE_KEYS]
        for k in unknown:
            problem(
                f"private.keep entry {index + 1}: unknown setting {k!r}",
                _suggest(str(k), _PRIVATE_KEYS, "setting: creator, group, element"),
            )
        creator, group_text, element_text = (
            entry.get("creator"),
            entry.get("group"),
            entry.get("element"),
        )
        ok = not unknown
        if not isinstance(creator, str) or not creator.strip():
            problem(
                f"private.keep entry {index + 1}: creator is missing",
                'add creator = "<Private Creator value>"',
            )
            ok = False
        group = _hex(group_text, 4)
        if group is None or not group % 2 or group < 0x0009:
            problem(
                f"private.keep entry {index + 1}: group must be an odd group above 0007",
                'write group = "gggg" with four hex digits, e.g. "0019"',
            )
            ok = False
        element: int | None = None
        if element_text is not None:
            element = _hex(element_text, 2)
            if element is None:
                problem(
                    f"private.keep entry {index + 1}: element must be two hex digits",
                    'write the element byte within the block, e.g. element = "10" for '
                    "(0019,xx10); omit it to keep the creator's whole block",
                )
                ok = False
        if ok and isinstance(creator, str) and group is not None:
            kept.append(PrivateKeep(creator.strip(), group, element))
    return tuple(kept)


def _hex(value: Any, digits: int) -> int | None:
    if not isinstance(value, str) or len(value) != digits:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _parse_dates(section: Any, lines: _Lines, problems: list[RecipeProblem]) -> str | None:
    section = _one_setting_table("dates", "policy", '`policy = "shift"`', section, lines, problems)
    if section is None:
        return None
    policy = section.get("policy")
    if policy is None:
        return None
    if policy not in DATE_POLICIES:
        shown = policy if isinstance(policy, str) else ""
        problems.append(
            RecipeProblem(
                lines.key("dates", "policy"),
                f"unknown date policy {shown!r}",
                _suggest(shown, DATE_POLICIES, 'policy: "shift", "remove" or "keep"'),
            )
        )
        return None
    return str(policy)


def _parse_documents(section: Any, lines: _Lines, problems: list[RecipeProblem]) -> str | None:
    """[documents] policy: "send-if-clean" sends encapsulated PDF/CDA documents that hold no
    identity (`deidentify.documents`); "hold" (the default) holds every one back."""
    example = '`policy = "send-if-clean"`'
    section = _one_setting_table("documents", "policy", example, section, lines, problems)
    if section is None:
        return None
    policy = section.get("policy")
    if policy is None:
        return None
    if policy not in DOCUMENT_POLICIES:
        shown = policy if isinstance(policy, str) else ""
        problems.append(
            RecipeProblem(
                lines.key("documents", "policy"),
                f"unknown document policy {shown!r}",
                _suggest(shown, DOCUMENT_POLICIES, 'policy: "send-if-clean" or "hold"'),
            )
        )
        return None
    return str(policy)
