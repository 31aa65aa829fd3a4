"""An adversarial corpus: one study's identity planted in every text attribute of pydicom's data
dictionary (LO, SH, ST, LT, UT, UR, PN, UC; code meanings, manufacturer and other attributes the
profile keeps included), in private blocks, overlays, curves, in an SR tree of depth 5 and a key
object's text, in every written form people use, in three character sets (ISO_IR 100,
ISO_IR 192, GB18030) plus ISO 2022 IR 87. Synthetic values only.

`study(charset)` returns the instances (pydicom datasets); `leftovers(ds, charset)` lists the
planted values an output still holds (by form, never printed with patient data: it is all fake).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.datadict import DicomDictionary, RepeatersDictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    KeyObjectSelectionDocumentStorage,
    generate_uid,
)

from tests.factories.dicom import FakePatient, ct_slice

TEXT_VRS = ("LO", "SH", "ST", "LT", "UT", "UR", "PN", "UC")
PER_INSTANCE = 150  # planted attributes per image instance
BIRTH, STUDY_DATE = "19580214", "20190520"
PATIENT = FakePatient(
    name="Quixote^Dulcinea^Maria",
    patient_id="AB1234X",
    birth_date=BIRTH,
    address="12 Windmill Lane, La Mancha",
    phone="+1-555-0148-227",
)
ACCESSION = "ACC77001234"
# The identity-defining attributes (planted values must not be planted in these).
_IDENTITY_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "PatientBirthDate",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "ReferringPhysicianName",
        "OperatorsName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "SpecificCharacterSet",
    }
)


@dataclass(frozen=True)
class Charset:
    term: str  # Specific Character Set value
    name: str  # the patient's PN value (with ideographic groups where the set has them)
    forms: tuple[str, ...]  # extra planted forms in this character set
    cores: tuple[str, ...]  # extra substrings that must not survive


CHARSETS: dict[str, Charset] = {
    "latin1": Charset("ISO_IR 100", PATIENT.name, (), ()),
    "utf8": Charset(
        "ISO_IR 192", f"{PATIENT.name}=山田^花子", ("山田花子", "花子 山田"), ("山田", "花子")
    ),
    "gb18030": Charset("GB18030", f"{PATIENT.name}=王^小东", ("王小东",), ("小东",)),
    "jis": Charset(
        "ISO 2022 IR 6\\ISO 2022 IR 87", f"{PATIENT.name}=山田^太郎", ("山田太郎",), ("太郎",)
    ),
}

# Staff: two on the instances themselves, one only on another instance of the study.
REFERRING = "Müller-Lüdenscheidt^Hans"
OPERATOR = "O'Brien^Patrick"
PERFORMING = "Okonkwo^Ngozi"
READER_ELSEWHERE = "Valdés^Ramona"

SHORT_FORMS = (
    "Quixote",
    "QUIXOTE",
    "D. M. Q.",
    "AB-1234-X",
    "ab 1234 x",
    "AB1234X",
    "14-Feb-1958",
    "1958-02-14",
    "14/02/1958",
    "20.05.2019",
    "OBrien",
    "O\u2019Brien",
    "Muller",
    "Dr. Okonkwo",
    "Valdes",
    "555 0148 227",
    "ACC-7700-1234",
    "Dulcinea",
)
LONG_FORMS = (
    "QUIXOTE, Dulcinea",
    "Dulcinea M. Quixote",
    "February 14, 1958",
    "14. Februar 1958",
    "14 février 1958",
    "20-May-2019",
    "May 20, 2019",
    "20. Mai 2019",
    "20 de mayo de 2019",
    "12 Windmill Lane",
    "+1 555 0148 227",
    "Mueller-Luedenscheidt",
    "Müller Lüdenscheidt",
    "Patrick O'Brien",
    "Ramona Valdés",
    "Feb 1958",
)
PN_FORMS = (
    "Quixote^Dulcinea",
    "QUIXOTE^D^M",
    "O'Brien^Patrick",
    "OBrien^P",
    "Okonkwo",
    "Valdes^Ramona",
    "Mueller-Luedenscheidt^Hans",
    "Müller^H.",
)
# Normalised (case-folded, letters and digits only) substrings no output may hold.
CORES = (
    "quixote",
    "dulcinea",
    "ab1234x",
    "acc77001234",
    "77001234",
    "obrien",
    "okonkwo",
    "valdes",
    "valdés",
    "muller",
    "müller",
    "mueller",
    "ludenscheidt",
    "lüdenscheidt",
    "luedenscheidt",
    "windmill",
    "5550148227",
    "19580214",
    "20190520",
    "14feb1958",
    "february141958",
    "14februar1958",
    "14février1958",
    "20may2019",
    "may202019",
    "20mai2019",
    "20demayode2019",
    "14021958",
    "20052019",
    "feb1958",
)


def _fits(vr: str, form: str) -> bool:
    return vr != "SH" or len(form) <= 16


def _value(vr: str, index: int, extra: tuple[str, ...]) -> str:
    forms = SHORT_FORMS + LONG_FORMS + extra
    form = forms[index % len(forms)]
    if vr == "SH":
        short = [f for f in (*SHORT_FORMS, *extra) if _fits("SH", f)]
        return short[index % len(short)]
    if vr == "PN":
        return PN_FORMS[index % len(PN_FORMS)]
    if vr == "UR":  # URIs are ASCII: an ASCII form
        ascii_forms = [f for f in forms if f.isascii()]
        form = ascii_forms[index % len(ascii_forms)]
        return f"https://pacs.example.org/wado?requestType=WADO&patientID={form}".replace(" ", "+")
    if vr == "LO":
        return f"see {form} here"[:64]
    second = forms[(index * 7 + 3) % len(forms)]
    return f"Report for {form}; checked against {second} by the team."


def text_tags() -> list[tuple[int, str]]:
    """Every public text attribute of the data dictionary (repeating groups: their first)."""
    found: list[tuple[int, str]] = []
    for tag, entry in DicomDictionary.items():
        vr, keyword = entry[0], entry[4]
        group = tag >> 16
        if vr not in TEXT_VRS or not keyword or keyword in _IDENTITY_KEYWORDS:
            continue
        if group in (0x0000, 0x0002, 0x0004, 0x0006, 0xFFFA, 0xFFFE):
            continue
        found.append((tag, vr))
    for mask, entry in RepeatersDictionary.items():
        if entry[0] in TEXT_VRS and mask[:2] in ("50", "60"):
            found.append((int(mask.replace("x", "0"), 16), entry[0]))
    return sorted(found)


def _base(charset: Charset, index: int, study_uid: str, series_uid: str) -> Dataset:
    patient = FakePatient(
        name=charset.name,
        patient_id=PATIENT.patient_id,
        birth_date=BIRTH,
        address=PATIENT.address,
        phone=PATIENT.phone,
    )
    ds = ct_slice(
        patient,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=generate_uid(),
        accession=ACCESSION,
        index=index,
        study_date=STUDY_DATE,
    )
    ds.SpecificCharacterSet = charset.term.split("\\") if "\\" in charset.term else charset.term
    ds.ReferringPhysicianName = REFERRING
    ds.OperatorsName = OPERATOR
    ds.PerformingPhysicianName = PERFORMING
    if index == 0:
        ds.NameOfPhysiciansReadingStudy = READER_ELSEWHERE
    return ds


def study(key: str) -> list[Dataset]:
    """The adversarial study in one character set: image instances with planted attributes,
    a private block, an SR of depth 5 and a key object selection."""
    charset = CHARSETS[key]
    study_uid, series_uid = generate_uid(), generate_uid()
    tags = text_tags()
    out: list[Dataset] = []
    for start in range(0, len(tags), PER_INSTANCE):
        ds = _base(charset, len(out), study_uid, series_uid)
        for i, (tag, vr) in enumerate(tags[start : start + PER_INSTANCE], start):
            ds.add_new(tag, vr, _value(vr, i, charset.forms))
        ds.private_block(0x0033, "ACME NOTES 1.0", create=True).add_new(
            0x01, "LO", _value("LO", start, charset.forms)
        )
        out.append(ds)
    out.append(_sr(charset, study_uid, ComprehensiveSRStorage, depth=5))
    out.append(_sr(charset, study_uid, KeyObjectSelectionDocumentStorage, depth=1))
    return out


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _text_item(text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    item.TextValue = text
    return item


def _sr(charset: Charset, study_uid: str, sop_class: str, depth: int) -> Dataset:
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = charset.term.split("\\") if "\\" in charset.term else charset.term
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate, ds.ContentDate, ds.StudyTime, ds.ContentTime = (
        STUDY_DATE,
        STUDY_DATE,
        "101530",
        "101530",
    )
    ds.AccessionNumber = ACCESSION
    ds.Modality = "SR" if sop_class == ComprehensiveSRStorage else "KO"
    ds.Manufacturer = "Quixote Imaging"  # identity where the profile keeps text
    ds.ReferringPhysicianName = REFERRING
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = charset.name, PATIENT.patient_id, BIRTH
    ds.PatientSex = "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "4711", "99", "1"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentTemplateSequence = Sequence([Dataset()])
    ds.ContentTemplateSequence[0].MappingResource = "DCMR"
    ds.ContentTemplateSequence[0].TemplateIdentifier = "2010" if depth == 1 else "2000"
    ds.ConceptNameCodeSequence = Sequence(
        [_code("113000", "DCM", "Of Interest")]
        if depth == 1
        else [_code("18748-4", "LN", "Diagnostic imaging report")]
    )
    if sop_class == ComprehensiveSRStorage:
        ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
        observer = Dataset()
        observer.VerifyingObserverName = READER_ELSEWHERE
        observer.VerifyingOrganization = "La Mancha General"
        observer.VerificationDateTime = f"{STUDY_DATE}120000"
        ds.VerifyingObserverSequence = Sequence([observer])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence()
    forms = (*SHORT_FORMS, *LONG_FORMS, *charset.forms)
    leaf: list[Dataset] = [
        _text_item(f"Seen {f}; mail {i}@quixote.example") for i, f in enumerate(forms)
    ]
    person = Dataset()
    person.RelationshipType, person.ValueType = "HAS OBS CONTEXT", "PNAME"
    person.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    person.PersonName = OPERATOR
    coded = Dataset()
    coded.RelationshipType, coded.ValueType = "CONTAINS", "CODE"
    coded.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    coded.ConceptCodeSequence = Sequence([_code("99QX1", "99LOCAL", "Quixote sign")])
    content: list[Dataset] = [*leaf, person, coded]
    for level in range(depth - 1):
        container = Dataset()
        container.RelationshipType, container.ValueType = "CONTAINS", "CONTAINER"
        container.ContinuityOfContent = "SEPARATE"
        container.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
        container.ContentSequence = Sequence(content)
        content = [container, _text_item(f"level {level}: {forms[level]}")]
    ds.ContentSequence = Sequence(content)
    return ds


def _texts(ds: Dataset) -> Iterator[tuple[str, str]]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from _texts(item)
        elif elem.VR in (*TEXT_VRS, "UN", "OB", "CS", "AE") and elem.value:
            value = elem.value
            if isinstance(value, bytes):
                text = value.decode("latin-1", "replace")
            else:
                items = value if isinstance(value, list | tuple) else [value]
                text = "\\".join(str(v) for v in items)
            yield elem.keyword or str(elem.tag), text


_NOT_ALNUM = re.compile(r"[\W_]+")


def leftovers(ds: Dataset, key: str) -> list[str]:
    """Planted values still in `ds` (decoded text of every element at every depth)."""
    charset = CHARSETS[key]
    forms = {f.casefold() for f in (*SHORT_FORMS, *LONG_FORMS, *charset.forms)}
    cores = {c.casefold() for c in (*CORES, *charset.cores)}
    found: list[str] = []
    for keyword, text in _texts(ds):
        folded = text.casefold()
        squeezed = _NOT_ALNUM.sub("", folded)
        for needle in sorted(forms):
            if needle in folded:
                found.append(f"{keyword}: {needle}")
        for core in sorted(cores):
            if core in squeezed:
                found.append(f"{keyword}: ~{core}")
    return found
