from __future__ import annotations

import pytest

from deidentify.profile import Action, Option, Profile

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
INSTITUTION_NAME = 0x00080080
STUDY_DATE = 0x00080020
SOP_INSTANCE_UID = 0x00080018
SOP_CLASS_UID = 0x00080016
REFERENCED_IMAGE_SEQ = 0x00081140
PATIENT_AGE = 0x00101010


def test_option_names_are_kebab_case() -> None:
    assert {o.value for o in Option} == {
        "retain-safe-private",
        "retain-uids",
        "retain-device-identity",
        "retain-institution-identity",
        "retain-patient-characteristics",
        "retain-long-full-dates",
        "retain-long-modified-dates",
        "clean-descriptors",
        "clean-structured-content",
        "clean-graphics",
        "clean-pixel-data",
        "clean-recognizable-visual-features",
    }


def test_from_names_and_unknown_option() -> None:
    p = Profile.from_names(["retain-uids", "clean-descriptors"])
    assert p.options == {Option.RETAIN_UIDS, Option.CLEAN_DESCRIPTORS}
    with pytest.raises(ValueError, match="retain-everything") as info:
        Profile.from_names(["retain-everything"])
    assert "retain-safe-private" in str(info.value)


def test_an_option_nothing_implements_is_refused_not_claimed() -> None:
    with pytest.raises(ValueError, match="not supported yet"):
        Profile.from_names(["clean-recognizable-visual-features"])


def test_date_options_are_exclusive() -> None:
    with pytest.raises(ValueError, match="alternatives"):
        Profile.from_names(["retain-long-full-dates", "retain-long-modified-dates"])


def test_basic_actions() -> None:
    p = Profile.basic()
    assert p.action_for(PATIENT_NAME, vr="PN") is Action.Z
    assert p.action_for(PATIENT_ID, vr="LO") is Action.D  # Z/D
    assert p.action_for(INSTITUTION_NAME, vr="LO") is Action.D  # X/Z/D
    assert p.action_for(0x00081030, vr="LO") is Action.X  # Study Description
    assert p.action_for(SOP_INSTANCE_UID, vr="UI") is Action.U
    assert p.action_for(SOP_CLASS_UID, vr="UI") is Action.K
    assert p.action_for(REFERENCED_IMAGE_SEQ, vr="SQ") is Action.U  # X/Z/U*
    assert p.action_for(0x00080022, vr="DA") is Action.Z  # X/Z Acquisition Date
    assert p.action_for(0x50000010, vr="US") is Action.X  # curve
    assert p.action_for(0x60003000, vr="OW") is Action.X  # overlay data
    assert p.action_for(0x60000010, vr="US") is Action.K  # overlay rows: unlisted
    assert p.action_for(0x00280010, vr="US") is Action.K  # Rows: unlisted


def test_unlisted_instance_uid_is_remapped_but_class_uids_are_not() -> None:
    p = Profile.basic()
    assert p.action_for(0x00081150, vr="UI") is Action.K  # Referenced SOP Class UID
    assert p.action_for(0x0008010C, vr="UI") is Action.K  # Coding Scheme UID
    assert p.action_for(0x00020010, vr="UI") is Action.K  # Transfer Syntax UID
    assert p.action_for(0x00400DB1, vr="UI") in (Action.U, Action.K)
    assert p.action_for(0x0077AA01, vr="UI") is Action.X  # private: removed


def test_options_override() -> None:
    p = Profile.from_names(
        [
            "retain-institution-identity",
            "retain-uids",
            "retain-long-modified-dates",
            "retain-patient-characteristics",
        ]
    )
    assert p.action_for(INSTITUTION_NAME, vr="LO") is Action.K
    assert p.action_for(SOP_INSTANCE_UID, vr="UI") is Action.K
    assert p.action_for(STUDY_DATE, vr="DA") is Action.C
    assert p.action_for(PATIENT_AGE, vr="AS") is Action.K
    full = Profile.from_names(["retain-long-full-dates", "retain-device-identity"])
    assert full.action_for(STUDY_DATE, vr="DA") is Action.K
    # K from one option wins over C from another (Date of Last Detector Calibration)
    both = Profile.from_names(["retain-device-identity", "retain-long-modified-dates"])
    assert both.action_for(0x0018700C, vr="DA") is Action.K


def test_private_actions() -> None:
    basic = Profile.basic()
    safe = Profile.from_names(["retain-safe-private"])
    tag = 0x0019100C
    assert basic.action_for(tag, vr="IS", private_creator="SIEMENS MR HEADER") is Action.X
    assert safe.action_for(tag, vr="IS", private_creator="SIEMENS MR HEADER") is Action.K
    assert safe.action_for(tag, vr="IS", private_creator="SOMEONE ELSE") is Action.X
    assert safe.action_for(tag, vr="IS") is Action.X
    assert safe.action_for(0x00291008, vr="CS", private_creator="SIEMENS CSA REPORT") is Action.X


def test_method_values_fit_lo() -> None:
    # every option, as the profile can hold them (from_names refuses the unimplemented one)
    p = Profile(frozenset(o for o in Option if o is not Option.RETAIN_LONG_FULL_DATES))
    values = p.method_values()
    assert values[0].startswith("Hexchange PS3.15 E.1-1 2024b")
    assert all(len(v) <= 64 for v in values)


CT = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def test_combined_actions_by_type_in_ct_iod() -> None:
    p = Profile.basic()
    # X/Z Acquisition Date: Type 3 in CT Image -> X
    assert p.action_for(0x00080022, vr="DA", sop_class_uid=CT) is Action.X
    # X/Z/D Contrast/Bolus Agent: Type 2 (Contrast/Bolus module) -> Z
    assert p.action_for(0x00180010, vr="LO", sop_class_uid=CT) is Action.Z
    # Z/D Content Date: Type 2C (General Image) -> Z; Patient ID: Type 2 -> Z
    assert p.action_for(0x00080023, vr="DA", sop_class_uid=CT) is Action.Z
    assert p.action_for(PATIENT_ID, vr="LO", sop_class_uid=CT) is Action.Z
    # X/Z/D Institution Name: Type 3 -> X
    assert p.action_for(INSTITUTION_NAME, vr="LO", sop_class_uid=CT) is Action.X
    # X/Z/U* Referenced Image Sequence: Type 3 in CT Image, still kept and remapped (U*), so
    # references between the de-identified instances survive
    assert p.action_for(REFERENCED_IMAGE_SEQ, vr="SQ", sop_class_uid=CT) is Action.U
    # X/Z/D Acquisition DateTime: Type 1C in US Multi-frame (Cine module) -> D
    assert p.action_for(0x0008002A, vr="DT", sop_class_uid=US_MULTIFRAME) is Action.D
    assert p.action_for(0x0008002A, vr="DT", sop_class_uid=CT) is Action.X
    # options still win over the Type
    retain = Profile.from_names(["retain-institution-identity", "retain-uids"])
    assert retain.action_for(INSTITUTION_NAME, vr="LO", sop_class_uid=CT) is Action.K
    assert retain.action_for(REFERENCED_IMAGE_SEQ, vr="SQ", sop_class_uid=CT) is Action.K
    # non-combined actions do not depend on the SOP class
    assert p.action_for(PATIENT_NAME, vr="PN", sop_class_uid=CT) is Action.Z
    assert p.action_for(SOP_INSTANCE_UID, vr="UI", sop_class_uid=CT) is Action.U


def test_unknown_sop_class_or_nested_is_conservative() -> None:
    p = Profile.basic()
    for sop in (None, "1.2.3.4.5.6.7.8.9"):
        assert p.action_for(0x00080022, vr="DA", sop_class_uid=sop) is Action.Z
        assert p.action_for(INSTITUTION_NAME, vr="LO", sop_class_uid=sop) is Action.D
        assert p.action_for(REFERENCED_IMAGE_SEQ, vr="SQ", sop_class_uid=sop) is Action.U
