"""An admin's work over the API, through the real listeners: sites and enrollment tokens,
revocation on the next request, the fleet from real heartbeats, metrics, signed policies with
versions and a dry run over real bundles, and the audit log scoped by organization."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization

from tests.hub.conftest import EnrolledSite, Hub, enroll_request
from wire.api import EnrollResponse, Heartbeat
from wire.facts import StudyFacts
from wire.policy import SitePolicy


def _enroll_with(hub: Hub, token: str, org: str, site: str) -> tuple[int, EnrolledSite | None]:
    attempt = enroll_request(token, org, site)
    response = hub.post_enroll(attempt.request)
    if response.status_code != 200:
        return response.status_code, None
    return 200, hub.site_from(attempt, EnrollResponse.model_validate(response.json()))


def test_an_org_admin_enrolls_a_site_over_the_api_and_revokes_it(hub: Hub) -> None:
    network = hub.person("netadmin", "network-admin")
    assert network.post("/api/v1/orgs", json={"id": "org-a", "name": "Clinic A"}).status_code == 201
    admin = hub.person("admin-a", "org-admin", "org-a")
    assert admin.post("/api/v1/orgs", json={"id": "org-x"}).status_code == 403
    assert admin.post("/api/v1/orgs/org-a/sites", json={"site": "clinic-a"}).status_code == 201
    issued = admin.post("/api/v1/orgs/org-a/sites/clinic-a/enrollment-tokens", json={})
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["enroll_command"].startswith("hexchange-agent enroll ")
    assert body["token"] in body["enroll_command"] and body["info"]["state"] == "unused"
    # a second token, cancelled before use, enrolls nobody
    spare = admin.post("/api/v1/orgs/org-a/sites/clinic-a/enrollment-tokens", json={}).json()
    cancelled = admin.delete(f"/api/v1/orgs/org-a/enrollment-tokens/{spare['info']['token_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert _enroll_with(hub, spare["token"], "org-a", "clinic-a")[0] == 403

    status, site = _enroll_with(hub, body["token"], "org-a", "clinic-a")
    assert status == 200 and site is not None
    states = {
        t["token_id"]: t["state"] for t in admin.get("/api/v1/orgs/org-a/enrollment-tokens").json()
    }
    assert states == {body["info"]["token_id"]: "used", spare["info"]["token_id"]: "cancelled"}
    shown = admin.get("/api/v1/orgs/org-a/sites/clinic-a").json()
    assert shown["certificate_expires_at"] and shown["revoked"] is False

    assert site.client.get("/node/v1/whoami").status_code == 200
    revoked = admin.post(
        "/api/v1/orgs/org-a/sites/clinic-a/revoke", json={"reason": "laptop stolen"}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert site.client.get("/node/v1/whoami").status_code == 403  # the very next request


def test_the_fleet_shows_what_agents_report_and_flags_silence(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a = sites[0]
    beat = Heartbeat(
        agent_version="0.1.0", queue_depth=3, oldest_item_age_s=42.0, bytes_pending=1234,
        disk_free_bytes=10**11, held_studies=2, quarantined_instances=1, inbound_waiting=4,
        policy_version=2, last_error="PACS refused JPEG 2000 (transfer syntax)",
    )  # fmt: skip
    for _ in range(3):
        assert (
            site_a.client.post("/node/v1/heartbeat", json=beat.model_dump(mode="json")).status_code
            == 204
        )
    admin = hub.person("admin-a", "org-admin", "org-a")
    rows = {r["site"]: r for r in admin.get("/api/v1/fleet").json()}
    assert set(rows) == {"site-a"}  # only their organization
    row = rows["site-a"]
    assert (row["queue_depth"], row["held_studies"], row["quarantined_instances"]) == (3, 2, 1)
    assert row["inbound_waiting"] == 4 and row["agent_version"] == "0.1.0" and not row["stale"]
    assert row["policy_version_current"] == 2 and row["certificate_expires_at"]
    history = admin.get("/api/v1/orgs/org-a/sites/site-a/heartbeats").json()
    assert len(history) == 1  # three beats within five minutes: one history row
    network = hub.person("netadmin", "network-admin")
    everyone = {r["site"]: r for r in network.get("/api/v1/fleet").json()}
    assert everyone["site-b"]["last_seen_at"] is None and everyone["site-b"]["stale"] is True
    metrics = network.get("/metrics")
    assert metrics.status_code == 200
    assert 'hexchange_site_queue_depth{org="org-a",site="site-a"} 3.0' in metrics.text
    assert "PACS refused" not in metrics.text  # free text never becomes a label or a value
    assert admin.get("/metrics").status_code == 403


def test_a_heartbeat_with_absurd_values_is_refused_at_the_wire(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a = sites[0]
    good = Heartbeat(agent_version="1", queue_depth=0, bytes_pending=0, disk_free_bytes=0)
    for field, value in (
        ("queue_depth", 10**30), ("last_error", "x\x1b[2J[red]boom"), ("agent_version", "[bold]1"),
        ("oldest_item_age_s", float("inf")),
    ):  # fmt: skip
        body = json.loads(good.model_dump_json()) | {field: value}
        response = site_a.client.post("/node/v1/heartbeat", content=json.dumps(body))
        assert response.status_code == 422, (field, response.text)


def test_policy_versions_diff_rollback_and_signed_for_the_agent(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a = sites[0]
    admin = hub.person("admin-a", "org-admin", "org-a")
    base = "/api/v1/orgs/org-a/sites/site-a/policy"
    before = admin.get(base).json()
    assert before["version"] == 2  # the `sites` fixture's two rules
    rules = [
        {"destination_org": "org-b", "mode": "identified", "match": {"modalities": ["CT"]}},
        {
            "destination_org": "org-c",
            "mode": "deidentified",
            "deid_options": ["retain-safe-private"],
            "match": {"body_parts": ["CHEST"], "min_age_years": 18},
        },
    ]  # fmt: skip
    bad = admin.put(
        base, json={"rules": [{"destination_org": "org-b", "mode": "sideways"}], "reason": "x"}
    )
    assert bad.status_code == 422 and "mode" in bad.json()["detail"]
    stale = admin.put(base, json={"rules": rules, "reason": "CT only", "expected_version": 1})
    assert stale.status_code == 422 and "changed meanwhile" in stale.json()["detail"]
    saved = admin.put(
        base, json={"rules": rules, "reason": "CT to B, adult chest to C", "expected_version": 2}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 3
    versions = admin.get(f"{base}/versions").json()
    assert [v["version"] for v in versions] == [3, 2, 1] and versions[0]["author"] == "user:admin-a"
    diff = admin.get(f"{base}/diff", params={"from": 2, "to": 3}).json()
    assert len(diff["added"]) == 2 and len(diff["removed"]) == 2

    # the agent's view: signed by the hub's key, which the agent got at enrollment
    served = SitePolicy.model_validate(site_a.client.get("/node/v1/policy").json())
    hub_key = serialization.load_pem_public_key(site_a.response.hub_receipt_public_key_pem.encode())
    assert served.version == 3 and served.verify(hub_key)  # type: ignore[arg-type]
    forged = served.model_copy(update={"rules": served.rules[:1]})
    assert not forged.verify(hub_key)  # type: ignore[arg-type]

    back = admin.post(f"{base}/rollback", json={"to_version": 2, "reason": "undo"})
    assert back.status_code == 200 and back.json()["version"] == 4
    assert back.json()["rules"] == admin.get(f"{base}/versions/2").json()["rules"]
    # another organization's policy is not theirs to see
    assert admin.get("/api/v1/orgs/org-b/sites/site-b/policy").status_code == 404


def test_dry_run_shows_what_a_version_would_have_sent(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a = sites[0]
    ct = StudyFacts(modalities=["CT"], body_parts=["CHEST"], patient_age_years=40)
    mr = StudyFacts(modalities=["MR"], body_parts=["HEAD"], patient_age_years=10)
    for facts in (ct, ct, mr):
        site_a.push(site_a.seal(b"x" * 100, ["org-b"], facts=facts))
    admin = hub.person("admin-a", "org-admin", "org-a")
    candidate = [
        {"destination_org": "org-c", "mode": "deidentified", "match": {"min_age_years": 18}},
        {
            "destination_org": "org-b",
            "mode": "identified",
            "match": {"study_description": "*chest*"},
        },
    ]
    response = admin.post(
        "/api/v1/orgs/org-a/sites/site-a/policy/dry-run", json={"rules": candidate, "days": 7}
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["bundles_considered"] == 3 and run["current_version"] == 2
    groups = {tuple(g["facts"]["modalities"]): g for g in run["groups"]}
    assert groups[("CT",)]["bundles"] == 2
    assert groups[("CT",)]["sent"] == [["org-b", "identified"]]
    assert {
        (r["destination_org"], r["mode"], r["certain"]) for r in groups[("CT",)]["candidate"]
    } == {
        ("org-c", "deidentified", True),
        ("org-b", "identified", False),  # needs the study description, which the hub never sees
    }
    assert {r["destination_org"] for r in groups[("MR",)]["candidate"]} == {"org-b"}
    assert run["summary"]["org-c deidentified"] == {"current": 0, "candidate": 2}
    assert admin.get("/api/v1/orgs/org-a/sites/site-a/policy").json()["version"] == 2  # unchanged


def test_every_api_action_is_audited_and_org_admins_see_only_theirs(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    admin_a = hub.person("admin-a", "org-admin", "org-a")
    admin_b = hub.person("admin-b", "org-admin", "org-b")
    assert admin_a.get("/api/v1/orgs/org-a/sites").status_code == 200
    assert admin_a.get("/api/v1/orgs/org-b/sites").status_code == 404
    events = admin_a.get("/api/v1/audit", params={"limit": 1000}).json()
    assert {e["org"] for e in events} == {"org-a"}
    reads = [e for e in events if e["action"] == "GET /api/v1/orgs/{org}/sites"]
    assert reads and reads[0]["actor"] == "user:admin-a" and reads[0]["address"] == "127.0.0.1"
    denied = admin_b.get("/api/v1/audit", params={"action": "GET"}).json()
    assert all(e["org"] == "org-b" for e in denied)
    network = hub.person("netadmin", "network-admin")
    everything = network.get("/api/v1/audit", params={"limit": 1000}).json()
    refused = [
        e
        for e in everything
        if e["subject"] == "/api/v1/orgs/org-b/sites" and e["actor"] == "user:admin-a"
    ]
    assert refused and refused[0]["outcome"] == "denied"
    fhir = admin_a.get("/api/v1/orgs/org-a/audit/fhir").json()
    assert fhir["resourceType"] == "Bundle" and fhir["entry"]
    resource = fhir["entry"][0]["resource"]
    assert resource["resourceType"] == "AuditEvent" and resource["action"] in "CRUDE"
    assert resource["recorded"] and resource["agent"][0]["who"]["display"]
    verified = network.get("/api/v1/audit/verify")
    assert verified.status_code == 200 and verified.json()["events"] > len(everything)


def test_the_hub_rechecks_the_rule_criteria_the_manifest_can_show(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    from hub import policy
    from wire.policy import PolicyMatch, PolicyRule

    site_a = sites[0]
    chest_only = PolicyRule(
        destination_org="org-b", mode="identified",
        match=PolicyMatch(body_parts=["CHEST"], study_description="*thorax*"),
    )  # fmt: skip
    with hub.session() as session:
        policy.replace_rules(session, "org-a", "site-a", [chest_only], actor="test")
    head = StudyFacts(modalities=["CT"], body_parts=["HEAD"])
    refused = site_a.put_header(site_a.seal(b"x" * 10, ["org-b"], facts=head))
    assert refused.status_code == 403 and "does not allow" in refused.json()["detail"]
    chest = StudyFacts(modalities=["CT"], body_parts=["CHEST"])  # description: not for the hub
    assert site_a.put_header(site_a.seal(b"x" * 10, ["org-b"], facts=chest)).status_code == 200


def test_the_bundle_index_shows_each_organization_what_it_sent_and_received(
    hub: Hub, sites: tuple[EnrolledSite, ...]
) -> None:
    site_a, site_b, _ = sites
    to_b = site_a.seal(b"a" * 50, ["org-b"], facts=StudyFacts(modalities=["MR"]))
    site_a.push(to_b)
    site_b.push(site_b.seal(b"b" * 50, ["org-a"]))
    clinician_b = hub.person("dr-b", "clinician", "org-b")
    got = clinician_b.get("/api/v1/orgs/org-b/bundles", params={"direction": "received"}).json()
    assert [b["bundle_id"] for b in got] == [to_b.bundle_id]
    assert got[0]["sender_org"] == "org-a" and got[0]["modalities"] == ["MR"]
    both = clinician_b.get("/api/v1/orgs/org-b/bundles").json()
    assert len(both) == 2 and both[0]["created_at"] >= both[1]["created_at"]
    only_mr = clinician_b.get("/api/v1/orgs/org-b/bundles", params={"modality": "MR"}).json()
    assert [b["bundle_id"] for b in only_mr] == [to_b.bundle_id]
    assert clinician_b.get("/api/v1/orgs/org-c/bundles").status_code == 404
    admin_c = hub.person("admin-c", "org-admin", "org-c")
    assert admin_c.get("/api/v1/orgs/org-c/bundles").json() == []
