"""Every route x method x role x own/other organization, generated from the routes themselves.

A route that declares no permission fails this suite. What is denied is 401, 403 or 404 with
a problem body and no data; what is allowed is never 401/403 (it may still be 404/409/422 for
the placeholder ids and empty bodies used here). Web UI pages (/ui/...) answer an anonymous
caller with a redirect (303) to the sign-in page, and a denied one with a 403/404 HTML page
that shows none of the data."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from hub.api.registry import iter_routes
from hub.permissions import GRANTS, ORG_SCOPED, Permission
from hub.principals import Role
from tests.hub.api_world import ROLES, World, world_on

PROBLEM_KEYS = {"type", "title", "status", "detail"}
UI_LOGIN = "/ui/login"
DESTRUCTIVE_ENDINGS = ("/revoke", "/rollback", "/remove", "/cancel")


def _main_part(html: str) -> str:
    """The page's content (the header names the signed-in person, whose name may be anything)."""
    start, end = html.find("<main"), html.find("</main>")
    return html[start:end] if start >= 0 and end > start else html


def _ui_refusal_ok(response: httpx.Response, want: str) -> bool:
    if want == "401":
        return response.status_code == 303 and response.headers.get("location") == UI_LOGIN
    content = _main_part(response.text)
    return (
        str(response.status_code) == want
        and response.headers.get("content-type", "").startswith("text/html")
        and "clinic" not in content
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with world_on(request.param, tmp_path_factory.mktemp("matrix")) as made:
        yield made


def test_every_route_declares_exactly_one_permission(world: World) -> None:
    for app in (world.app_client.app, world.node_client.app):
        routes = list(iter_routes(app))  # type: ignore[arg-type]
        assert len(routes) > 10
        undeclared = [r.path for r in routes if len(r.permissions) != 1]
        assert undeclared == [], f"routes without exactly one declared permission: {undeclared}"
    node_perms = {r.permissions for r in iter_routes(world.node_client.app)}  # type: ignore[arg-type]
    assert node_perms == {(Permission.SITE,)}
    ui_pages = [r for r in iter_routes(world.app_client.app) if r.path.startswith("/ui/")]  # type: ignore[arg-type]
    assert len(ui_pages) > 10, "the web UI's pages are part of the matrix"


def _expected(permission: Permission, role: str | None, scope: str) -> str:
    if permission is Permission.PUBLIC:
        return "allowed"
    if role is None or permission is Permission.SITE:
        return "401"
    if permission not in GRANTS[Role(role)]:
        return "403"
    if scope == "other" and role != "network-admin":
        return "404"
    return "allowed"


def _fill(world: World, path: str, org: str) -> str:
    owner = org
    values = {
        "org": org,
        "site": "clinic",
        "user_id": str(world.user_ids[("clinician", owner)]),
        "token_id": world.enrollment_tokens[org] if "enrollment-tokens" in path else "1",
        "version": "0",
        "bundle_id": "0" * 32,
        "request_id": "0" * 32,
        "index": "0",
        "name": "ui.css",  # the web UI's static files
        # research collections (DICOMweb): no such collection, so allowed callers get 404
        "collection": "no-such-collection",
        "study": "1.2.3",
        "series": "1.2.3.4",
        "instance": "1.2.3.4.5",
        "frames": "1",
        "tag": "7FE00010",
        "username": "nobody",
    }
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)


def _cases() -> Iterator[tuple[str | None, str]]:
    for role in (None, *ROLES):
        for scope in ("own", "other"):
            yield role, scope


@pytest.mark.parametrize(("role", "scope"), list(_cases()))
def test_matrix(world: World, role: str | None, scope: str) -> None:
    own_org = "org-a"
    target_org = own_org if scope == "own" else "org-b"
    failures = []
    for app_name, client in (("public", world.app_client), ("node", world.node_client)):
        for route in iter_routes(client.app):  # type: ignore[arg-type]
            permission = route.permissions[0]
            scoped = "{org}" in route.path or "{user_id}" in route.path
            if scope == "other" and not scoped:
                continue  # nothing organization-specific to cross
            path = _fill(world, route.path, target_org)
            for method in sorted(route.methods - {"HEAD"}):
                destructive = method == "DELETE" or path.endswith(DESTRUCTIVE_ENDINGS)
                if destructive and _expected(permission, role, scope) == "allowed":
                    continue  # checked for refusal here; the allowed case in the API tests
                if path in ("/api/v1/auth/login", UI_LOGIN):
                    continue  # sign-in: its own tests (rate limit)
                response = client.request(
                    method, path, headers=world.as_(role, own_org),
                    json={} if method in ("POST", "PUT", "PATCH") else None,
                    follow_redirects=False,
                )  # fmt: skip
                want = _expected(permission, role, scope)
                got = response.status_code
                if want == "allowed":
                    ok = got not in (401, 403) and not (
                        got == 404 and "that you can see" in response.text
                    )
                    if path != "/ui/logout":  # signing out sends you to the sign-in page
                        ok = ok and response.headers.get("location") != UI_LOGIN
                elif path.startswith("/ui/"):
                    ok = _ui_refusal_ok(response, want)
                else:
                    ok = str(got) == want
                    if ok:
                        body = response.json()
                        ok = isinstance(body, dict) and set(body) <= PROBLEM_KEYS
                        ok = ok and "clinic" not in body.get("detail", "")
                if not ok:
                    failures.append(
                        f"{app_name} {method} {path}: want {want}, got {got} {response.text[:120]}"
                    )
    assert failures == [], "\n".join(failures)


def test_org_scoped_permissions_are_exactly_the_org_routes_permissions(world: World) -> None:
    """A permission used on a route with {org} must be one `authorize` scopes by organization."""
    for route in iter_routes(world.app_client.app):  # type: ignore[arg-type]
        if "{org}" in route.path:
            assert route.permissions[0] in ORG_SCOPED, route.path
