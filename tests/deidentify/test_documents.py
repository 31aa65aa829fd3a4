"""Encapsulated PDF documents (issue 16): never sent as an invalid object; sent unchanged only
when the policy allows documents and no identity is found in their text or metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pypdf import PdfReader, PdfWriter
from pypdf.annotations import Text
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject
from typer.testing import CliRunner

from deidentify import Profile, PseudonymKeys, apply, verify
from deidentify.cli import app
from deidentify.documents import PDF_SOP_CLASS, DocumentHeldBack
from deidentify.recipe import parse_recipe
from tests.deidentify.factories import SECRET
from tests.factories.dicom import FakePatient

SEND = parse_recipe('[documents]\npolicy = "send-if-clean"\n')


def pdf_bytes(text: str, author: str = "Radiology") -> bytes:
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata({"/Author": author, "/Title": "Report"})
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue()
    return data + b"\x00" if len(data) % 2 else data


def pdf_instance(document: bytes, patient: FakePatient | None = None) -> Dataset:
    patient = patient or FakePatient()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PDF_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = PDF_SOP_CLASS, sop_uid
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = (
        "20261104",
        "101530",
        "20261104",
        "101530",
    )
    ds.AcquisitionDateTime = "20261104101530"
    ds.AccessionNumber = "ACC2611040091"
    ds.Modality = "DOC"
    ds.ConversionType = "WSD"
    ds.PatientName, ds.PatientID = patient.name, patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    ds.ReferringPhysicianName = "Sancho^Panza"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "4711", "1", "1"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Radiology report"
    ds.ConceptNameCodeSequence = Sequence()
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document
    return ds


def test_documents_are_held_back_by_default(keys: PseudonymKeys) -> None:
    ds = pdf_instance(pdf_bytes("Normal chest radiograph."))
    with pytest.raises(DocumentHeldBack, match=r"^document: the policy does not send"):
        apply(ds, Profile.basic(), keys)


def test_clean_pdf_is_sent_with_its_pages_and_without_its_metadata(keys: PseudonymKeys) -> None:
    document = pdf_bytes("Normal chest radiograph. No acute findings.", "Dr Sancho Panza")
    ds = pdf_instance(document)
    ds.EncapsulatedDocumentLength = len(document)
    result = apply(ds, Profile.basic(), keys, SEND)
    sent = bytes(result.dataset.EncapsulatedDocument)
    reader = PdfReader(io.BytesIO(sent))
    assert [p.extract_text() for p in reader.pages] == [
        "Normal chest radiograph. No acute findings."
    ]
    assert reader.metadata is None and reader.xmp_metadata is None  # the author is gone
    assert b"Sancho" not in sent
    assert result.dataset.EncapsulatedDocumentLength == len(sent.rstrip(b"\x00"))
    assert result.dataset.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert verify(ds, result.dataset, Profile.basic(), SEND) == []
    written = io.BytesIO()
    result.dataset.save_as(written, enforce_file_format=True)  # a valid object, document intact
    assert dcmread(io.BytesIO(written.getvalue())).EncapsulatedDocument == sent


@pytest.mark.parametrize(
    "text",
    [
        "Report for Dulcinea Quixote, seen today.",
        "Patient MRN 48213377 reviewed.",
        "Born 14 February 1958.",
        "Call 555 0148 227 for results.",
    ],
)
def test_document_with_identity_is_held_back(text: str, keys: PseudonymKeys) -> None:
    ds = pdf_instance(pdf_bytes(text))
    with pytest.raises(DocumentHeldBack, match=r"^document: the encapsulated document holds"):
        apply(ds, Profile.basic(), keys, SEND)


def test_pdf_with_annotations_is_held_back(keys: PseudonymKeys) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes("Normal chest radiograph."))))
    writer.add_annotation(0, Text(text="signed D. Quixote", rect=(50, 550, 200, 650)))
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue() + (b"\x00" if len(out.getvalue()) % 2 else b"")
    with pytest.raises(DocumentHeldBack, match=r"annotations"):
        apply(pdf_instance(data), Profile.basic(), keys, SEND)


def test_unreadable_pdf_is_held_back_with_the_reason(keys: PseudonymKeys) -> None:
    ds = pdf_instance(b"%PDF-1.4 not really a pdf\n")
    with pytest.raises(DocumentHeldBack, match=r"^document: the PDF"):
        apply(ds, Profile.basic(), keys, SEND)


def test_cli_quarantines_a_document_and_reports_it_held_back(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    pdf_instance(pdf_bytes("Report for Dulcinea Quixote.")).save_as(
        src / "doc.dcm", enforce_file_format=True
    )
    key, report = tmp_path / "key", tmp_path / "report.json"
    key.write_bytes(SECRET)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[documents]\npolicy = "send-if-clean"\n')
    args = [str(src), str(tmp_path / "out"), "--key-file", str(key), "--recipe", str(recipe)]
    result = CliRunner().invoke(app, [*args, "--report", str(report), "--workers", "1"])
    assert result.exit_code == 1
    data = json.loads(report.read_text())
    assert data["held_back"] == {"document": 1}
    assert data["files"][0]["reason"].startswith("document: the encapsulated document holds")
