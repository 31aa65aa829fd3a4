"""C-FIND on this site's PACS for a federated query: a patient's studies, as the keys say.

PACS differ: every return key is optional (a missing ModalitiesInStudy is completed from a
SERIES-level query, a missing count stays unknown), and a PACS that ignores a matching key is
caught by checking the given patient keys on every match. A patient ID from another
patient-ID domain (IssuerOfPatientID not this site's) is not matched against local IDs: the
patient is then matched by the other keys (name, birth date).
"""

from __future__ import annotations

from typing import Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from node_agent.answer_policy import AnsweringSection, AnswerRule, allowed, earliest_date
from node_agent.dicom.pacs_config import PacsSection
from node_agent.dicom.scu import (
    DimseError,
    Peer,
    associate,
    c_find,
    find_identifier,
    int_value,
    multi_value,
    new_ae,
    text_value,
)
from wire.query import QueryKeys, StudyMatch

log = structlog.get_logger("hexchange.agent.patient_find")


class FindFailed(Exception):
    """The PACS could not be queried; the message says what to check (no patient data)."""


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _date_range(keys: QueryKeys, oldest: str | None) -> str:
    asked = keys.study_date or ""
    if not oldest:
        return asked
    if not asked:
        return f"{oldest}-"
    start, dash, end = asked.partition("-")
    if not dash:  # one date
        return asked if asked >= oldest else f"{oldest}-{oldest}"  # nothing older may match
    return f"{max(start or oldest, oldest)}-{end}"


def _identifier(
    keys: QueryKeys, section: AnsweringSection, rule: AnswerRule, own_domain: bool
) -> Dataset:
    ident: dict[str, Any] = {
        "PatientName": keys.patient_name or "",
        "PatientID": (keys.patient_id or "") if own_domain else "",
        "PatientBirthDate": keys.patient_birth_date or "",
        "PatientSex": "",
        "StudyInstanceUID": "\\".join(keys.study_uids),
        "AccessionNumber": keys.accession_number or "",
        "StudyDate": _date_range(keys, earliest_date(rule)),
        "StudyTime": "",
        "StudyDescription": "",
        "ModalitiesInStudy": "",
        "NumberOfStudyRelatedSeries": "",
        "NumberOfStudyRelatedInstances": "",
        "IssuerOfPatientID": "",
    }
    return find_identifier("STUDY", **ident)


def _same(given: str | None, found: str | None) -> bool:
    """A key given without wildcards must match exactly (a PACS may have ignored it)."""
    if not given or _has_wildcard(given):
        return True
    return found is None or found.strip().upper() == given.strip().upper()


def find_patient_studies(
    pacs: PacsSection,
    calling_ae: str,
    section: AnsweringSection,
    rule: AnswerRule,
    keys: QueryKeys,
    own_org: str,
) -> list[StudyMatch]:
    """The studies of the patient on the PACS that `rule` lets the requester see."""
    own_domain = (
        not keys.issuer_of_patient_id
        or section.patient_id_issuer is None
        or keys.issuer_of_patient_id == section.patient_id_issuer
    )
    if not own_domain and not (keys.patient_name or keys.study_uids or keys.accession_number):
        return []  # another domain's ID and nothing else to match the patient by
    ae = new_ae(calling_ae, pacs.timeout_seconds)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    peer = Peer(pacs.host, pacs.port, pacs.ae_title, label="the PACS")
    found: dict[str, StudyMatch] = {}
    try:
        with associate(ae, peer, " ([pacs] host/port/ae_title)") as assoc:
            for match in c_find(assoc, _identifier(keys, section, rule, own_domain), peer):
                study = _to_match(match, section, rule, own_org)
                if study is None or study.study_uid in found:
                    continue
                if not (
                    _same(keys.patient_id if own_domain else None, study.patient_id)
                    and _same(keys.patient_birth_date, study.patient_birth_date)
                    and _same(keys.accession_number, study.accession_number)
                ):
                    continue
                if keys.study_uids and study.study_uid not in keys.study_uids:
                    continue
                if not study.modalities:
                    study = _complete_modalities(assoc, peer, study)
                wanted = set(keys.modalities)
                if wanted and study.modalities and not wanted & set(study.modalities):
                    continue
                if not allowed(rule, study):
                    continue
                found[study.study_uid] = study
                if len(found) >= section.max_matches:
                    break
    except DimseError as exc:
        raise FindFailed(str(exc)) from exc
    return sorted(found.values(), key=lambda s: (s.study_date or "", s.study_uid), reverse=True)


def _to_match(
    ds: Dataset, section: AnsweringSection, rule: AnswerRule, own_org: str
) -> StudyMatch | None:
    uid = text_value(ds, "StudyInstanceUID")
    if uid is None:
        return None

    def short(keyword: str, limit: int = 64) -> str | None:
        value = text_value(ds, keyword)
        return value[:limit] if value else None

    try:
        return StudyMatch(
            study_uid=uid,
            study_date=short("StudyDate", 8),
            study_time=short("StudyTime", 16),
            study_description=short("StudyDescription"),
            accession_number=short("AccessionNumber", 16),
            modalities=[m.upper() for m in multi_value(ds, "ModalitiesInStudy")][:32],
            series=int_value(ds, "NumberOfStudyRelatedSeries"),
            instances=int_value(ds, "NumberOfStudyRelatedInstances"),
            patient_name=short("PatientName"),
            patient_id=short("PatientID"),
            issuer_of_patient_id=short("IssuerOfPatientID") or section.patient_id_issuer,
            patient_birth_date=short("PatientBirthDate", 8),
            patient_sex=short("PatientSex", 16),
            source_org=own_org,
            institution_name=section.institution_name if rule.show_institution else None,
        )
    except ValueError:  # a value this format refuses (e.g. control characters): skip the study
        log.warning("pacs answered a study with unusable values; skipped")
        return None


def _complete_modalities(assoc: Any, peer: Peer, study: StudyMatch) -> StudyMatch:
    series = c_find(
        assoc,
        find_identifier("SERIES", StudyInstanceUID=study.study_uid, SeriesInstanceUID="",
                        Modality=""),
        peer,
    )  # fmt: skip
    modalities = list(dict.fromkeys(m.upper() for s in series if (m := text_value(s, "Modality"))))
    return study.model_copy(
        update={"modalities": modalities, "series": study.series or len(series)}
    )
