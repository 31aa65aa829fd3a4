"""De-identified synthetic instances for research-collection tests, and a collection made as
the hub's operator makes one (the key file, `hub.collections.service.create`)."""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlmodel import Session

from deidentify import Profile, PseudonymKeys, apply
from hub.bootstrap import load_receipt_key
from hub.collections import service
from hub.collections.keys import FileKeyProvider
from hub.principals import Principal
from hub.settings import HubSettings
from tests.factories.dicom import FakePatient, ct_slice


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class MadeStudy:
    originals: list[Dataset] = field(default_factory=list)
    files: list[bytes] = field(default_factory=list)  # de-identified Part 10 files
    study_uid: str = ""
    series_uid: str = ""
    sop_uids: list[str] = field(default_factory=list)


def deidentified_study(
    instances: int = 3,
    *,
    modality: str = "CT",
    study_date: str = "20261104",
    body_part: str = "CHEST",
    patient: FakePatient | None = None,
    size: int = 64,
) -> MadeStudy:
    """A synthetic study with identifying attributes, through `deidentify.apply` (basic
    profile, retain-long-full-dates so the dates are searchable)."""
    patient = patient or FakePatient()
    profile = Profile.from_names(["retain-long-full-dates"])
    keys = PseudonymKeys(secrets.token_bytes(32))
    study_uid, series_uid = generate_uid(), generate_uid()
    made = MadeStudy()
    for index in range(instances):
        ds = ct_slice(
            patient, study_uid=study_uid, series_uid=series_uid, sop_uid=generate_uid(),
            accession="ACC-" + secrets.token_hex(4), index=index, study_date=study_date,
            rows=size, columns=size,
        )  # fmt: skip
        ds.Modality = modality
        ds.BodyPartExamined = body_part
        made.originals.append(ds)
        out = apply(ds, profile, keys).dataset
        made.files.append(part10(out))
        made.study_uid, made.series_uid = str(out.StudyInstanceUID), str(out.SeriesInstanceUID)
        made.sop_uids.append(str(out.SOPInstanceUID))
    return made


def key_file(settings: HubSettings) -> Path:
    path = settings.collection_key_path
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(secrets.token_bytes(32))
    return path


def make_collection(
    session: Session, settings: HubSettings, name: str, org: str, profile: list[str] | None = None
) -> service.CollectionView:
    """As `hexchange-hub collection create` does (the organization must exist)."""
    return service.create(
        session, Principal.cli(), FileKeyProvider(key_file(settings)),
        load_receipt_key(settings.receipt_key_file), name=name, org=org,
        profile=profile if profile is not None else ["retain-long-full-dates"],
    )  # fmt: skip
