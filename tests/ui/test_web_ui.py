"""The hub's web UI in a real browser (Debian's chromium) against a real hub on loopback:
sign-in per role, enrollment with the token the page shows, policy edit/dry run/save,
revoke, a silent site going stale, escaping of what sites report, personal API tokens."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from playwright.sync_api import Page, expect
from sqlmodel import select

from hub.fleet import service as fleet
from hub.models import QuotaRefusal, Site
from hub.principals import Principal
from hub.sites import service as sites
from tests.hub.conftest import EnrolledSite, Hub, enroll_request
from tests.ui.conftest import PASSWORD, days_ago, screenshot, sign_in
from wire.api import EnrollResponse, Heartbeat
from wire.facts import StudyFacts
from wire.policy import PixelPolicy

HOSTILE = '<img src=x onerror="document.title=1">'


def make_site(hub: Hub, org: str, site: str, name: str = "") -> None:
    with hub.session() as session:
        sites.create_site(session, hub.registry(), Principal.cli(), org, site, name)


def beat(site: EnrolledSite, **fields: object) -> None:
    body = {"agent_version": "0.1.0", "queue_depth": 2, "bytes_pending": 4096,
            "disk_free_bytes": 50 * 2**30} | fields  # fmt: skip
    response = site.client.post("/node/v1/heartbeat", json=Heartbeat(**body).model_dump())  # type: ignore[arg-type]
    assert response.status_code == 204, response.text


def enroll_from_page(page: Page, hub: Hub, org: str, site: str) -> EnrolledSite:
    """Issue a token on the site's page, then enroll an agent with exactly what it shows."""
    page.goto(f"{hub.public_url}/ui/orgs/{org}/sites/{site}")
    page.get_by_role("button", name="Issue enrollment token").click()
    token = page.locator("#enroll-token").inner_text().strip()
    command = page.locator("#enroll-command").inner_text()
    assert command.startswith("hexchange-agent enroll ") and command.endswith(f"--token {token}")
    attempt = enroll_request(token, org, site)
    response = hub.post_enroll(attempt.request)
    assert response.status_code == 200, response.text
    return hub.site_from(attempt, EnrollResponse.model_validate(response.json()))


def test_anonymous_visitor_is_sent_to_sign_in_and_a_wrong_password_is_refused(
    page: Page, ui_hub: Hub
) -> None:
    page.goto(ui_hub.public_url + "/ui/fleet")
    expect(page).to_have_url(ui_hub.public_url + "/ui/login")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    screenshot(page, "sign-in")


def test_each_role_sees_only_what_it_may(page: Page, ui_hub: Hub) -> None:
    admin_pages = ["Fleet", "Quarantine", "Sites", "Transfers", "Requests", "Collections"]
    expected_nav = {
        "nadia": [*admin_pages, "Audit", "People", "API tokens"],
        "olga": [*admin_pages, "Audit", "People", "API tokens"],
        "carl": ["Sites", "Transfers", "Requests", "API tokens"],
        "rita": ["Collections", "API tokens"],
    }
    for username, nav in expected_nav.items():
        sign_in(page, ui_hub, username)
        links = page.get_by_role("navigation", name="Main").get_by_role("link")
        expect(links).to_have_text(nav)
        if username == "nadia":
            page.goto(ui_hub.public_url + "/ui/sites")
            expect(page.locator("main")).to_contain_text("org-b")
        if username == "olga":
            page.goto(ui_hub.public_url + "/ui/sites")
            expect(page.locator("main")).not_to_contain_text("org-b")
            response = page.goto(ui_hub.public_url + "/ui/orgs/org-b/sites/lab")
            assert response is not None and response.status == 404
            expect(page.locator("main")).not_to_contain_text("B's lab")
        if username in ("carl", "rita"):
            response = page.goto(ui_hub.public_url + "/ui/fleet")
            assert response is not None and response.status == 403
            expect(page.locator("main")).to_contain_text("your role may not do this")
            response = page.goto(ui_hub.public_url + "/ui/people")
            assert response is not None and response.status == 403
            response = page.goto(ui_hub.public_url + "/ui/quarantine")
            assert response is not None and response.status == 403
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(ui_hub.public_url + "/ui/login")
        page.goto(ui_hub.public_url + "/ui/me/tokens")  # the session really ended
        expect(page).to_have_url(ui_hub.public_url + "/ui/login")


def test_issue_token_enroll_and_watch_the_site_in_the_fleet(page: Page, ui_hub: Hub) -> None:
    make_site(ui_hub, "org-a", "clinic-1", "Clinic one")
    sign_in(page, ui_hub, "olga")
    enrolled = enroll_from_page(page, ui_hub, "org-a", "clinic-1")
    with ui_hub.session() as session:  # three days of history, as a running agent leaves
        for hours in range(72, 0, -6):
            fleet.record_heartbeat(
                session, "org-a", "clinic-1",
                Heartbeat(agent_version="0.1.0", queue_depth=hours % 17,
                          bytes_pending=hours * 10**6, disk_free_bytes=2**35),
                now=days_ago(hours / 24),
            )  # fmt: skip
    beat(enrolled, last_error=HOSTILE)

    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-1")
    expect(page.locator("main dl")).to_contain_text(f"{enrolled.serial:x}"[:8])
    expect(page.locator("td", has_text="used")).to_have_count(1)  # the one-time token is spent
    expect(page.locator("svg.chart polyline.queue")).to_have_count(1)
    assert len(page.locator("svg.chart polyline.queue").get_attribute("points").split()) >= 12  # type: ignore[union-attr]
    screenshot(page, "site")

    page.goto(ui_hub.public_url + "/ui/fleet?q=clinic-1")
    row = page.locator('tr[data-site="org-a/clinic-1"]')
    expect(row).to_contain_text("0.1.0")
    expect(row).to_contain_text("ok")
    expect(row.locator("td.err")).to_have_text(HOSTILE)  # shown as text, never as markup
    expect(row.locator("img")).to_have_count(0)
    assert page.title() != "1"
    with ui_hub.session() as session:  # as hub/quotas.py records a refused request
        session.add(QuotaRefusal(org="org-a", site="clinic-1", limit_name="bytes_per_day",
                                 detail="over 10 GiB today", refusals=3))  # fmt: skip
        session.commit()
    page.reload()
    expect(row.locator("td.err")).to_contain_text("quota: bytes_per_day x3")
    page.get_by_role("link", name="Queue").click()  # sortable
    expect(page.locator("th[aria-sort]")).to_contain_text("Queue")


def test_a_site_that_stops_beating_goes_stale(page: Page, ui_hub: Hub) -> None:
    make_site(ui_hub, "org-a", "clinic-2")
    sign_in(page, ui_hub, "olga")
    enrolled = enroll_from_page(page, ui_hub, "org-a", "clinic-2")
    beat(enrolled)
    page.goto(ui_hub.public_url + "/ui/fleet")
    expect(page.locator('tr[data-site="org-a/clinic-2"]')).not_to_have_class("stale")
    with ui_hub.session() as session:  # the agent stopped ten minutes ago
        row = session.exec(select(Site).where(Site.org == "org-a", Site.site == "clinic-2")).one()
        row.last_seen_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        session.add(row)
        session.commit()
    page.get_by_label("Stale only").check()
    page.get_by_role("button", name="Apply").click()
    stale = page.locator('tr[data-site="org-a/clinic-2"]')
    expect(stale).to_have_class("stale")
    expect(stale.locator(".badge")).to_have_text("stale")
    expect(page.locator("tbody tr.stale")).to_have_count(page.locator("tbody tr").count())


def test_edit_dry_run_save_and_roll_back_a_policy(page: Page, ui_hub: Hub) -> None:
    make_site(ui_hub, "org-a", "clinic-3")
    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-3/policy")
    expect(page.locator("#current-version")).to_have_text("0")
    page.get_by_label("Destination organization or collection").fill("org-nowhere")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#policy-error")).to_contain_text("'org-nowhere' is not part of")

    page.get_by_label("Destination organization or collection").first.fill("org-b")
    page.get_by_label("Mode").first.select_option("deidentified")
    page.get_by_label("Match modalities").first.fill("ct, MR")
    pixel = get_args(PixelPolicy)[-1]  # the choices are the wire model's
    page.get_by_label("Pixel policy").first.select_option(pixel)
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-run")).to_be_visible()
    expect(page.locator("#current-version")).to_have_text("0")  # a dry run saves nothing

    page.get_by_label("Reason for the change (audited)").fill("share CT and MR with B")
    page.get_by_role("button", name="Save as version 1").click()
    expect(page.locator("#current-version")).to_have_text("1")
    expect(page.get_by_label("Match modalities").first).to_have_value("CT, MR")
    with ui_hub.session() as session:
        from hub.policy import service as policies

        saved = policies.current(session, "org-a", "clinic-3")
    assert [(r.destination_org, r.mode, r.match.modalities, r.pixel_policy)
            for r in saved.rules] == [("org-b", "deidentified", ["CT", "MR"], pixel)]  # fmt: skip
    page.get_by_role("link", name="Diff with 0").click()
    expect(page.locator("ul.diff .added")).to_contain_text("org-b")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to version 0").click()
    expect(page.locator("#current-version")).to_have_text("2")
    expect(page.locator("#versions")).to_contain_text("roll back to 0")


def test_clinician_cannot_post_with_a_forged_form(page: Page, ui_hub: Hub) -> None:
    """No CSRF token, no action: a page elsewhere cannot make a signed-in admin act."""
    make_site(ui_hub, "org-a", "clinic-4")
    sign_in(page, ui_hub, "olga")
    response = page.request.post(
        ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-4/remove", form={"csrf_token": "x"}
    )
    assert response.status == 403
    with ui_hub.session() as session:
        assert sites.get_site(session, ui_hub.registry(), Principal.cli(), "org-a", "clinic-4")


def test_revoke_a_site(page: Page, ui_hub: Hub) -> None:
    make_site(ui_hub, "org-a", "clinic-5")
    sign_in(page, ui_hub, "olga")
    enrolled = enroll_from_page(page, ui_hub, "org-a", "clinic-5")
    beat(enrolled)
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-5")
    page.get_by_label("Reason").fill("laptop stolen")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke certificate").click()
    expect(page.locator("main dl .badge")).to_have_text("revoked")
    assert ui_hub.registry().is_revoked(enrolled.serial)
    quiet = {"agent_version": "0.1.0", "queue_depth": 0, "bytes_pending": 0, "disk_free_bytes": 1}
    response = enrolled.client.post("/node/v1/heartbeat", json=quiet)
    assert response.status_code in (401, 403)
    page.goto(ui_hub.public_url + "/ui/fleet")
    expect(page.locator('tr[data-site="org-a/clinic-5"] .badge')).to_have_text("revoked")


def test_personal_api_token_is_shown_once_and_can_be_revoked(page: Page, ui_hub: Hub) -> None:
    sign_in(page, ui_hub, "rita")
    expect(page).to_have_url(ui_hub.public_url + "/ui/collections")  # a researcher's first page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    expect(page).to_have_url(ui_hub.public_url + "/ui/me/tokens")
    page.get_by_label("Name").fill("notebook")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").inner_text().strip()
    me = page.request.get(ui_hub.public_url + "/api/v1/me",
                          headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert me.ok and me.json()["username"] == "rita"
    page.goto(ui_hub.public_url + "/ui/me/tokens")
    expect(page.locator("main")).not_to_contain_text(secret)  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke token notebook").click()
    expect(page.locator("tr", has_text="notebook")).to_contain_text("revoked")
    again = page.request.get(ui_hub.public_url + "/api/v1/me",
                             headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert again.status == 401


def test_audit_search_shows_the_chain_status(page: Page, ui_hub: Hub) -> None:
    sign_in(page, ui_hub, "nadia")
    page.goto(ui_hub.public_url + "/ui/audit")
    expect(page.locator("#chain")).to_contain_text("verified")
    page.get_by_label("Actor").fill("user:nadia")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("main tbody tr")
    expect(rows.first).to_contain_text("user:nadia")
    assert all("user:nadia" in text for text in rows.all_inner_texts())
    screenshot(page, "audit")


def test_the_site_sends_under_the_saved_policy_and_a_dry_run_shows_the_change(
    page: Page, ui_hub: Hub
) -> None:
    make_site(ui_hub, "org-a", "clinic-6")
    receiver = ui_hub.enroll("org-b", "lab-6")  # publishes org-b's keys
    assert receiver.org == "org-b"
    sign_in(page, ui_hub, "olga")
    sender = enroll_from_page(page, ui_hub, "org-a", "clinic-6")
    ct = StudyFacts(modalities=["CT"])
    refused = sender.put_header(sender.seal(b"study" * 50, ["org-b"], mode="deidentified",
                                            facts=ct))  # fmt: skip
    assert refused.status_code >= 400  # deny by default: no rule yet

    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-6/policy")
    page.get_by_label("Destination organization or collection").fill("org-b")
    page.get_by_label("Match modalities").fill("CT")
    page.get_by_label("Reason for the change (audited)").fill("CT to B, de-identified")
    page.get_by_role("button", name="Save as version 1").click()
    expect(page.locator("#current-version")).to_have_text("1")

    sent = sender.seal(b"study" * 50, ["org-b"], mode="deidentified", facts=ct)
    sender.push(sent)

    page.goto(ui_hub.public_url + "/ui/transfers?org=org-a&direction=sent")
    row = page.locator("main tbody tr", has_text="org-a/clinic-6")
    expect(row).to_contain_text("org-b")
    expect(row).to_contain_text("deidentified")
    expect(row).to_contain_text("complete")
    screenshot(page, "transfers")

    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-6/policy")
    page.get_by_label("Match modalities").first.fill("MR")
    page.get_by_role("button", name="Dry run").click()
    changed = page.locator("#dry-run tbody tr.changed")
    expect(changed).to_have_count(1)
    expect(changed).to_contain_text("CT")
    expect(changed.locator("td").nth(3)).to_contain_text("org-b (deidentified)")  # current
    expect(changed.locator("td").nth(4)).to_have_text("nothing")  # these rules
    expect(page.locator("#current-version")).to_have_text("1")
    screenshot(page, "policy")


def test_a_real_agent_enrolls_with_the_command_the_page_shows(
    page: Page, ui_hub: Hub, tmp_path: Path
) -> None:
    make_site(ui_hub, "org-a", "clinic-7")
    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-7")
    page.get_by_role("button", name="Issue enrollment token").click()
    command = shlex.split(page.locator("#enroll-command").inner_text())
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "agent"}"\nname = "org-a/clinic-7"\n\n'
        f'[hub]\npublic_url = "{ui_hub.public_url}"\nnode_url = "{ui_hub.node_url}"\n'
        f'ca_file = "{ui_hub.ca_file}"\n\n'
        '[dicom]\nae_title = "CLINIC7"\nhost = "127.0.0.1"\nport = 11117\n'
    )
    assert command[:3] == ["hexchange-agent", "enroll", "--config"]
    command[0] = str(Path(sys.executable).parent / "hexchange-agent")
    command[3] = str(config)  # the page names the packaged path; this agent lives here
    result = subprocess.run(command, capture_output=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-500:]
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-7")
    expect(page.locator("main dl")).to_contain_text("enrolled")
    expect(page.locator("td", has_text="used")).to_have_count(1)


UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
  .map(e => e.name || e.id)"""


def test_pages_are_labelled_keyboard_reachable_and_validate_as_you_type(
    page: Page, ui_hub: Hub
) -> None:
    make_site(ui_hub, "org-a", "clinic-8")
    sign_in(page, ui_hub, "nadia")
    for path in ("/ui/fleet", "/ui/sites", "/ui/orgs/org-a/sites/clinic-8",
                 "/ui/orgs/org-a/sites/clinic-8/policy", "/ui/transfers", "/ui/audit",
                 "/ui/people", "/ui/me/tokens"):  # fmt: skip
        response = page.goto(ui_hub.public_url + path)
        assert response is not None and response.status == 200, path
        assert page.evaluate(UNLABELLED) == [], f"form fields without a label on {path}"
        assert page.locator("h1").count() == 1, path
        if path == "/ui/fleet":
            screenshot(page, "fleet")  # late in the module: every site made so far
    page.keyboard.press("Tab")  # the first stop skips the navigation
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-8/policy")
    destination = page.get_by_label("Destination organization or collection")
    destination.press_sequentially("Org B")
    assert destination.evaluate("e => e.matches(':invalid')")  # flagged while typing
    page.get_by_role("button", name="Dry run").click()
    assert page.url.endswith("/policy")  # the browser kept the form: nothing was sent
    destination.fill("org-b")
    assert destination.evaluate("e => e.validity.valid")


def test_sign_in_from_another_site_is_refused(page: Page, ui_hub: Hub) -> None:
    response = page.request.post(
        ui_hub.public_url + "/ui/login",
        form={"username": "olga", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert response.status == 403
    assert "set-cookie" not in response.headers


def test_cancel_an_unused_token_and_remove_a_site(page: Page, ui_hub: Hub) -> None:
    make_site(ui_hub, "org-a", "clinic-9")
    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-9")
    page.get_by_role("button", name="Issue enrollment token").click()
    token = page.locator("#enroll-token").inner_text().strip()
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-9")
    expect(page.locator("main")).not_to_contain_text(token)  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel token").click()
    expect(page.locator("td", has_text="cancelled")).to_have_count(1)
    refused = ui_hub.post_enroll(enroll_request(token, "org-a", "clinic-9").request)
    assert refused.status_code == 403

    page.once("dialog", lambda dialog: dialog.dismiss())  # asked first; "no" keeps the site
    page.get_by_role("button", name="Remove site").click()
    expect(page).to_have_url(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-9")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove site").click()
    expect(page).to_have_url(ui_hub.public_url + "/ui/sites")
    expect(page.locator("main")).not_to_contain_text("clinic-9")


def test_quarantine_shows_counts_and_reasons_per_site_and_no_item_text(
    page: Page, ui_hub: Hub, tmp_path: Path
) -> None:
    """The agent's own heartbeat (built from a real state database whose items were quarantined
    through its ledger) reaches the page as counts per kind of reason; the reasons' text, which
    can name what was found, stays at the site."""
    from node_agent.app import build_heartbeat
    from node_agent.ledger import Ledger
    from node_agent.state import AgentState
    from wire.api import QuarantineReason

    state = AgentState(tmp_path / "agent" / "state.db")
    ledger = Ledger(state)
    with state.transaction() as conn:
        for n in range(3):
            conn.execute(
                "INSERT INTO instances(sop_uid, study_uid, path, sha256, size, received_at) "
                "VALUES (?, '1.2.9', ?, 'x', 1, 0)",
                (f"1.2.9.{n}", f"/spool/{n}.dcm"),
            )
    secret = "PatientName Quixote^Alonso found in ImageComments"
    ledger.quarantine_instance("1.2.9.0", secret, None, QuarantineReason.VERIFICATION)
    ledger.quarantine_instance("1.2.9.1", secret, None, QuarantineReason.VERIFICATION)
    ledger.quarantine_instance(
        "1.2.9.2", "pixel scrub: text left", None, QuarantineReason.BURNED_IN_TEXT
    )
    ledger.delivery_downloading("e" * 32, "org-b/lab")
    ledger.delivery_failed("e" * 32, "the local PACS refused every instance")
    report = build_heartbeat(state, tmp_path, None)
    assert secret not in report.model_dump_json()

    make_site(ui_hub, "org-a", "clinic-q", "Quarantine clinic")
    sign_in(page, ui_hub, "olga")
    enrolled = enroll_from_page(page, ui_hub, "org-a", "clinic-q")
    response = enrolled.client.post("/node/v1/heartbeat", json=report.model_dump(mode="json"))
    assert response.status_code == 204, response.text

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Quarantine").click()
    row = page.locator('tr[data-site="org-a/clinic-q"]')
    expect(row).to_contain_text("4")
    expect(row).to_contain_text("verification: 2")
    expect(row).to_contain_text("burned-in-text: 1")
    expect(row).to_contain_text("delivery: 1")
    reasons = page.locator("table.reasons")
    expect(reasons.locator('tr[data-reason="verification"]')).to_contain_text(
        "identifying data was found after de-identification"
    )
    expect(page.locator("main")).not_to_contain_text("Quixote")
    expect(page.locator("main")).not_to_contain_text("org-b")  # olga sees her organization only
    screenshot(page, "quarantine")


def test_a_real_agent_sends_under_the_policy_saved_on_the_page_and_goes_stale_when_killed(
    page: Page, ui_hub: Hub, tmp_path: Path
) -> None:
    """A real `hexchange-agent run`, enrolled with the page's command and reporting every
    second, shows as ok; a rule saved on the policy page makes it send a study a modality
    stored into it (dcmtk storescu), which the transfers page shows complete; killed with
    SIGKILL, its row turns stale after six missed reports."""
    import os
    import signal
    import time

    from tests.factories.dicom import make_ct_study
    from tests.federation import storescu
    from tests.ports import free_port

    make_site(ui_hub, "org-a", "clinic-k")
    ui_hub.enroll("org-b", "lab-k")  # org B's keys are published: it can receive
    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-k")
    page.get_by_role("button", name="Issue enrollment token").click()
    command = shlex.split(page.locator("#enroll-command").inner_text())
    dicom_port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "agent"}"\nname = "org-a/clinic-k"\n'
        "heartbeat_seconds = 1\n\n"
        f'[hub]\npublic_url = "{ui_hub.public_url}"\nnode_url = "{ui_hub.node_url}"\n'
        f'ca_file = "{ui_hub.ca_file}"\n\n'
        f'[dicom]\nae_title = "CLINICK"\nhost = "127.0.0.1"\nport = {dicom_port}\n\n'
        "[pipeline]\nquiet_period_seconds = 1\npolicy_poll_seconds = 1\n"
    )
    agent_bin = str(Path(sys.executable).parent / "hexchange-agent")
    command[0], command[3] = agent_bin, str(config)
    enrolled = subprocess.run(command, capture_output=True, check=False, timeout=60)
    assert enrolled.returncode == 0, enrolled.stderr.decode()[-500:]

    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [agent_bin, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )

    def until(what: str, done: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    row = page.locator('tr[data-site="org-a/clinic-k"]')
    try:

        def reported() -> bool:
            page.goto(ui_hub.public_url + "/ui/fleet?q=clinic-k")
            return row.locator(".badge").inner_text() == "ok"

        until("the agent never reported", reported)
        expect(row).to_contain_text("0.1.0")  # the agent's version, from its own report

        page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-k/policy")
        page.get_by_label("Destination organization or collection").fill("org-b")
        page.get_by_label("Mode").first.select_option("identified")
        page.get_by_label("Match modalities").fill("CT")
        page.get_by_label("Reason for the change (audited)").fill("priors to the archive")
        page.get_by_role("button", name="Save as version 1").click()
        expect(page.locator("#current-version")).to_have_text("1")

        study = make_ct_study(tmp_path / "study", instances=3)
        sent = storescu(dicom_port, "CLINICK", study.files)
        assert sent.returncode == 0, sent.stderr.decode()[-500:]
        line = page.locator("main tbody tr", has_text="org-a/clinic-k")

        def delivered() -> bool:
            page.goto(ui_hub.public_url + "/ui/transfers?org=org-a&direction=sent")
            return line.count() == 1 and "complete" in line.inner_text()

        until("the study never reached the hub under the saved rule", delivered)
        expect(line).to_contain_text("org-b")
        expect(line).to_contain_text("identified")
        expect(line).to_contain_text("CT")
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        log.close()
    killed = time.monotonic()
    page.goto(ui_hub.public_url + "/ui/fleet?q=clinic-k")
    while row.locator(".badge").inner_text() != "stale":
        assert time.monotonic() - killed < 30, "the killed agent's site never went stale"
        time.sleep(1)
        page.goto(ui_hub.public_url + "/ui/fleet?q=clinic-k")
    assert time.monotonic() - killed >= 4  # not before several reports were missed
    expect(row).to_have_class("stale")


def test_the_request_log_shows_who_asked_whom_and_never_the_patient(
    page: Page, ui_hub: Hub
) -> None:
    """A federated query from org B's lab to org A, answered by A's agent, appears in both
    organizations' request logs with its state and count; the patient never does (the query
    keys are sealed between the agents)."""
    from tests.hub.test_requests import _inbox, _keys, _seal, _submit
    from wire.query import Answer, QueryBody, StudyMatch, new_request_id

    make_site(ui_hub, "org-a", "clinic-r")
    sign_in(page, ui_hub, "olga")
    site_a = enroll_from_page(page, ui_hub, "org-a", "clinic-r")
    sign_in(page, ui_hub, "nadia")
    site_b = enroll_from_page(page, ui_hub, "org-b", "lab")
    assert _inbox(site_a).requests == []  # A's agent is online (waiting for requests)
    request_id = new_request_id()
    body = _seal(site_b, QueryBody(find=_keys()), request_id, ["org-a"])
    submitted = _submit(site_b, request_id, body, ["org-a"])
    assert submitted.status_code == 200, submitted.text
    [item] = _inbox(site_a, wait=5).requests
    keys = _keys()
    answer = Answer(
        outcome="matches",
        matches=[
            StudyMatch(study_uid=f"1.2.3.{n}", patient_name=keys.patient_name,
                       patient_id=keys.patient_id, source_org="org-a", modalities=["CT"])
            for n in range(3)
        ],
    )  # fmt: skip
    put = site_a.client.put(
        f"/node/v1/requests/{item.request_id}/answer",
        params={"outcome": "matches", "count": 3},
        content=_seal(site_a, answer, request_id, ["org-b"]),
    )
    assert put.status_code == 204, put.text

    for username in ("carl", "olga"):  # a clinician and the admin of the asked organization
        sign_in(page, ui_hub, username)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Requests").click()
        line = page.locator(f'tr[data-request="{request_id}"][data-target="org-a"]')
        expect(line).to_contain_text("org-b/lab")
        expect(line).to_contain_text("answered")
        expect(line).to_contain_text("matches")
        expect(line.locator("td.num")).to_have_text("3")
        trail = page.locator(f'tr[data-trail="{request_id}"]')  # from the hub's audit log
        expect(trail).to_contain_text("request.submitted")
        expect(trail).to_contain_text("request.answered")
        main = page.locator("main")
        for secret in (keys.patient_name or "", keys.patient_id or "", "Quuxley"):
            expect(main).not_to_contain_text(secret)
    screenshot(page, "requests")
    sign_in(page, ui_hub, "rita")
    response = page.goto(ui_hub.public_url + "/ui/requests")
    assert response is not None and response.status == 403


def test_a_researcher_browses_and_downloads_a_collection_an_admin_granted(
    page: Page, ui_hub: Hub, tmp_path: Path
) -> None:
    """An org admin grants a researcher a collection and publishes a version on the pages; the
    researcher finds studies by modality, sees thumbnails, opens a study and downloads the
    version's zip; a revoked grant closes the collection at once (404)."""
    import io
    import zipfile

    from pydicom import dcmread

    from tests.factories.collections import deidentified_study, make_collection
    from tests.hub.test_collections_dicomweb import _dicomweb

    with ui_hub.session() as session:
        make_collection(session, ui_hub.settings, "teaching", "org-a")
    chest = deidentified_study(3, modality="CT", body_part="CHEST")
    head = deidentified_study(2, modality="MR", body_part="HEAD")
    curator = ui_hub.person("cora", "org-admin", "org-a")
    stored = _dicomweb(ui_hub, curator, "teaching").store_instances(
        [dcmread(io.BytesIO(f)) for f in chest.files + head.files]
    )
    assert len(stored.ReferencedSOPSequence) == 5

    sign_in(page, ui_hub, "rita")
    response = page.goto(ui_hub.public_url + "/ui/collections/teaching")
    assert response is not None and response.status == 404  # no grant yet: not even its name

    # a site's sharing rule can name the collection, de-identified only
    make_site(ui_hub, "org-a", "clinic-c")
    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/orgs/org-a/sites/clinic-c/policy")
    suggested = page.locator("datalist#destinations option")
    expect(suggested.filter(has_text="research collection teaching")).to_have_count(1)
    page.get_by_label("Destination organization or collection").fill("collection--teaching")
    page.get_by_label("Mode").first.select_option("identified")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#policy-error")).to_contain_text("de-identified")
    page.get_by_label("Mode").first.select_option("deidentified")
    page.get_by_label("Reason for the change (audited)").fill("teaching file")
    page.get_by_role("button", name="Save as version 1").click()
    expect(page.locator("#current-version")).to_have_text("1")

    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/collections/teaching")
    page.get_by_label("Username").fill("rita")
    page.get_by_role("button", name="Grant read access").click()
    expect(page.locator('li[data-grantee="rita"]')).to_be_visible()
    page.get_by_label("Note").fill("first cut for the teaching file")
    page.get_by_role("button", name="Publish a version").click()
    expect(page.locator('tr[data-version="1"]')).to_contain_text("first cut")

    sign_in(page, ui_hub, "rita")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Collections").click()
    page.get_by_role("link", name="teaching").click()
    expect(page.locator("table.studies tbody tr")).to_have_count(2)
    thumbs = page.locator("table.studies img.thumb")
    expect(thumbs).to_have_count(2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )  # the thumbnails are rendered by the hub's DICOMweb, under the same session
    page.get_by_label("Modality").fill("MR")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.studies tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-study="{head.study_uid}"]')).to_contain_text("MR")
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "collection")
    page.locator(f'tr[data-study="{head.study_uid}"] a').click()
    expect(page.locator(f'tr[data-series="{head.series_uid}"]')).to_contain_text("HEAD")
    page.get_by_role("link", name="Back to the collection").click()

    with page.expect_download() as waiting:
        page.locator('tr[data-version="1"]').get_by_role("link", name="zip").click()
    archive = tmp_path / "teaching-v1.zip"
    waiting.value.save_as(archive)
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        dicoms = [n for n in names if n.endswith(".dcm")]
        assert len(dicoms) == 5 and any("manifest" in n for n in names)
        uids = {str(dcmread(io.BytesIO(zipped.read(n))).SOPInstanceUID) for n in dicoms}
    assert uids == set(chest.sop_uids + head.sop_uids)
    text = page.locator("main").inner_text()
    for original in chest.originals + head.originals:  # identifying values never shown
        assert str(original.PatientName) not in text and str(original.PatientID) not in text

    sign_in(page, ui_hub, "olga")
    page.goto(ui_hub.public_url + "/ui/collections/teaching")
    page.get_by_role("button", name="Revoke rita's access").click()
    sign_in(page, ui_hub, "rita")
    response = page.goto(ui_hub.public_url + "/ui/collections/teaching")
    assert response is not None and response.status == 404
