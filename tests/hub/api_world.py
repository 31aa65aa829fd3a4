"""An in-process hub (the real app from `create_app`, SQLite or PostgreSQL) with two
organizations, a site in each, and one person per role: the cast of the user-API tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from hub.bootstrap import init_hub
from hub.main import create_app
from hub.principals import Principal, Role
from hub.services import Services, build_services
from hub.settings import HubSettings
from hub.sites import service as sites
from hub.users import service as users

ROLES = ("network-admin", "org-admin", "clinician", "researcher")
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    services: Services
    app_client: TestClient
    node_client: TestClient
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (role, org) -> token
    user_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    enrollment_tokens: dict[str, str] = field(default_factory=dict)  # org -> token id

    def as_(self, role: str | None, org: str = "org-a") -> dict[str, str]:
        if role is None:
            return {}
        key = (role, "" if role == "network-admin" else org)
        return {"Authorization": f"Bearer {self.tokens[key]}"}


@contextmanager
def api_world(tmp_path: Path, database_url: str) -> Iterator[World]:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    settings = HubSettings(data_dir=tmp_path / "hub", database_url=database_url)
    init_hub(settings)
    services = build_services(settings)
    cli = Principal.cli()
    tokens: dict[tuple[str, str], str] = {}
    user_ids: dict[tuple[str, str], int] = {}
    enrollment: dict[str, str] = {}
    with services.session() as session:
        for org in ("org-a", "org-b"):
            sites.create_org(session, cli, org, f"Organization {org[-1].upper()}")
            sites.create_site(session, services.ca, cli, org, "clinic", "Clinic")
            issued = sites.issue_enrollment_token(session, services.ca, cli, org, "clinic")
            enrollment[org] = issued.view.token_id
        for role in ROLES:
            for org in ("",) if role == "network-admin" else ("org-a", "org-b"):
                name = f"{role}{'-' + org if org else ''}"
                view = users.create_user(
                    session, cli, services.passwords, username=name, role=role,
                    org=org or None, password=PASSWORD,
                )  # fmt: skip
                principal = Principal(
                    kind="user", name=name, role=Role(role), org=org or None,
                    user_id=view.id,
                )  # fmt: skip
                secret, _ = users.create_api_token(session, principal, name="t", ttl_days=1)
                tokens[(role, org)] = secret
                user_ids[(role, org)] = view.id
    app = create_app(settings, services)
    with (
        TestClient(app, base_url="https://testserver") as client,
        TestClient(app.state.node_app, base_url="https://testserver") as node,
    ):
        yield World(services, client, node, tokens, user_ids, enrollment)
    services.close()


@contextmanager
def world_on(backend: str, tmp: Path) -> Iterator[World]:
    """`api_world` on SQLite under `tmp` or on a fresh PostgreSQL database."""
    if backend == "sqlite":
        with api_world(tmp, f"sqlite:///{tmp / 'hub.db'}") as made:
            yield made
        return
    from tests.hub.conftest import postgres_database

    with postgres_database() as url, api_world(tmp, url) as made:
        yield made
