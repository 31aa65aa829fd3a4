"""Federated query/retrieve at the agent: forward a query, answer one, merge the answers.

Asking (B): `Requests.find` seals the query keys to the target organizations' site keys
(`wire.query`), submits them to the hub, long-polls for the sealed answers and opens them;
offline organizations come back as refusals with the age of their last contact.
`Requests.retrieve` asks the organization that listed a study to send it.

Answering (A): `Requests.answer_step` long-polls the hub for requests, opens each, checks the
`[answering]` policy, runs the C-FIND on the site's PACS and seals the matches back to the
requesting organization: identified, or, for a de-identified rule, pseudonymous as the
de-identified share would show them (`answer_deid`). A retrieve pulls the study from the PACS
at the highest priority (a pseudonymous UID mapped back first); the sharing policy then sends
it, identified or de-identified, through the usual pipeline.

Nothing here logs patient data: requests are named by id, studies by a hash.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.errors import CertsError
from certs.identity import site_identity_from_certificate
from certs.keys import verify_issued_by
from node_agent.answer_deid import LINK_DAYS, AnswerDeidentifier, AnswerDeidError
from node_agent.answer_policy import AnswerRule, decide
from node_agent.config import AgentConfig
from node_agent.dicom.patient_find import FindFailed, find_patient_studies
from node_agent.hubclient import HubClient, HubRefused, HubUnavailable
from node_agent.identity import AgentIdentity
from node_agent.state import AgentState
from wire.envelope import RecipientKey
from wire.errors import WireError
from wire.policy import SitePolicy
from wire.query import (
    Answer,
    QueryBody,
    QueryKeys,
    RetrieveOrder,
    SealedMessage,
    StudyMatch,
    new_request_id,
    open_message,
    parse_sealed,
    seal_message,
)
from wire.query_api import InboxItem, RequestKind, RequestStatus, TargetStatus

log = structlog.get_logger("hexchange.agent.requests")

REQUESTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS fed_requests (      -- asked by this site (no patient data)
    request_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    targets TEXT NOT NULL,                     -- JSON list of orgs
    created_at REAL NOT NULL,
    summary TEXT                               -- JSON: per org outcome and counts
);
CREATE TABLE IF NOT EXISTS remote_studies (    -- studies other orgs listed for this site
    study_uid TEXT NOT NULL,
    source_org TEXT NOT NULL,
    instances INTEGER,
    request_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (study_uid, source_org)
);
CREATE TABLE IF NOT EXISTS approvals (         -- requests waiting for a person here
    request_id TEXT PRIMARY KEY,
    requester_org TEXT NOT NULL,
    requester_site TEXT NOT NULL,
    sealed TEXT NOT NULL,                      -- still sealed: opened again on approval
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting'      -- waiting | approved | denied
);
"""


class RequestError(Exception):
    """A request could not be made; the message says what to do (no patient data)."""


@dataclass(frozen=True)
class Refusal:
    org: str
    kind: str  # refused | offline | no_match | awaiting_approval | failed | no_answer
    reason: str


@dataclass
class FindResult:
    request_id: str
    matches: list[StudyMatch] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # orgs that listed studies

    @property
    def definitive(self) -> bool:
        """Did any organization answer for its studies (matches, or "no match")?"""
        return bool(self.answered) or any(r.kind == "no_match" for r in self.refusals)


def age_text(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if when is None:
        return "it has never contacted the hub"
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds()))
    if seconds < 120:
        span = f"{seconds} s"
    elif seconds < 7200:
        span = f"{seconds // 60} min"
    elif seconds < 172800:
        span = f"{seconds // 3600} h"
    else:
        span = f"{seconds // 86400} days"
    return f"last contact {span} ago ({when:%Y-%m-%d %H:%M} UTC)"


def _refusal_of(target: TargetStatus, answer: Answer | None) -> Refusal | None:
    if target.state == "offline":
        return Refusal(target.org, "offline", f"{target.org} is offline: "
                       + age_text(target.last_contact_at))  # fmt: skip
    if target.state == "expired":
        return Refusal(target.org, "no_answer", f"{target.org} did not answer in time")
    if target.state in ("pending", "delivered"):
        return Refusal(target.org, "no_answer", f"{target.org} has not answered yet")
    if answer is None:
        return Refusal(target.org, "failed", f"{target.org}'s answer could not be opened")
    if answer.outcome in ("matches", "accepted"):
        return None
    reason = answer.reason or answer.outcome.replace("_", " ")
    return Refusal(target.org, answer.outcome, f"{target.org}: {reason}")


class Requests:
    def __init__(
        self,
        config: AgentConfig,
        identity: AgentIdentity,
        client: HubClient,
        state: AgentState,
        keys_for: Callable[[str], list[RecipientKey]],
        sharing_policy: Callable[[], object] | None = None,
        pull: Callable[[str], None] | None = None,
        *,
        pull_in_background: bool = True,
    ) -> None:
        """`pull`: fetch a study from the PACS into the spool (the sharing policy then sends
        it). The running agent pulls in the background and answers at once; a command that
        exits when done (`hexchange-agent request approve`) pulls before it answers."""
        self.config = config
        self.identity = identity
        self.client = client
        self.state = state
        self.keys_for = keys_for
        self.sharing_policy = sharing_policy
        self.pull = pull
        self.pull_in_background = pull_in_background
        self._answerers: tuple[float, list[str]] | None = None
        self.deid = AnswerDeidentifier(
            state, config.deidentify.key_file, list(config.deidentify.options)
        )
        with state.connect() as conn:
            conn.executescript(REQUESTS_SCHEMA)

    # -- sealing ----------------------------------------------------------------------------

    @property
    def _certificate_pem(self) -> str:
        return (self.identity.folder / "site.pem").read_text()

    def _seal(self, body: QueryBody | Answer, request_id: str, orgs: list[str]) -> bytes:
        recipients = [key for org in orgs for key in self.keys_for(org)]
        if not recipients:
            raise RequestError(f"no enrolled site key for {', '.join(orgs)}; ask the hub admin")
        return seal_message(
            body,
            request_id=request_id,
            sender_org=self.identity.org,
            sender_site=self.identity.site,
            recipients=recipients,
            signing_key=self.identity.signing_key,
            certificate_pem=self._certificate_pem,
        ).to_bytes()

    def _sender_key(self, message: SealedMessage) -> ec.EllipticCurvePublicKey:
        try:
            cert = x509.load_pem_x509_certificate(message.sender_certificate_pem.encode())
            verify_issued_by(cert, self.identity.ca_certificate, now=message.created_at)
            sender = site_identity_from_certificate(cert)
        except (CertsError, ValueError) as exc:
            raise WireError(f"sender certificate not issued by the network CA: {exc}") from exc
        if (sender.org, sender.site) != (message.sender_org, message.sender_site):
            raise WireError("the message's sender is not the certificate's site")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise WireError("sender certificate holds no EC key")
        return key

    def _open(self, sealed: str, kind: str, org: str) -> QueryBody | Answer:
        message = parse_sealed(sealed.encode(), kind)  # type: ignore[arg-type]
        if message.sender_org != org:
            raise WireError(f"a message said to come from {org} was sealed by another org")
        return open_message(
            message,
            key_id=self.identity.key_id,
            private_key=self.identity.encryption_key,
            sender_public_key=self._sender_key(message),
        )

    # -- asking (B) -------------------------------------------------------------------------

    def submit(
        self, kind: RequestKind, body: QueryBody, orgs: list[str], hold: bool
    ) -> RequestStatus:
        request_id = new_request_id()
        sealed = self._seal(body, request_id, orgs)
        try:
            status = self.client.submit_request(request_id, kind, orgs, sealed, hold)
        except HubUnavailable as exc:
            raise RequestError(f"the hub is unreachable ({exc}); try again") from exc
        except HubRefused as exc:
            raise RequestError(f"the hub refused the request: {exc.detail}") from exc
        with self.state.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO fed_requests (request_id, kind, targets, created_at) "
                "VALUES (?, ?, ?, ?)",
                (request_id, kind, json.dumps(orgs), time.time()),
            )
        return status

    def wait(self, status: RequestStatus, timeout: float) -> RequestStatus:
        """Long-poll until every target settled or `timeout` passed."""
        deadline = time.monotonic() + timeout
        seen = ""
        while not status.settled:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            status, seen = self.client.request_status(status.request_id, min(left, 25.0), seen)
        return status

    def collect(self, status: RequestStatus) -> FindResult:
        result = FindResult(status.request_id)
        opened: dict[str, Answer] = {}
        for sealed in status.answers:
            try:
                body = self._open(sealed.sealed, "answer", sealed.org)
            except WireError as exc:
                log.warning("answer refused", request=status.request_id, org=sealed.org,
                            reason=str(exc))  # fmt: skip
                continue
            if isinstance(body, Answer):
                opened[sealed.org] = body
        for target in status.targets:
            answer = opened.get(target.org)
            refusal = _refusal_of(target, answer)
            if refusal is not None:
                result.refusals.append(refusal)
            if answer is not None and answer.outcome == "matches":
                result.answered.append(target.org)
                # an org speaks for its own studies only
                result.matches += [m for m in answer.matches if m.source_org == target.org]
        self._remember(result)
        return result

    def _remember(self, result: FindResult) -> None:
        now = time.time()
        summary = {
            "matches": len(result.matches),
            "refusals": [{"org": r.org, "kind": r.kind} for r in result.refusals],
        }
        with self.state.connect() as conn:
            conn.execute(
                "UPDATE fed_requests SET summary = ? WHERE request_id = ?",
                (json.dumps(summary), result.request_id),
            )
            for match in result.matches:
                conn.execute(
                    "INSERT OR REPLACE INTO remote_studies "
                    "(study_uid, source_org, instances, request_id, seen_at) VALUES (?,?,?,?,?)",
                    (match.study_uid, match.source_org, match.instances, result.request_id, now),
                )

    def default_orgs(self) -> list[str]:
        """Whom to ask when not told: the organizations whose sharing policy sends studies
        (identified or de-identified) here (asked of the hub, kept for a minute)."""
        now = time.monotonic()
        if self._answerers is None or now - self._answerers[0] > 60:
            self._answerers = (now, self.client.answerers())
        return list(self._answerers[1])

    def find(
        self, keys: QueryKeys, orgs: list[str], timeout: float, hold: bool = False
    ) -> FindResult:
        """Ask `orgs` (default: `default_orgs`) for the patient's studies; merged matches and
        explicit refusals."""
        orgs = orgs or self.default_orgs()
        if not orgs:
            raise RequestError(
                "no organization shares studies with this one; ask the network "
                "admin, or set [query_retrieve] ask_orgs"
            )
        if not keys.identifies_patient:
            raise RequestError(
                "a federated query must name the patient (name, patient ID, accession number "
                "or study UID)"
            )
        keys = keys.model_copy(update={"complete_when_back": hold})
        status = self.submit("find", QueryBody(find=keys), orgs, hold)
        return self.collect(self.wait(status, timeout))

    def sources_of(self, study_uid: str) -> list[tuple[str, int | None]]:
        """The organizations that listed the study, the most recent first."""
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT source_org, instances FROM remote_studies WHERE study_uid = ? "
                "ORDER BY seen_at DESC",
                (study_uid,),
            ).fetchall()
        return [(str(row[0]), row[1]) for row in rows]

    def retrieve(self, study_uid: str, timeout: float = 10.0) -> tuple[FindResult, int | None]:
        """Ask an organization that listed the study to send it, one after the other until
        one accepts; (result, instances). The result's refusals are those of every org
        asked when none accepted."""
        sources = self.sources_of(study_uid)
        if not sources:
            raise RequestError(
                "no organization listed this study; query for the patient first (C-FIND)"
            )
        refusals: list[Refusal] = []
        body = QueryBody(retrieve=RetrieveOrder(study_uid=study_uid))
        for org, instances in sources:
            status = self.submit("retrieve", body, [org], hold=False)
            result = self.collect(self.wait(status, timeout))
            if not result.refusals:
                return result, instances
            refusals += result.refusals
        result.refusals = refusals
        return result, None

    # -- answering (A) ----------------------------------------------------------------------

    def answer_step(self) -> int:
        """One long poll for requests; each is answered before the next poll."""
        section = self.config.answering
        wait = section.wait_seconds if section else 20.0
        inbox = self.client.request_inbox(wait)
        for item in inbox.requests:
            self.handle(item)
        return len(inbox.requests)

    def _reply(self, item: InboxItem, answer: Answer, done: int | None = None) -> None:
        count = len(answer.matches) if answer.outcome == "matches" else answer.instances
        sealed = self._seal(answer, item.request_id, [item.requester_org])
        self.client.put_answer(item.request_id, answer.outcome, count, sealed, done)
        log.info("request answered", request=item.request_id, org=item.requester_org,
                 outcome=answer.outcome, count=count)  # fmt: skip

    def handle(self, item: InboxItem, approved: bool = False) -> Answer:
        try:
            body = self._open(item.sealed, "query", item.requester_org)
        except WireError as exc:
            log.warning("request refused: cannot open it", request=item.request_id,
                        reason=str(exc))  # fmt: skip
            answer = Answer(outcome="failed", reason="the request could not be opened here")
            self._reply(item, answer)
            return answer
        assert isinstance(body, QueryBody)
        policy = self.sharing_policy() if self.sharing_policy else None
        decision = decide(
            self.config.answering,
            policy,  # type: ignore[arg-type]
            item.requester_org,
            body.find,
            self.identity.org,
        )
        if decision.rule is None:
            answer = Answer(outcome="refused", reason=decision.reason)
        elif decision.outcome == "awaiting_approval" and not approved:
            self._hold_for_approval(item)
            answer = Answer(outcome="awaiting_approval", reason=decision.reason)
        elif body.find is not None:
            answer = self._find(decision.rule, body.find, item.requester_org)
        elif body.retrieve is not None:
            answer = self._retrieve(decision.rule, body.retrieve, item)
        else:
            answer = Answer(outcome="failed", reason="the request asks for nothing")
        self._reply(item, answer)
        return answer

    def _find(
        self, rule: AnswerRule, keys: QueryKeys, requester_org: str, *, as_shown: bool = True
    ) -> Answer:
        """The rule's matches on the PACS; for a de-identified rule (and `as_shown`) as the
        requester sees them: pseudonymous, their links remembered (`answer_deid`)."""
        pacs, section = self.config.pacs, self.config.answering
        if pacs is None or section is None:
            return Answer(outcome="failed", reason=f"{self.identity.org} has no PACS configured")
        deidentified = rule.mode == "deidentified" and as_shown
        if deidentified and keys.study_uids:  # the requester names the studies it was shown
            known = [
                uid
                for pseudonym in keys.study_uids
                if (uid := self.deid.links.original_of(requester_org, pseudonym))
            ]
            if not known and not (keys.patient_name or keys.patient_id or keys.accession_number):
                return Answer(
                    outcome="no_match", reason=f"no matching study at {self.identity.org}"
                )
            keys = keys.model_copy(update={"study_uids": known})
        try:
            matches = find_patient_studies(
                pacs, self.config.dicom.ae_title, section, rule, keys, self.identity.org
            )
        except FindFailed as exc:
            log.warning("federated c-find failed", reason=str(exc))
            return Answer(outcome="failed", reason=f"{self.identity.org}'s PACS did not answer")
        if deidentified and matches:
            policy = self.sharing_policy() if self.sharing_policy else None
            try:
                matches = self.deid.answer(
                    matches, policy if isinstance(policy, SitePolicy) else None, requester_org
                )
            except AnswerDeidError as exc:
                log.error("de-identified answer impossible", reason=str(exc))
                return Answer(
                    outcome="failed",
                    reason=f"{self.identity.org} cannot de-identify its answer now",
                )
        if not matches:
            return Answer(outcome="no_match", reason=f"no matching study at {self.identity.org}")
        return Answer(outcome="matches", matches=matches)

    def _retrieve(self, rule: AnswerRule, order: RetrieveOrder, item: InboxItem) -> Answer:
        """The study must be one this rule lets the requester see; then it is pulled. A
        de-identified rule's requester names the pseudonymous UID it was shown."""
        study_uid = order.study_uid
        if rule.mode == "deidentified":
            original = self.deid.links.original_of(item.requester_org, order.study_uid)
            if original is None:
                return Answer(
                    outcome="refused",
                    reason=f"{self.identity.org} gave {item.requester_org} no study with this "
                    f"UID in the last {LINK_DAYS} days; query for the patient again (C-FIND)",
                )
            study_uid = original
        answer = self._find(
            rule, QueryKeys(study_uids=[study_uid]), item.requester_org, as_shown=False
        )
        if answer.outcome != "matches":
            return Answer(outcome="refused" if answer.outcome == "no_match" else answer.outcome,
                          reason=answer.reason or "the study is not available")  # fmt: skip
        if self.pull is None:
            return Answer(outcome="failed", reason=f"{self.identity.org} cannot pull from PACS")
        instances = answer.matches[0].instances
        pull = self.pull
        if not self.pull_in_background:
            pull(study_uid)  # the study is in the spool before this process answers
        else:
            threading.Thread(
                target=lambda: pull(study_uid), name="federated-retrieve", daemon=True
            ).start()
        return Answer(outcome="accepted", instances=instances,
                      reason=f"{self.identity.org} is sending the study")  # fmt: skip

    def _hold_for_approval(self, item: InboxItem) -> None:
        with self.state.connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO approvals (request_id, requester_org, requester_site, "
                "sealed, created_at) VALUES (?, ?, ?, ?, ?)",
                (item.request_id, item.requester_org, item.requester_site, item.sealed,
                 time.time()),
            )  # fmt: skip

    def approve(self, request_id: str) -> Answer:
        """A person here approved a waiting request: run it and answer."""
        with self.state.connect() as conn:
            row = conn.execute(
                "SELECT * FROM approvals WHERE request_id = ? AND state = 'waiting'",
                (request_id,),
            ).fetchone()
        if row is None:
            raise RequestError(f"no request {request_id} is waiting for approval here")
        item = InboxItem(
            request_id=request_id,
            kind="find",
            requester_org=row["requester_org"],
            requester_site=row["requester_site"],
            created_at=dt.datetime.fromtimestamp(row["created_at"], dt.UTC),
            sealed=row["sealed"],
        )
        answer = self.handle(item, approved=True)
        with self.state.connect() as conn:
            conn.execute(
                "UPDATE approvals SET state = 'approved' WHERE request_id = ?", (request_id,)
            )
        return answer

    def waiting_approvals(self) -> list[dict[str, object]]:
        with self.state.connect() as conn:
            rows = conn.execute(
                "SELECT request_id, requester_org, requester_site, created_at FROM approvals "
                "WHERE state = 'waiting' ORDER BY created_at"
            ).fetchall()
        return [dict(r) for r in rows]
