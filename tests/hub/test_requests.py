"""Federated requests at the hub: opaque routing of sealed queries and answers, long polls,
offline targets, refusals, and no query key anywhere in the hub's rows, files or logs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import httpx
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.hub.conftest import EnrolledSite, Hub
from tests.hub.test_no_phi import _dump_database, _hits, _scan_files
from wire.query import (
    MAX_QUERY_BYTES,
    Answer,
    QueryBody,
    QueryKeys,
    StudyMatch,
    new_request_id,
    open_message,
    parse_sealed,
    seal_message,
)
from wire.query_api import Inbox, RequestStatus

PATIENT_NAME = "Quuxley^Zebediah"
PATIENT_ID = "PID-7731-QX"
BIRTH_DATE = "19470318"
NEEDLES = [PATIENT_NAME, "Quuxley", "Zebediah", PATIENT_ID, BIRTH_DATE]


def _keys() -> QueryKeys:
    return QueryKeys(
        level="STUDY", patient_name=PATIENT_NAME, patient_id=PATIENT_ID,
        patient_birth_date=BIRTH_DATE,
    )  # fmt: skip


def _seal(sender: EnrolledSite, body: QueryBody | Answer, request_id: str, to: list[str]) -> bytes:
    recipients = [key for org in to for key in sender.recipient_keys(org)]
    return seal_message(
        body,
        request_id=request_id,
        sender_org=sender.org,
        sender_site=sender.site,
        recipients=recipients,
        signing_key=sender.signing_key,
        certificate_pem=sender.response.certificate_pem,
    ).to_bytes()


def _sender_key(pem: str) -> ec.EllipticCurvePublicKey:
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _submit(
    site: EnrolledSite, request_id: str, body: bytes, to: list[str], **params: Any
) -> httpx.Response:
    return site.client.put(
        f"/node/v1/requests/{request_id}",
        params={"to": to, **params},
        content=body,
        headers={"content-type": "application/octet-stream"},
    )


def _inbox(site: EnrolledSite, wait: float = 0.0) -> Inbox:
    response = site.client.get("/node/v1/requests/inbox", params={"wait": wait}, timeout=wait + 10)
    assert response.status_code == 200, response.text
    return Inbox.model_validate(response.json())


def _status(site: EnrolledSite, request_id: str, **params: Any) -> httpx.Response:
    return site.client.get(f"/node/v1/requests/{request_id}", params=params, timeout=40)


def _open(site: EnrolledSite, sealed: str, kind: str) -> Any:
    message = parse_sealed(sealed.encode(), kind)  # type: ignore[arg-type]
    return open_message(
        message,
        key_id=site.own_key_id(),
        private_key=site.encryption_key,
        sender_public_key=_sender_key(message.sender_certificate_pem),
    )


def test_a_query_reaches_the_online_org_within_seconds_and_its_answer_comes_back(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    assert _inbox(site_a).requests == []  # A is online: it waits for requests
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])

    got: list[Inbox] = []
    started = time.monotonic()
    waiting = threading.Thread(target=lambda: got.append(_inbox(site_a, wait=20)))
    waiting.start()
    time.sleep(0.5)  # A's long poll is open at the hub
    submitted = _submit(site_b, request_id, body, ["org-a"])
    assert submitted.status_code == 200, submitted.text
    waiting.join(25)
    latency = time.monotonic() - started
    assert got and [r.request_id for r in got[0].requests] == [request_id]
    assert latency < 3.0, f"the long poll took {latency:.1f} s to hand over the request"
    item = got[0].requests[0]
    assert (item.requester_org, item.requester_site, item.kind) == ("org-b", "site-b", "find")

    opened = _open(site_a, item.sealed, "query")
    assert opened.find == _keys()
    answer = Answer(
        outcome="matches",
        matches=[
            StudyMatch(study_uid="1.2.3.4", patient_name=PATIENT_NAME, patient_id=PATIENT_ID,
                       patient_birth_date=BIRTH_DATE, source_org="org-a", modalities=["CT"])
        ],
    )  # fmt: skip
    # B waits for progress while A answers
    first = _status(site_b, request_id)
    mark = first.headers["X-Hexchange-Progress"]
    assert RequestStatus.model_validate(first.json()).targets[0].state == "delivered"
    answered: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answered.append(_status(site_b, request_id, wait=20, seen=mark))
    )
    poll.start()
    time.sleep(0.3)
    sealed_answer = _seal(site_a, answer, request_id, ["org-b"])
    put = site_a.client.put(
        f"/node/v1/requests/{request_id}/answer",
        params={"outcome": "matches", "count": 1},
        content=sealed_answer,
    )
    assert put.status_code == 204, put.text
    poll.join(25)
    status = RequestStatus.model_validate(answered[0].json())
    assert status.settled
    target = status.targets[0]
    assert (target.org, target.state, target.outcome, target.match_count) == (
        "org-a", "answered", "matches", 1
    )  # fmt: skip
    assert _open(site_b, status.answers[0].sealed, "answer") == answer

    # C, neither requester nor target, cannot read the request or answer it
    _, _, site_c = sites
    assert _status(site_c, request_id).status_code == 404
    refused = site_c.client.put(
        f"/node/v1/requests/{request_id}/answer", params={"outcome": "matches"},
        content=_seal(site_c, answer, request_id, ["org-b"]),
    )  # fmt: skip
    assert refused.status_code == 404


def test_an_offline_org_is_reported_with_its_last_contact_and_held_requests_wait(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, site_c = sites
    site_c.client.post(
        "/node/v1/heartbeat",
        json={"agent_version": "1", "queue_depth": 0, "bytes_pending": 0, "disk_free_bytes": 1},
    )
    _inbox(site_a)  # A online, C never waited for requests
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a", "org-c"])
    response = _submit(site_b, request_id, body, ["org-a", "org-c"])
    assert response.status_code == 200, response.text
    targets = {t.org: t for t in RequestStatus.model_validate(response.json()).targets}
    assert targets["org-a"].state == "pending"
    assert targets["org-c"].state == "offline"
    contact = targets["org-c"].last_contact_at
    assert contact is not None and dt.datetime.now(dt.UTC) - contact < dt.timedelta(minutes=1)
    assert _inbox(site_c).requests == []  # not held: C never gets it

    held_id = new_request_id()
    held = _seal(site_b, QueryBody(find=_keys()), held_id, ["org-c"])
    response = _submit(site_b, held_id, held, ["org-c"], hold="true")
    assert RequestStatus.model_validate(response.json()).targets[0].state == "pending"
    assert [r.request_id for r in _inbox(site_c).requests] == [held_id]  # C is back

    # submitting again is idempotent; other content under the same id is a conflict
    again = _submit(site_b, request_id, body, ["org-a", "org-c"])
    assert again.status_code == 200
    other = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
    assert _submit(site_b, request_id, other, ["org-a"]).status_code == 409


def test_bad_requests_are_refused_with_what_was_wrong(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
    wrong_id = _submit(site_b, new_request_id(), body, ["org-a"])
    assert wrong_id.status_code == 422 and "another request id" in wrong_id.json()["detail"]
    # A relays B's sealed query as its own request: the sender is not the caller
    relayed = _submit(site_a, request_id, body, ["org-c"])
    assert relayed.status_code == 422 and "another sender" in relayed.json()["detail"]
    unknown = _submit(site_b, request_id, body, ["org-zz"])
    assert unknown.status_code == 404 and "org-zz" in unknown.json()["detail"]
    itself = _submit(site_b, request_id, body, ["org-b"])
    assert itself.status_code == 422
    garbage = _submit(site_b, request_id, b"{not json", ["org-a"])
    assert garbage.status_code == 422 and "not acceptable" in garbage.json()["detail"]
    huge = _submit(site_b, request_id, b"x" * (MAX_QUERY_BYTES + 1), ["org-a"])
    assert huge.status_code == 413


def test_the_hub_keeps_no_query_key_in_rows_files_or_logs(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    with structlog.testing.capture_logs() as logs:
        _inbox(site_a)
        request_id = new_request_id()
        body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
        # control: the plaintext has the keys, the sealed bytes do not
        plain = QueryBody(find=_keys()).model_dump_json().encode()
        assert len(_hits(plain, NEEDLES)) >= len(NEEDLES)
        assert _hits(body, NEEDLES) == []
        assert _submit(site_b, request_id, body, ["org-a"]).status_code == 200
        item = _inbox(site_a).requests[0]
        answer = Answer(
            outcome="matches",
            matches=[StudyMatch(study_uid="1.2.3", patient_name=PATIENT_NAME,
                                patient_id=PATIENT_ID, source_org="org-a")],
        )  # fmt: skip
        response = site_a.client.put(
            f"/node/v1/requests/{item.request_id}/answer",
            params={"outcome": "matches", "count": 1},
            content=_seal(site_a, answer, request_id, ["org-b"]),
        )
        assert response.status_code == 204
        assert _status(site_b, request_id).status_code == 200
    dump = _dump_database(hub)
    assert request_id in dump and "request.submitted" in dump  # control: the rows are there
    assert _hits(dump.encode(), NEEDLES) == [], "query keys found in hub database rows"
    _, leaks = _scan_files(hub.settings.data_dir, NEEDLES)
    assert leaks == {}, f"query keys found in hub files: {leaks}"
    assert any(e.get("event") == "request routed" for e in logs)  # control: logs captured
    assert _hits(repr(logs).encode(), NEEDLES) == []


@pytest.mark.parametrize("role", ["clinician", "org-admin"])
def test_the_request_log_shows_both_orgs_what_was_asked_without_identity(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite], role: str
) -> None:
    site_a, site_b, _ = sites
    _inbox(site_a)
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a", "org-c"])
    assert _submit(site_b, request_id, body, ["org-a", "org-c"]).status_code == 200
    at_b = hub.person(f"b-{role}", role, "org-b").get("/api/v1/orgs/org-b/requests")
    assert at_b.status_code == 200, at_b.text
    (row,) = at_b.json()
    assert row["request_id"] == request_id and row["requester_org"] == "org-b"
    assert {t["org"]: t["state"] for t in row["targets"]} == {
        "org-a": "pending", "org-c": "offline"
    }  # fmt: skip
    person_a = hub.person(f"a-{role}", role, "org-a")
    (row_a,) = person_a.get("/api/v1/orgs/org-a/requests").json()
    assert [t["org"] for t in row_a["targets"]] == ["org-a"]  # not whom else B asked
    assert person_a.get("/api/v1/orgs/org-b/requests").status_code == 404
    assert _hits(at_b.content, NEEDLES) == []
    researcher = hub.person(f"r-{role}", "researcher", "org-b")
    assert researcher.get("/api/v1/orgs/org-b/requests").status_code == 403


def test_the_audit_log_records_each_step_for_both_orgs_and_the_log_shows_the_trail(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    """Submitted, taken, answered / refused: in the hub's audit chain for the asking and the
    asked organization, shown as each request's trail, with no patient identity."""
    site_a, site_b, _ = sites
    _inbox(site_a)
    answered, refused = new_request_id(), new_request_id()
    for request_id in (answered, refused):
        body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a", "org-c"])
        assert _submit(site_b, request_id, body, ["org-a", "org-c"]).status_code == 200
    taken = {item.request_id for item in _inbox(site_a).requests}
    assert taken == {answered, refused}
    for request_id, outcome in ((answered, "matches"), (refused, "refused")):
        answer = Answer(
            outcome=outcome,  # type: ignore[arg-type]
            matches=[StudyMatch(study_uid="1.2.3", patient_name=PATIENT_NAME,
                                patient_id=PATIENT_ID, source_org="org-a")]
            if outcome == "matches" else [],
        )  # fmt: skip
        response = site_a.client.put(
            f"/node/v1/requests/{request_id}/answer",
            params={"outcome": outcome, "count": len(answer.matches)},
            content=_seal(site_a, answer, request_id, ["org-b"]),
        )
        assert response.status_code == 204, response.text

    b_rows = {r["request_id"]: r for r in hub.person("b-clin", "clinician", "org-b").get(
        "/api/v1/orgs/org-b/requests").json()}  # fmt: skip
    a_response = hub.person("a-clin", "clinician", "org-a").get("/api/v1/orgs/org-a/requests")
    a_rows = {r["request_id"]: r for r in a_response.json()}

    def steps(row: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["action"], e["detail"]) for e in row["trail"]]

    assert steps(b_rows[answered]) == [
        ("request.submitted", "find to org-a,org-c; offline org-c"),
        ("request.taken", f"find taken by org-a/{site_a.site}"),
        ("request.answered", f"find org-a/{site_a.site}: matches, 1"),
    ]
    assert steps(a_rows[answered]) == [
        ("request.submitted", f"find from org-b/{site_b.site}"),
        ("request.taken", f"find taken by org-a/{site_a.site}"),
        ("request.answered", f"find org-a/{site_a.site}: matches, 1"),
    ]
    last = ("request.refused", f"find org-a/{site_a.site}: refused, 0")
    assert steps(a_rows[refused])[-1] == last
    assert all(e["actor"].startswith("site:") for e in b_rows[refused]["trail"])
    assert "org-c" not in a_response.text  # the asked org does not learn whom else B asked
    # in the hash-chained audit log itself, for both organizations
    with hub.session() as session:
        from sqlmodel import select

        from hub.models import AuditEvent

        events = session.exec(select(AuditEvent).where(AuditEvent.subject == refused)).all()
    assert {(e.action, e.org) for e in events} >= {
        ("request.submitted", "org-b"), ("request.submitted", "org-a"),
        ("request.submitted", "org-c"), ("request.taken", "org-a"), ("request.taken", "org-b"),
        ("request.refused", "org-a"), ("request.refused", "org-b"),
    }  # fmt: skip
    assert {e.outcome for e in events if e.action == "request.refused"} == {"refused"}
    dump = _dump_database(hub)
    assert _hits(dump.encode(), NEEDLES) == []
    assert _hits(a_response.content, NEEDLES) == []


def test_queries_go_by_default_to_the_orgs_that_share_studies_with_the_asker(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    site_a, site_b, _ = sites
    response = site_b.client.get("/node/v1/requests/answerers")
    assert response.status_code == 200, response.text
    assert response.json() == {"orgs": ["org-a", "org-c"]}
    before = site_a.client.get("/node/v1/requests/answerers").json()["orgs"]
    assert "org-d" not in before
    hub.enroll("org-d", "site-d")
    hub.allow("org-d", "site-d", "org-b")  # shares with another org only: not asked by org-a
    assert site_a.client.get("/node/v1/requests/answerers").json()["orgs"] == before
    # a de-identified share answers de-identified (issue 12): asked too
    hub.allow("org-d", "site-d", "org-a", mode="deidentified")
    assert site_a.client.get("/node/v1/requests/answerers").json()["orgs"] == sorted(
        [*before, "org-d"]
    )


def test_an_unanswered_request_is_offered_again_and_expired_ones_are_purged(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    from hub.requests import service
    from hub.requests.models import FederatedRequest, RequestTarget

    site_a, site_b, _ = sites
    _inbox(site_a)
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
    assert _submit(site_b, request_id, body, ["org-a"]).status_code == 200
    assert [r.request_id for r in _inbox(site_a).requests] == [request_id]
    assert _inbox(site_a).requests == []  # held by the site that took it...
    later = dt.datetime.now(dt.UTC) + service.LEASE + dt.timedelta(seconds=1)
    with hub.session() as session:  # ...until its lease ran out unanswered (agent crashed)
        again = service.take_inbox(session, "org-a", "site-a", now=later)
        assert [r.request_id for r in again.requests] == [request_id]
        expired = service.expire(session, dt.datetime.now(dt.UTC) + service.FIND_TTL * 2)
        assert expired == 1
    with hub.session() as session:
        row = session.get(FederatedRequest, request_id)
        target = session.get(RequestTarget, (request_id, "org-a"))
        assert row is not None and row.sealed_query == ""
        assert target is not None and target.state == "expired"
    late = site_a.client.put(
        f"/node/v1/requests/{request_id}/answer",
        params={"outcome": "no_match"},
        content=_seal(site_a, Answer(outcome="no_match"), request_id, ["org-b"]),
    )
    assert late.status_code == 409 and "expired" in late.json()["detail"]


def test_a_site_cannot_sweep_the_network_with_requests(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    from hub.errors import TooManyRequests
    from hub.requests import service

    _, site_b, _ = sites
    with hub.session() as session:
        for _ in range(2):
            request_id = new_request_id()
            body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
            service.submit(session, "org-b", "site-b", request_id, "find", ["org-a"], body,
                           per_hour=2)  # fmt: skip
        request_id = new_request_id()
        body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
        with pytest.raises(TooManyRequests, match="limit is 2"):
            service.submit(session, "org-b", "site-b", request_id, "find", ["org-a"], body,
                           per_hour=2)  # fmt: skip
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=1)
        service.submit(session, "org-b", "site-b", request_id, "find", ["org-a"], body,
                       per_hour=2, now=later)  # fmt: skip


def test_sites_of_the_asked_org_polling_at_once_never_both_take_a_request(
    hub: Hub, sites: tuple[EnrolledSite, EnrolledSite, EnrolledSite]
) -> None:
    """Six sites of org A take their inbox at the same moment: exactly one gets the request
    (an answer is worked out once, not by several sites in parallel)."""
    from hub.requests import service

    site_a, site_b, _ = sites
    assert _inbox(site_a).requests == []  # org A is online
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
    assert _submit(site_b, request_id, body, ["org-a"]).status_code == 200
    barrier = threading.Barrier(6)
    taken: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def take(n: int) -> None:
        try:
            with hub.session() as session:
                barrier.wait(10)
                inbox = service.take_inbox(session, "org-a", f"site-{n}")
                taken.extend((f"site-{n}", item.request_id) for item in inbox.requests)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [request for _, request in taken] == [request_id]
