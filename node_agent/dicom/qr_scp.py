"""The agent's Query/Retrieve SCP: the site's PACS and viewers query other organizations.

C-FIND (Patient Root and Study Root, PATIENT and STUDY levels) is forwarded as a sealed
federated request to `[query_retrieve] ask_orgs`; the answers are merged (one response per
study, by Study Instance UID) and returned as pending responses marked with their source:
RetrieveAETitle is this SCP (retrieve through it) and InstitutionName the answering site's
institution when its policy shows it, else its organization id. When nothing matched and some
organization answered for its studies (all refused, were offline or did not answer), the
final status is a failure whose Error Comment says which and why; an organization's "no match"
is an empty success (the full reasons are in `hexchange-agent request status`).

C-MOVE and C-GET (STUDY level) ask the organization that listed the study to send it; its
instances arrive through the inbound path (stored into the site's PACS as every delivery is)
and are passed on as sub-operations as they arrive, with real counts. A retrieve that outlives
`retrieve_timeout_seconds` ends with a warning; the inbound path still stores the rest, and
`retrieve_follow` counts it (durably: a restarted agent follows it again).

Only `allowed_calling_aes` may associate. Logs name requests and counts, never patients.
"""

from __future__ import annotations

import io
import queue
import time
from collections.abc import Iterator
from typing import Any

import structlog
from pydantic import ValidationError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from node_agent.arrivals import ArrivalBoard
from node_agent.dicom.qr_config import QrSection
from node_agent.dicom.retrieve_follow import BackgroundRetrieves
from node_agent.dicom.scu import multi_value, text_value
from node_agent.dicom.sub_syntaxes import fit, move_contexts, supported_syntaxes
from node_agent.hubclient import HubRefused, HubUnavailable
from node_agent.ledger import Ledger
from node_agent.requests import FindResult, RequestError, Requests
from wire.query import QueryKeys, StudyMatch

log = structlog.get_logger("hexchange.agent.qr")

PENDING = 0xFF00
IDENTIFIER_INVALID = 0xA900
UNABLE_TO_PROCESS = 0xC000
REFUSED = 0xC001  # C-FIND: no match here because an organization refused or was offline
MOVE_FAILED = 0xC002
WARNING = 0xB000
_COMMENT_MAX = 64  # Error Comment is LO


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:_COMMENT_MAX]
    return status


def _text(ds: Dataset, keyword: str) -> str | None:
    value = text_value(ds, keyword)
    return value if value and value.strip("*") else None


def keys_from(identifier: Dataset) -> QueryKeys:
    """The federated query keys of a C-FIND/C-MOVE identifier (ValidationError if unusable)."""
    level = str(identifier.get("QueryRetrieveLevel", "STUDY")).strip().upper()
    return QueryKeys(
        level="PATIENT" if level == "PATIENT" else "STUDY",
        patient_name=_text(identifier, "PatientName"),
        patient_id=_text(identifier, "PatientID"),
        issuer_of_patient_id=_text(identifier, "IssuerOfPatientID"),
        patient_birth_date=_text(identifier, "PatientBirthDate"),
        other_patient_ids=list(multi_value(identifier, "OtherPatientIDs"))[:16],
        study_uids=list(multi_value(identifier, "StudyInstanceUID"))[:64],
        accession_number=_text(identifier, "AccessionNumber"),
        study_date=_text(identifier, "StudyDate"),
        modalities=list(multi_value(identifier, "ModalitiesInStudy"))[:16],
    )


def refusal_comment(result: FindResult) -> str:
    """One short line for the Error Comment: the first refusal (the CLI lists them all)."""
    parts = [r.reason for r in result.refusals]
    text = parts[0] if parts else "no organization answered"
    if len(parts) > 1:
        text = f"{text} (+{len(parts) - 1} more)"
    return text


def study_response(match: StudyMatch, level: str, ae_title: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    ds.PatientName = match.patient_name or ""
    ds.PatientID = match.patient_id or ""
    ds.IssuerOfPatientID = match.issuer_of_patient_id or ""
    ds.PatientBirthDate = match.patient_birth_date or ""
    ds.PatientSex = match.patient_sex or ""
    if level == "STUDY":
        ds.StudyInstanceUID = match.study_uid
        ds.StudyDate = match.study_date or ""
        ds.StudyTime = match.study_time or ""
        ds.StudyDescription = match.study_description or ""
        ds.AccessionNumber = match.accession_number or ""
        ds.ModalitiesInStudy = list(match.modalities) or ""
        if match.series is not None:
            ds.NumberOfStudyRelatedSeries = match.series
        if match.instances is not None:
            ds.NumberOfStudyRelatedInstances = match.instances
    ds.RetrieveAETitle = ae_title
    ds.InstitutionName = (match.institution_name or match.source_org)[:64]
    return ds


def patient_responses(matches: list[StudyMatch], ae_title: str) -> Iterator[Dataset]:
    """PATIENT level: one response per patient (ID and source), with its study count."""
    groups: dict[tuple[str, str, str], list[StudyMatch]] = {}
    for match in matches:
        key = (match.source_org, match.patient_id or "", match.patient_name or "")
        groups.setdefault(key, []).append(match)
    for studies in groups.values():
        ds = study_response(studies[0], "PATIENT", ae_title)
        ds.NumberOfPatientRelatedStudies = len(studies)
        yield ds


class QrHandlers:
    def __init__(self, section: QrSection, requests: Requests, board: ArrivalBoard) -> None:
        self.section = section
        self.requests = requests
        self.board = board
        self.ledger = Ledger(requests.state)
        self.background = BackgroundRetrieves(self.ledger, board)

    # -- C-FIND -----------------------------------------------------------------------------

    def find(self, event: Any) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in ("PATIENT", "STUDY"):
            log.info("c-find below study level: nothing federated to list", level=level)
            return
        try:
            keys = keys_from(identifier)
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
            yield _status(IDENTIFIER_INVALID, f"unusable keys: {fields}"), None
            return
        try:
            result = self.requests.find(
                keys,
                list(self.section.ask_orgs),
                self.section.find_timeout_seconds,
                hold=self.section.complete_when_back,
            )
        except RequestError as exc:
            yield _status(UNABLE_TO_PROCESS, str(exc)), None
            return
        except (HubUnavailable, HubRefused) as exc:
            log.warning("federated c-find failed at the hub", reason=str(exc))
            yield _status(UNABLE_TO_PROCESS, "the hub is unreachable; try again"), None
            return
        log.info("federated c-find", request=result.request_id, matches=len(result.matches),
                 refusals=len(result.refusals))  # fmt: skip
        if not result.matches and not result.definitive:
            yield _status(REFUSED, refusal_comment(result)), None
            return
        if level == "PATIENT":
            for ds in patient_responses(result.matches, self.section.ae_title):
                if event.is_cancelled:
                    return
                yield PENDING, ds
            return
        seen: set[str] = set()
        for match in result.matches:
            if match.study_uid in seen:
                continue
            seen.add(match.study_uid)
            if event.is_cancelled:
                return
            yield PENDING, study_response(match, "STUDY", self.section.ae_title)

    # -- C-MOVE / C-GET ---------------------------------------------------------------------

    def _study_uids(self, identifier: Dataset) -> list[str]:
        return list(multi_value(identifier, "StudyInstanceUID"))

    def _sub_operations(
        self, event: Any, move: bool, store_assoc: list[Any] | None = None
    ) -> Iterator[Any]:
        """(number of sub-operations, then (status, dataset) pairs), for one study."""
        uids = self._study_uids(event.identifier)
        level = str(event.identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level != "STUDY" or len(uids) != 1:
            yield 1
            yield _status(UNABLE_TO_PROCESS, "retrieve one study at STUDY level"), None
            return
        study_uid = uids[0]
        arrivals = self.board.subscribe(study_uid)
        handed_over = False
        try:
            try:
                result, expected = self.requests.retrieve(study_uid)
            except RequestError as exc:
                yield 1
                yield _status(MOVE_FAILED, str(exc)), None
                return
            except (HubUnavailable, HubRefused):
                yield 1
                yield _status(MOVE_FAILED, "the hub is unreachable; try again"), None
                return
            if result.refusals:
                yield 1
                yield _status(MOVE_FAILED, refusal_comment(result)), None
                return
            total = expected or 1
            request_id = result.request_id
            log.info("federated retrieve accepted", request=request_id, expected=total)
            self.ledger.retrieve_started(request_id, study_uid, total)
            yield total
            sent = 0
            deadline = time.monotonic() + self.section.retrieve_timeout_seconds
            while sent < total:
                if event.is_cancelled:
                    break
                try:
                    data = arrivals.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() < deadline:
                        continue
                    # the association's time is up: the inbound path stores the rest into
                    # the PACS; a thread follows it for the request status
                    self.ledger.retrieve_moved(request_id, "background")
                    log.warning("retrieve continues in the background", request=request_id,
                                arrived=sent, expected=total)  # fmt: skip
                    handed_over = True
                    self.background.follow(study_uid, arrivals, request_id, sent, total)
                    yield _status(WARNING, "continuing in the background"), None
                    return
                ds: Dataset = dcmread(io.BytesIO(data))
                # the instance's own syntax if the destination took it, else decompressed
                sub_assoc = (store_assoc or [None])[0] if move else event.assoc
                if sub_assoc is not None:
                    ds = fit(ds, sub_assoc.accepted_contexts, "scu")
                arrived = self.ledger.retrieve_arrived(request_id, str(ds.SOPInstanceUID))
                if arrived == sent:  # the same instance stored again: one sub-operation
                    continue
                sent = arrived
                yield PENDING, ds
            self.ledger.retrieve_moved(request_id, "complete" if sent >= total else "cancelled")
        finally:
            if not handed_over:
                self.board.unsubscribe(study_uid, arrivals)

    def move(self, event: Any) -> Iterator[Any]:
        destination = self.section.destination(str(event.move_destination))
        if destination is None:
            log.warning("c-move to an unknown destination refused")
            yield None, None
            return
        store_assoc: list[Any] = []  # the sub-operations' association, once pynetdicom made it
        yield (
            *destination,
            {
                "contexts": move_contexts(),
                "evt_handlers": [(evt.EVT_ACCEPTED, lambda e: store_assoc.append(e.assoc))],
            },
        )
        yield from self._sub_operations(event, move=True, store_assoc=store_assoc)

    def get(self, event: Any) -> Iterator[Any]:
        yield from self._sub_operations(event, move=False)


def make_qr_ae(section: QrSection) -> AE:
    ae = AE(ae_title=section.ae_title)
    for model in (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelGet,
        Verification,
    ):
        ae.add_supported_context(model)
    # C-GET sends the instances back over the same association (SCP role for storage)
    for context in StoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(
            context.abstract_syntax, supported_syntaxes(), scu_role=False, scp_role=True
        )
    # C-MOVE opens its own association to the destination (contexts: sub_syntaxes)
    ae.require_calling_aet = list(section.allowed_calling_aes)
    ae.maximum_pdu_size = 0
    return ae


def start_qr_scp(
    section: QrSection, requests: Requests, board: ArrivalBoard
) -> ThreadedAssociationServer:
    handlers = QrHandlers(section, requests, board)
    handlers.background.resume()  # retrieves a killed agent left unfinished
    ae = make_qr_ae(section)
    server = ae.start_server(
        (section.host, section.port),
        block=False,
        evt_handlers=[
            (evt.EVT_C_FIND, handlers.find),
            (evt.EVT_C_MOVE, handlers.move),
            (evt.EVT_C_GET, handlers.get),
        ],
    )
    assert server is not None
    return server
