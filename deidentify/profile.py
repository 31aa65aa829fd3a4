"""The PS3.15 Annex E confidentiality profile and its options, as data.

`Profile.action_for` answers "what happens to this attribute" from the generated Table E.1-1
(`deidentify/data/ps3_15_e1_1.json`). It is a pure function of the profile, the tag, its VR and
(for private tags) its private creator.

Combined actions
----------------
PS3.15 resolves X/Z, X/D, Z/D, X/Z/D and X/Z/U* by the attribute's Type in the IOD of the SOP
class. With `sop_class_uid` of a SOP class in the generated Type table
(`deidentify/data/iod_types.json`, built from highdicom's copy of the standard's IOD tables),
a top-level attribute resolves to:

    Type 1 / 1C  -> D
    Type 2 / 2C  -> Z  (X/D, which has no Z: D)
    Type 3 / not in the IOD -> X

X/Z/U* on a UI element or a sequence is always U (keep, remap every UID inside), whatever the
Type: U* is one of the actions the standard allows, and it keeps references (Referenced Image
Sequence, Source Image Sequence, ...) linked within the de-identified collection.

Without a SOP class (nested elements, whose Type depends on the enclosing sequence), or for a SOP
class the table does not know, they are resolved conservatively, keeping both privacy and
validity: the result never keeps a value, and never removes an attribute that might be Type 1
or 2 in the IOD:

    X/Z -> Z     X/D -> D     Z/D -> D     X/Z/D -> D
    X/Z/U* -> U for UI elements and sequences (keep, remap every UID inside), else Z

Options and precedence
----------------------
Each option column overrides the basic action for the rows it lists. When several chosen options
list the same row (e.g. Date of Last Detector Calibration under retain-device-identity and
retain-long-modified-dates), K (keep) wins over C (clean), which wins over the basic action.

Site recipes
------------
A validated site recipe (`deidentify.recipe`) becomes part of the profile
(`Recipe.apply_to(profile)`): its per-attribute overrides win over everything above, wherever
the attribute occurs (keep -> K, remove -> X, empty -> Z, replace -> D with the site's value,
see `Profile.replacement_for`), and its private keeps are kept as K whatever the options.

Attributes not listed in Table E.1-1 are kept (K), except UI elements that are not
well-known class/syntax/scheme UIDs: those are treated as instance UIDs (U) so that rows added
by later editions (new Referenced*UID attributes) are not leaked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from deidentify.tables import Rule, e1_1, iod_types, safe_private_signatures


class Option(StrEnum):
    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONG_FULL_DATES = "retain-long-full-dates"
    RETAIN_LONG_MODIFIED_DATES = "retain-long-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"
    CLEAN_PIXEL_DATA = "clean-pixel-data"
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES = "clean-recognizable-visual-features"


class Action(StrEnum):
    """A resolved action of Table E.1-1."""

    D = "D"  # replace with a non-empty dummy value valid for the VR
    Z = "Z"  # replace with an empty value (zero length); sequences become empty
    X = "X"  # remove
    K = "K"  # keep (sequences are still processed recursively)
    C = "C"  # clean: keep the meaning, remove identifying content (dates: shift)
    U = "U"  # replace UIDs with keyed pseudonymous UIDs (sequences: recurse)


# CID 7050 (scheme DCM) code and meaning for each option, and for the Basic profile.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
OPTION_CODES: dict[Option, tuple[str, str]] = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: (
        "113102",
        "Clean Recognizable Visual Features Option",
    ),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

_ACTION_CACHE_SIZE = 100_000  # distinct (tag, VR, creator, SOP class) keys memoised per profile
_COMBINED = frozenset({"X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
_CONSERVATIVE: dict[str, Action] = {
    "X/Z": Action.Z,
    "X/D": Action.D,
    "Z/D": Action.D,
    "X/Z/D": Action.D,
}

# UI attributes that hold class, syntax or scheme identifiers rather than instance identity.
# Their values are never remapped, whatever the table says.
_NON_INSTANCE_UID_KEYWORDS = frozenset(
    {
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "MappingResourceUID",
        "ContextGroupExtensionCreatorUID",
        "PrivateInformationCreatorUID",
        "EncryptedContentTransferSyntaxUID",
        "MACCalculationTransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "SOPClassesInStudy",
    }
)


# Free-form descriptions of the patient: a rare occupation, rank or history in a small town
# names a person. Removed by default, whatever the options (Clean Descriptors would keep them
# cleaned); a site recipe keeps them with `keep`. Emptied instead where the IOD makes them
# Type 1 or 2.
PATIENT_DESCRIPTORS = frozenset(
    {
        "Occupation",
        "AdditionalPatientHistory",
        "PatientComments",
        "MilitaryRank",
        "BranchOfService",
        "MedicalAlerts",
        "Allergies",
        "AdmittingDiagnosesDescription",
        "PatientReligiousPreference",
        "PatientState",
        "SpecialNeeds",
        "ResponsiblePersonRole",
        "PatientInsurancePlanCodeSequence",
        "ReasonForVisit",
    }
)
_PATIENT_DESCRIPTOR_TAGS = frozenset(
    t for t in (tag_for_keyword(k) for k in PATIENT_DESCRIPTORS) if t is not None
)


def is_non_instance_uid_keyword(keyword: str) -> bool:
    """True for UI attributes naming a class, transfer syntax or scheme (never remapped)."""
    return keyword in _NON_INSTANCE_UID_KEYWORDS or keyword.endswith(("ClassUID", "ClassUIDInFile"))


def is_private_tag(tag: int) -> bool:
    return bool((tag >> 16) % 2)


def is_private_creator_tag(tag: int) -> bool:
    return is_private_tag(tag) and 0x0010 <= (tag & 0xFFFF) <= 0x00FF


@dataclass(frozen=True)
class Override:
    """A site recipe's decision for one public attribute (K, X, Z, or D with `value`)."""

    action: Action
    value: str | None = None  # the replacement (DICOM string form) when action is D


@dataclass(frozen=True)
class Profile:
    """The Basic Application Level Confidentiality Profile plus a set of options.

    `overrides`, `private_keep` and `recipe_id` come from a site recipe (empty by default).
    """

    options: frozenset[Option] = field(default_factory=frozenset)
    overrides: frozenset[tuple[int, Override]] = field(default_factory=frozenset)
    # (private creator, group, element byte or None for every element of the creator's block)
    private_keep: frozenset[tuple[str, int, int | None]] = field(default_factory=frozenset)
    recipe_id: str = ""
    # Encapsulated documents (PDF, CDA) are sent only when this is True and they hold no
    # identity (`deidentify.documents`); a site recipe's [documents] policy sets it.
    send_documents: bool = False

    def __post_init__(self) -> None:
        opts = frozenset(Option(o) for o in self.options)
        object.__setattr__(self, "options", opts)
        object.__setattr__(self, "_override_map", dict(self.overrides))
        object.__setattr__(self, "_action_cache", {})
        if {Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES} <= opts:
            raise ValueError(
                "options retain-long-full-dates and retain-long-modified-dates are alternatives; "
                "choose one"
            )

    @classmethod
    def basic(cls) -> Profile:
        return cls()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Profile:
        """Build a profile from option names in kebab case (as on the command line)."""
        chosen: set[Option] = set()
        valid = ", ".join(o.value for o in Option)
        for name in names:
            key = name.strip().lower().replace("_", "-")
            try:
                chosen.add(Option(key))
            except ValueError:
                raise ValueError(
                    f"unknown de-identification option {name!r}; valid options: {valid}"
                ) from None
        if Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES in chosen:
            # the output would claim it (code 113102) while nothing was done
            raise ValueError(
                "clean-recognizable-visual-features is not supported yet: nothing in Hexchange "
                "detects faces or other recognizable features; leave the option out and keep "
                "such images (photographs, 3D reconstructions) out of the sharing rule"
            )
        return cls(frozenset(chosen))

    def has(self, option: Option) -> bool:
        return option in self.options

    @property
    def override_map(self) -> Mapping[int, Override]:
        """Recipe overrides by tag."""
        overrides: Mapping[int, Override] = self.__dict__["_override_map"]
        return overrides

    def replacement_for(self, tag: int) -> str | None:
        """The site recipe's replacement value for a D override (None: use the dummy)."""
        override = self.override_map.get(int(tag))
        return override.value if override is not None else None

    def method_values(self) -> list[str]:
        """DeidentificationMethod values (LO, each at most 64 characters): profile, options, and
        the site recipe's checksum when there is one."""
        recipe = [f"site recipe sha256:{self.recipe_id[:16]}"] if self.recipe_id else []
        return [
            f"Hexchange PS3.15 E.1-1 {e1_1().edition} Basic Profile",
            *sorted(o.value for o in self.options),
            *recipe,
        ]

    @property
    def description(self) -> str:
        """Text for DeidentificationMethod: the profile, the options and the table edition."""
        names = ", ".join(sorted(o.value for o in self.options)) or "none"
        return f"Hexchange PS3.15 E.1-1 ({e1_1().edition}) Basic Profile; options: {names}"

    def rule_for(self, tag: int) -> Rule | None:
        """The Table E.1-1 row governing a tag (the private row for odd groups)."""
        if is_private_tag(tag):
            return e1_1().private
        return e1_1().lookup(tag)

    def raw_action_for(self, tag: int) -> str | None:
        """The action after options, before combined-action resolution; None if unlisted."""
        rule = self.rule_for(tag)
        if rule is None:
            return None
        chosen = [rule.options[o.value] for o in self.options if o.value in rule.options]
        if "K" in chosen:
            return "K"
        if "C" in chosen:
            return "C"
        if chosen:
            return chosen[0]
        return rule.basic

    def action_for(
        self,
        tag: int,
        *,
        vr: str,
        private_creator: str | None = None,
        sop_class_uid: str | None = None,
    ) -> Action:
        """The resolved action for one attribute.

        `sop_class_uid` selects Type-based resolution of combined actions (see the module
        docstring); pass it for top-level attributes only: a nested attribute's Type depends on
        its sequence, so nested combined actions resolve conservatively.
        """
        key = (tag, vr, private_creator, sop_class_uid)
        cache: dict[tuple[int, str, str | None, str | None], Action]
        cache = self.__dict__["_action_cache"]
        action = cache.get(key)
        if action is None:
            action = self._action_for(int(tag), vr, private_creator, sop_class_uid)
            if len(cache) < _ACTION_CACHE_SIZE:
                cache[key] = action
        return action

    def _action_for(
        self, tag: int, vr: str, private_creator: str | None, sop_class_uid: str | None
    ) -> Action:
        if is_private_tag(tag):
            return self._private_action(tag, private_creator)
        override = self.override_map.get(tag)
        if override is not None:
            return override.action
        if tag in _PATIENT_DESCRIPTOR_TAGS:
            return _descriptor_action(tag, sop_class_uid)
        raw = self.raw_action_for(tag)
        if raw is None:
            return self._unlisted_action(tag, vr)
        return _resolve(raw, tag, vr, sop_class_uid)

    def _private_action(self, tag: int, private_creator: str | None) -> Action:
        if private_creator is None or is_private_creator_tag(tag):
            return Action.X  # creators are kept by the engine when one of their elements is
        creator, group = private_creator.strip(), tag >> 16
        if self.private_keep and (
            (creator, group, tag & 0xFF) in self.private_keep
            or (creator, group, None) in self.private_keep
        ):
            return Action.K
        if not self.has(Option.RETAIN_SAFE_PRIVATE):
            return Action.X
        key = (creator, group, tag & 0xFF)
        return Action.K if key in safe_private_signatures() else Action.X

    def _unlisted_action(self, tag: int, vr: str) -> Action:
        if (
            vr == "UI"
            and not self.has(Option.RETAIN_UIDS)
            and (tag >> 16) != 0x0002
            and not is_non_instance_uid_keyword(keyword_for_tag(tag) or "")
        ):
            return Action.U
        return Action.K


def _descriptor_action(tag: int, sop_class_uid: str | None) -> Action:
    types = iod_types().types_for(sop_class_uid) if sop_class_uid else None
    typ = types.get(tag, "3") if types is not None else "3"
    return Action.Z if typ[0] in "12" else Action.X


def _resolve(raw: str, tag: int, vr: str, sop_class_uid: str | None) -> Action:
    if raw not in _COMBINED:
        return Action(raw)
    if raw == "X/Z/U*" and vr in ("UI", "SQ"):
        # U* is one of the allowed choices whatever the Type: references (and the UIDs in
        # them) are kept and remapped, so a collection keeps its internal links
        return Action.U
    types = iod_types().types_for(sop_class_uid) if sop_class_uid else None
    if types is None:  # unknown SOP class or nested attribute: conservative
        if raw == "X/Z/U*":
            return Action.U if vr in ("UI", "SQ") else Action.Z
        return _CONSERVATIVE[raw]
    typ = types.get(tag, "3")
    if typ in ("1", "1C"):
        return Action.U if raw == "X/Z/U*" and vr in ("UI", "SQ") else Action.D
    if typ in ("2", "2C"):
        return Action.Z if "Z" in raw.split("/") else Action.D
    return Action.X
