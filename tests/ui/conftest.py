"""A real hub on loopback (one per module) and Debian's chromium driven by Playwright.

Browsers cannot be downloaded here: Playwright launches /usr/bin/chromium (installed by
`scripts/setup.sh --test`); without it these tests are skipped with that message."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from hub.bootstrap import init_hub
from hub.principals import Principal
from hub.settings import HubSettings
from hub.sites import service as sites
from tests.hub.conftest import Hub, running_hub
from tests.ports import free_port

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "a long test passphrase"
# username -> (role, organization)
PEOPLE = {
    "nadia": ("network-admin", None),
    "olga": ("org-admin", "org-a"),
    "carl": ("clinician", "org-a"),
    "rita": ("researcher", "org-a"),
    "bob": ("org-admin", "org-b"),
}

if not CHROMIUM.exists():
    pytest.skip(
        "web UI tests need Debian's chromium at /usr/bin/chromium "
        "(run `scripts/setup.sh --test` or `apt-get install chromium`)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def ui_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("ui-hub")
    settings = HubSettings(
        data_dir=tmp / "hub-data",
        database_url=f"sqlite:///{tmp / 'hub.db'}",
        node_port=free_port(),
        public_port=free_port(),
    )
    init_hub(settings)
    handle = Hub(settings=settings, backend="sqlite", workdir=tmp / "work")
    with running_hub(settings):
        with handle.session() as session:
            cli = Principal.cli()
            for org in ("org-a", "org-b"):
                sites.create_org(session, cli, org, f"Organization {org[-1].upper()}")
            sites.create_site(session, handle.registry(), cli, "org-b", "lab", "B's lab")
        for username, (role, org) in PEOPLE.items():
            handle.person(username, role, org, password=PASSWORD)
        try:
            yield handle
        finally:
            handle.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        ignore_https_errors=True,  # the hub's own CA signs its TLS certificate
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, hub: Hub, username: str) -> None:
    page.goto(hub.public_url + "/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/ui/login" not in url)


def screenshot(page: Page, name: str) -> None:
    """The visible part of the page for the README, as a small palette PNG."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    shot.quantize(colors=64).save(SCREENSHOTS / f"{name}.png", optimize=True)


def days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
