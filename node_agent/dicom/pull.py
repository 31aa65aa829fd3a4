"""PACS pull: C-FIND (study root, STUDY level), then C-MOVE to this agent or C-GET.

What was fetched is remembered in the `pulls` table, so a study is fetched once; it is fetched
again only when the PACS reports more instances (NumberOfStudyRelatedInstances) than at the last
fetch, or when the last fetch did not bring everything. Instances arrive in the spool exactly as
a modality's pushes do: through the agent's SCP (C-MOVE) or the same `Spool.store` (C-GET).
A study whose retrieve brought every instance is stable at once: it does not wait out the quiet
period, which is for pushes (nothing in a push says that the study is complete).

PACS differ in what they answer, so every optional key is treated as optional: a missing
ModalitiesInStudy is completed from a SERIES-level query, a missing StudyDate is not filtered
on, a missing instance count falls back to the series' counts or, failing that, to "fetch once".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import structlog
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from node_agent.config import AgentConfig
from node_agent.dicom.pacs_config import PacsSection
from node_agent.dicom.scp import make_store_handler
from node_agent.dicom.scu import (
    PENDING,
    SUCCESS,
    DimseError,
    Peer,
    associate,
    c_find,
    find_identifier,
    int_value,
    multi_value,
    new_ae,
    poll_slowly,
    status_text,
    text_value,
)
from node_agent.dicom.sub_syntaxes import COMPRESSED
from node_agent.dicom.transcode import UNCOMPRESSED
from node_agent.ledger import Ledger
from node_agent.priority import request_priority
from node_agent.spool import Spool
from node_agent.state import AgentState

log = structlog.get_logger("hexchange.agent.pull")

PULLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS pulls (
    study_uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,               -- done | partial | failed
    remote_instances INTEGER,           -- the PACS's count at the last fetch; NULL: not reported
    local_instances INTEGER NOT NULL DEFAULT 0,  -- instances of the study in the spool after it
    attempts INTEGER NOT NULL DEFAULT 0,         -- failed or partial fetches in a row
    last_error TEXT,
    first_at REAL NOT NULL,
    fetched_at REAL NOT NULL
);
"""

# Proposed for every storage context of a C-GET; the PACS picks one (and transcodes if needed):
# the syntaxes the agent's own Q/R SCP accepts from a viewer, and deflated.
GET_TRANSFER_SYNTAXES = [*UNCOMPRESSED, DeflatedExplicitVRLittleEndian, *COMPRESSED]
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 86400.0
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DA = re.compile(r"^\d{8}$")
_MOVE_DESTINATION_UNKNOWN = 0xA801
_WARNING = 0xB000

_Batch = tuple[str, list[str]]  # a series UID and SOP Instance UIDs of it, for one C-MOVE
_SPLIT_MIN = 32  # fewer instances: one STUDY-level C-MOVE (splitting costs a C-FIND)
_BATCH = 200  # SOP Instance UIDs per IMAGE-level C-MOVE (a list of UIDs, PS3.4 C.4.2.2.1)

Outcome = Literal["fetched", "partial", "failed", "skipped", "planned"]
Progress = Callable[["RemoteStudy", int, int | None], None]


class PullError(Exception):
    """The pull could not run (e.g. the PACS is unreachable); the message says what to check."""


def study_ref(study_uid: str) -> str:
    """A short, stable, non-identifying reference for logs."""
    return hashlib.sha256(study_uid.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PullQuery:
    since: dt.date | None = None
    until: dt.date | None = None
    modalities: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    keys: tuple[tuple[str, str], ...] = ()

    @classmethod
    def scheduled(cls, section: PacsSection, today: dt.date | None = None) -> PullQuery:
        today = today or dt.date.today()
        return cls(
            since=today - dt.timedelta(days=section.lookback_days),
            modalities=tuple(section.query.modalities),
            keys=tuple(section.query.keys.items()),
        )

    def date_range(self) -> str:
        if self.since is None and self.until is None:
            return ""
        since = self.since.strftime("%Y%m%d") if self.since else ""
        until = self.until.strftime("%Y%m%d") if self.until else ""
        return f"{since}-{until}" if since != until else since

    def date_matches(self, study_date: str | None) -> bool:
        if study_date is None or not _DA.match(study_date):
            return True  # the PACS did not say; trust its matching
        if self.since and study_date < self.since.strftime("%Y%m%d"):
            return False
        return not (self.until and study_date > self.until.strftime("%Y%m%d"))


@dataclass(frozen=True)
class RemoteStudy:
    study_uid: str
    study_date: str | None = None
    modalities: tuple[str, ...] = ()
    instances: int | None = None  # NumberOfStudyRelatedInstances; None: the PACS did not say
    sop_classes: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return study_ref(self.study_uid)


@dataclass(frozen=True)
class PullResult:
    study: RemoteStudy
    outcome: Outcome
    reason: str
    local_instances: int = 0


@dataclass
class _Counters:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    final: str = ""
    errors: list[str] = field(default_factory=list)


def ensure_schema(state: AgentState) -> None:
    with state.connect() as conn:
        conn.executescript(PULLS_SCHEMA)


class Puller:
    def __init__(
        self,
        section: PacsSection,
        calling_ae: str,
        state: AgentState,
        spool: Spool | None = None,
    ) -> None:
        self.section = section
        self.calling_ae = calling_ae
        self.move_destination = section.move_destination or calling_ae
        self.state = state
        self.spool = spool
        self.peer = Peer(section.host, section.port, section.ae_title, label="the PACS")
        if section.retrieve == "get" and spool is None:
            raise ValueError("C-GET stores through the spool; pass one")
        ensure_schema(state)

    @classmethod
    def from_config(cls, config: AgentConfig, state: AgentState, spool: Spool) -> Puller:
        if config.pacs is None:
            raise PullError("the config has no [pacs] section; add host, port and ae_title")
        return cls(config.pacs, config.dicom.ae_title, state, spool)

    # -- C-FIND -------------------------------------------------------------------------------

    def find(self, query: PullQuery) -> list[RemoteStudy]:
        """Studies on the PACS matching `query`, tolerant of PACS that omit optional keys."""
        ae = new_ae(self.calling_ae, self.section.timeout_seconds)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        hint = f" ([pacs] host/port/ae_title; this agent calls as {self.calling_ae})"
        found: dict[str, RemoteStudy] = {}
        try:
            with associate(ae, self.peer, hint) as assoc:
                for uid in query.study_uids or (None,):
                    for modality in query.modalities or (None,):
                        for study in self._find_one(assoc, query, uid, modality):
                            if study.study_uid in found:
                                old = found[study.study_uid]
                                merged = tuple(dict.fromkeys(old.modalities + study.modalities))
                                study = replace(old, modalities=merged)
                            found[study.study_uid] = study
                return [self._complete(assoc, query, s) for s in found.values()]
        except DimseError as exc:
            raise PullError(str(exc)) from exc

    def _find_one(
        self, assoc: Any, query: PullQuery, uid: str | None, modality: str | None
    ) -> Iterable[RemoteStudy]:
        keys: dict[str, Any] = {
            "StudyInstanceUID": uid or "",
            "StudyDate": query.date_range(),
            "ModalitiesInStudy": modality or "",
            "NumberOfStudyRelatedInstances": "",
            "SOPClassesInStudy": "",
        }
        keys.update(dict(query.keys))
        try:
            matches = c_find(assoc, find_identifier("STUDY", **keys), self.peer)
        except DimseError:
            if not modality:
                raise
            # Some PACS refuse matching on the optional ModalitiesInStudy: ask without it and
            # check each study's series instead (in _complete).
            del keys["ModalitiesInStudy"]
            log.info("pacs refused ModalitiesInStudy matching; checking series instead")
            matches = c_find(assoc, find_identifier("STUDY", **keys), self.peer)
        skipped = 0
        for match in matches:
            study_uid = text_value(match, "StudyInstanceUID")
            if study_uid is None or not _UID.match(study_uid) or (uid and study_uid != uid):
                skipped += 1
                continue
            study = RemoteStudy(
                study_uid=study_uid,
                study_date=text_value(match, "StudyDate"),
                modalities=tuple(m.upper() for m in multi_value(match, "ModalitiesInStudy")),
                instances=int_value(match, "NumberOfStudyRelatedInstances"),
                sop_classes=multi_value(match, "SOPClassesInStudy"),
            )
            if not query.date_matches(study.study_date):
                continue
            if modality and study.modalities and modality not in study.modalities:
                continue
            yield study
        if skipped:
            log.warning("pacs answered matches without a valid StudyInstanceUID", count=skipped)

    def _complete(self, assoc: Any, query: PullQuery, study: RemoteStudy) -> RemoteStudy:
        """Fill what the PACS left out from a SERIES-level query, when it matters."""
        needs_modalities = bool(query.modalities) and not study.modalities
        needs_count = study.instances is None
        if not needs_modalities and not needs_count:
            return study
        series = c_find(
            assoc,
            find_identifier(
                "SERIES",
                StudyInstanceUID=study.study_uid,
                SeriesInstanceUID="",
                Modality="",
                NumberOfSeriesRelatedInstances="",
            ),
            self.peer,
        )
        modalities = study.modalities or tuple(
            dict.fromkeys(m.upper() for s in series if (m := text_value(s, "Modality")))
        )
        instances = study.instances
        counts = [int_value(s, "NumberOfSeriesRelatedInstances") for s in series]
        if instances is None and series and all(c is not None for c in counts):
            instances = sum(c for c in counts if c is not None)
        return replace(study, modalities=modalities, instances=instances)

    def matches_modalities(self, query: PullQuery, study: RemoteStudy) -> bool:
        if not query.modalities or not study.modalities:
            return True
        return bool(set(query.modalities) & set(study.modalities))

    # -- what to fetch ------------------------------------------------------------------------

    def decide(self, study: RemoteStudy, *, retry_now: bool = False) -> str | None:
        """Why `study` should be fetched now, or None when it was fetched already.

        A failed or partial fetch is retried with backoff (1 min doubling, at most daily)
        unless `retry_now` (an operator's on-demand pull)."""
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT status, remote_instances, local_instances, attempts, fetched_at "
                "FROM pulls WHERE study_uid = ?",
                (study.study_uid,),
            ).fetchone()
        if row is None:
            return "new"
        if row["status"] != "done":
            delay = min(RETRY_BASE_SECONDS * 2 ** max(row["attempts"] - 1, 0), RETRY_MAX_SECONDS)
            if not retry_now and time.time() < row["fetched_at"] + delay:
                return None
            return f"the last fetch was {row['status']}"
        last = row["remote_instances"]
        if last is None:
            last = row["local_instances"] if study.instances is not None else None
        if study.instances is not None and last is not None and study.instances > last:
            return f"grew from {last} to {study.instances} instances"
        return None

    def skip_reason(self, study: RemoteStudy) -> str:
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT status FROM pulls WHERE study_uid = ?", (study.study_uid,)
            ).fetchone()
        if row is None or row["status"] == "done":
            return "already pulled"
        return f"last fetch {row['status']}; waiting to retry"

    def local_count(self, study_uid: str) -> int:
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM instances WHERE study_uid = ?", (study_uid,)
            ).fetchone()
        return int(row[0])

    # -- retrieve -----------------------------------------------------------------------------

    def retrieve(self, study: RemoteStudy, progress: Progress | None = None) -> PullResult:
        """Fetch one study and record the outcome; a failure is recorded, not raised."""
        try:
            if self.section.retrieve == "move":
                counters = self._move(study, progress)
            else:
                counters = self._get(study, progress)
        except DimseError as exc:
            local = self.local_count(study.study_uid)
            self._record(study, "failed", local, str(exc))
            log.warning("pacs retrieve failed", study=study.ref, reason=str(exc))
            return PullResult(study, "failed", str(exc), local)
        local = self.local_count(study.study_uid)
        expected = study.instances
        if expected is not None:
            complete = local >= expected
            reason = (
                f"{local} of {expected} instances in the spool"
                if complete
                else f"the PACS reported {expected} instances but {local} are in the spool"
            )
        else:
            complete = counters.failed == 0 and local > 0
            reason = f"{local} instances in the spool (the PACS reported no count)"
        if counters.failed:
            reason += f"; {counters.failed} sub-operations failed"
        if counters.errors:
            reason += "; " + "; ".join(counters.errors)
        if not complete and counters.final:
            reason += f"; final {counters.final}"
        outcome: Outcome = "fetched" if complete else "partial"
        self._record(study, "done" if complete else "partial", local, None if complete else reason)
        log.info(
            "study pulled" if complete else "study pulled partly; retried next time",
            study=study.ref,
            instances=local,
            expected=expected,
            failed_suboperations=counters.failed,
        )
        return PullResult(study, outcome, reason, local)

    def _retrieve_identifier(self, study: RemoteStudy) -> Dataset:
        return find_identifier("STUDY", StudyInstanceUID=study.study_uid)

    def _consume(
        self,
        responses: Iterable[tuple[Any, Any]],
        study: RemoteStudy,
        progress: Progress | None,
        what: str,
    ) -> _Counters:
        counters = _Counters()
        for status, _identifier in responses:
            code = getattr(status, "Status", None)
            if code is None:
                raise DimseError(f"{self.peer} stopped answering the {what}: {status_text(status)}")
            counters.completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
            counters.failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
            counters.warning = int(status.get("NumberOfWarningSuboperations", 0) or 0)
            if code in PENDING:
                if progress is not None and what == "C-MOVE":
                    remaining = status.get("NumberOfRemainingSuboperations")
                    total = None
                    if remaining is not None:
                        total = counters.completed + counters.failed + counters.warning
                        total += int(remaining)
                    progress(study, counters.completed + counters.warning, total)
                continue
            if code == SUCCESS or (code & 0xF000) == _WARNING:
                counters.final = status_text(status)
                return counters
            if code == _MOVE_DESTINATION_UNKNOWN:
                raise DimseError(
                    f"{self.peer} does not know the move destination AE "
                    f"{self.move_destination}; register that AE with this agent's host and "
                    f'DICOM port in the PACS, or set [pacs] retrieve = "get"'
                )
            counters.final = status_text(status)
            if counters.completed:
                return counters  # partly done: the caller records it as partial
            hint = ""
            if what == "C-MOVE":
                hint = (
                    f"; check that the PACS knows the move destination AE "
                    f"{self.move_destination} with this agent's host and DICOM port, "
                    f'or set [pacs] retrieve = "get"'
                )
            raise DimseError(f"{self.peer} failed the {what}: {status_text(status)}{hint}")
        raise DimseError(f"{self.peer} ended the {what} without a final status")

    def _move(self, study: RemoteStudy, progress: Progress | None) -> _Counters:
        associations = self.section.move_associations
        if associations > 1 and (study.instances is None or study.instances >= _SPLIT_MIN):
            groups = self._instance_groups(study, associations)
            if groups is not None and len(groups) > 1:
                try:
                    return self._move_split(study, groups, progress)
                except DimseError as exc:
                    # e.g. a PACS that lists instances but moves only whole studies: what
                    # did arrive is in the spool, and duplicates cost only the bytes
                    log.warning(
                        "pacs failed the IMAGE-level C-MOVE; one STUDY-level C-MOVE instead",
                        reason=str(exc),
                    )
        with associate(self._move_ae(), self.peer) as assoc:
            poll_slowly(assoc)
            responses = assoc.send_c_move(
                self._retrieve_identifier(study),
                self.move_destination,
                StudyRootQueryRetrieveInformationModelMove,
            )
            return self._consume(responses, study, progress, "C-MOVE")

    def _move_ae(self) -> Any:
        ae = new_ae(
            self.calling_ae, self.section.timeout_seconds, self.section.retrieve_timeout_seconds
        )
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        return ae

    def _instance_groups(self, study: RemoteStudy, parts: int) -> list[list[_Batch]] | None:
        """The study's instances (IMAGE-level C-FIND) dealt into up to `parts` groups of
        consecutive instances, each a list of (series UID, SOP Instance UIDs) batches; None
        when the PACS does not answer at IMAGE level (then one STUDY-level C-MOVE does)."""
        ae = new_ae(self.calling_ae, self.section.timeout_seconds)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        keys = {"StudyInstanceUID": study.study_uid, "SeriesInstanceUID": "", "SOPInstanceUID": ""}
        try:
            with associate(ae, self.peer) as assoc:
                matches = c_find(assoc, find_identifier("IMAGE", **keys), self.peer)
        except DimseError as exc:
            log.info("pacs did not list the study's instances; one C-MOVE", reason=str(exc))
            return None
        rows: list[tuple[str, str]] = []
        for match in matches:
            series_uid = text_value(match, "SeriesInstanceUID")
            sop_uid = text_value(match, "SOPInstanceUID")
            if series_uid and sop_uid and _UID.match(series_uid) and _UID.match(sop_uid):
                rows.append((series_uid, sop_uid))
        if len(rows) < _SPLIT_MIN or len(rows) != len(matches):
            return None  # small, or answers we cannot split safely: one STUDY-level C-MOVE
        size = -(-len(rows) // parts)
        groups = []
        for start in range(0, len(rows), size):
            batches: list[_Batch] = []
            for series_uid, sop_uid in rows[start : start + size]:
                if not batches or batches[-1][0] != series_uid or len(batches[-1][1]) >= _BATCH:
                    batches.append((series_uid, []))
                batches[-1][1].append(sop_uid)
            groups.append(batches)
        return groups

    def _move_split(
        self, study: RemoteStudy, groups: list[list[_Batch]], progress: Progress | None
    ) -> _Counters:
        """One association per group, at the same time; IMAGE-level C-MOVEs of each group's
        batches one after another. The counters are the sums; the first error is raised after
        every association has ended."""
        total = _Counters()
        lock = threading.Lock()
        expected = sum(len(sops) for batches in groups for _s, sops in batches)

        def run(batches: list[_Batch]) -> None:
            with associate(self._move_ae(), self.peer) as assoc:
                poll_slowly(assoc)
                for series_uid, sops in batches:
                    identifier = find_identifier(
                        "IMAGE",
                        StudyInstanceUID=study.study_uid,
                        SeriesInstanceUID=series_uid,
                        SOPInstanceUID=sops,
                    )
                    responses = assoc.send_c_move(
                        identifier,
                        self.move_destination,
                        StudyRootQueryRetrieveInformationModelMove,
                    )
                    counters = self._consume(responses, study, None, "C-MOVE")
                    with lock:
                        total.completed += counters.completed
                        total.failed += counters.failed
                        total.warning += counters.warning
                        total.errors += counters.errors
                        if counters.failed or not total.final:
                            total.final = counters.final
                        done = total.completed + total.warning
                    if progress is not None:
                        progress(study, done, expected)

        with ThreadPoolExecutor(len(groups), thread_name_prefix="c-move") as pool:
            futures = [pool.submit(run, batches) for batches in groups]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise errors[0]
        return total

    def _get(self, study: RemoteStudy, progress: Progress | None) -> _Counters:
        assert self.spool is not None
        ae = new_ae(
            self.calling_ae, self.section.timeout_seconds, self.section.retrieve_timeout_seconds
        )
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        classes = [c for c in study.sop_classes if _UID.match(c)]
        if not classes or len(classes) > 127:
            classes = [str(c.abstract_syntax) for c in StoragePresentationContexts]
        classes = list(dict.fromkeys(classes))[:127]
        for sop_class in classes:
            ae.add_requested_context(sop_class, GET_TRANSFER_SYNTAXES)
        roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
        store = make_store_handler(self.spool)
        received = 0

        def handle_store(event: Any) -> int:
            nonlocal received
            code = store(event)
            if code == SUCCESS:
                received += 1
                if progress is not None:
                    progress(study, received, study.instances)
            return int(code)

        with associate(
            ae, self.peer, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
        ) as assoc:
            responses = assoc.send_c_get(
                self._retrieve_identifier(study), StudyRootQueryRetrieveInformationModelGet
            )
            counters = self._consume(responses, study, progress, "C-GET")
        if counters.failed and study.sop_classes == ():
            counters.errors.append(
                "the PACS did not report SOPClassesInStudy, so only common storage classes "
                "were offered"
            )
        return counters

    def _record(self, study: RemoteStudy, status: str, local: int, error: str | None) -> None:
        now = time.time()
        with self.state.transaction() as conn:
            conn.execute(
                "INSERT INTO pulls(study_uid, status, remote_instances, local_instances, "
                "attempts, last_error, first_at, fetched_at) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT(study_uid) DO UPDATE SET status = excluded.status, "
                "remote_instances = excluded.remote_instances, "
                "local_instances = excluded.local_instances, "
                "attempts = CASE WHEN excluded.status = 'done' THEN 0 "
                "ELSE pulls.attempts + 1 END, "
                "last_error = excluded.last_error, fetched_at = excluded.fetched_at",
                (
                    study.study_uid,
                    status,
                    study.instances,
                    local,
                    0 if status == "done" else 1,
                    error,
                    now,
                    now,
                ),
            )
        if status == "done":
            # the retrieve ended with every instance in the spool: the study is complete
            # now, so it does not wait out the quiet period (that is for pushes, where
            # nothing says when a study ends); an instance pushed later is an addition
            Ledger(self.state).retrieve_complete(study.study_uid)

    # -- all together -------------------------------------------------------------------------

    def plan(
        self, query: PullQuery, *, retry_now: bool = False
    ) -> tuple[list[tuple[RemoteStudy, str]], list[RemoteStudy]]:
        """(studies to fetch with the reason, studies fetched already or waiting to retry)."""
        studies = [s for s in self.find(query) if self.matches_modalities(query, s)]
        studies.sort(key=lambda s: (s.study_date or "", s.study_uid))
        todo: list[tuple[RemoteStudy, str]] = []
        done: list[RemoteStudy] = []
        for study in studies:
            reason = self.decide(study, retry_now=retry_now)
            if reason is None:
                done.append(study)
            else:
                todo.append((study, reason))
        return todo, done

    def ask_priority(self, studies: Iterable[RemoteStudy], priority: int) -> None:
        """Ask for `priority` for these studies: bundles sealed for them later take it, and
        theirs already queued move up (`node_agent.priority`)."""
        for study in studies:
            request_priority(self.state, study.study_uid, priority)

    def run(
        self,
        query: PullQuery,
        progress: Progress | None = None,
        *,
        retry_now: bool = False,
        priority: int | None = None,
    ) -> list[PullResult]:
        """Plan, then fetch what is due. `priority` (e.g. a clinician's request) is asked for
        every study the query found, fetched now or before (`node_agent.priority`)."""
        todo, done = self.plan(query, retry_now=retry_now)
        if priority is not None:
            self.ask_priority([s for s, _why in todo] + done, priority)
        results = [
            PullResult(s, "skipped", self.skip_reason(s), self.local_count(s.study_uid))
            for s in done
        ]
        for study, _reason in todo:
            results.append(self.retrieve(study, progress))
        log.info(
            "pacs pull finished",
            found=len(todo) + len(done),
            fetched=sum(r.outcome == "fetched" for r in results),
            partial=sum(r.outcome == "partial" for r in results),
            failed=sum(r.outcome == "failed" for r in results),
            skipped=len(done),
        )
        return results


def pull_loop_step(config: AgentConfig, state: AgentState) -> None:
    """One scheduled pull: the last `lookback_days` of the configured modalities and keys."""
    section = config.pacs
    if section is None:
        return
    spool = Spool(config.agent.data_dir / "spool", state)
    try:
        Puller.from_config(config, state, spool).run(PullQuery.scheduled(section))
    except PullError as exc:
        log.warning("scheduled pacs pull failed; trying again next time", reason=str(exc))
