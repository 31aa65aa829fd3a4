"""People at the hub: sign-in with sessions and CSRF, API tokens, locking, roles, rate limits."""

from __future__ import annotations

from sqlmodel import col, select

from hub.models import AuditEvent
from hub.users.models import User
from tests.hub.api_world import PASSWORD, World


def _login(world: World, username: str, password: str = PASSWORD) -> tuple[int, dict[str, str]]:
    response = world.app_client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status_code, response.json()


def test_sign_in_gives_a_session_cookie_that_needs_the_csrf_token_for_writes(world: World) -> None:
    client = world.app_client
    status, body = _login(world, "org-admin-org-a")
    assert status == 200, body
    assert body["user"]["role"] == "org-admin" and "password" not in str(body)
    cookie = client.cookies.get("hx_session")
    assert cookie and cookie not in str(body)
    assert client.get("/api/v1/me").json()["username"] == "org-admin-org-a"
    # a write with the cookie but without the CSRF header is refused, with it accepted
    refused = client.post("/api/v1/orgs/org-a/sites", json={"site": "new-site"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    made = client.post(
        "/api/v1/orgs/org-a/sites",
        json={"site": "new-site"},
        headers={"X-CSRF-Token": body["csrf_token"]},
    )
    assert made.status_code == 201, made.text
    assert (
        client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]}).status_code
        == 204
    )
    client.cookies.set("hx_session", cookie)  # replaying the old cookie after sign-out
    assert client.get("/api/v1/me").status_code == 401
    client.cookies.clear()


def test_wrong_password_and_unknown_user_look_the_same_and_are_rate_limited(world: World) -> None:
    status, body = _login(world, "clinician-org-a", "wrong password!!")
    assert status == 401
    status2, body2 = _login(world, "nobody-at-all", "wrong password!!")
    assert status2 == 401 and body2["detail"] == body["detail"]
    for _ in range(3):
        assert _login(world, "clinician-org-a", "still wrong!!")[0] == 401
    status, body = _login(world, "clinician-org-a", "one more wrong")
    assert status == 401
    status, body = _login(world, "clinician-org-a")  # right password, but throttled now
    assert status == 429 and "wait" in body["detail"]
    with world.services.session() as session:
        actions = [
            e.action
            for e in session.exec(
                select(AuditEvent).where(col(AuditEvent.action).startswith("login"))
            )
        ]
    assert actions.count("login.failed") == 6 and "login.throttled" in actions


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(world: World) -> None:
    client = world.app_client
    headers = world.as_("clinician")
    made = client.post("/api/v1/me/tokens", json={"name": "script", "ttl_days": 7}, headers=headers)
    assert made.status_code == 201
    secret = made.json()["token"]
    token_id = made.json()["info"]["id"]
    listed = client.get("/api/v1/me/tokens", headers=headers).json()
    assert secret not in str(listed) and any(t["id"] == token_id for t in listed)
    with world.services.session() as session:
        from hub.users.models import ApiToken

        stored = session.get(ApiToken, token_id)
        assert stored is not None and secret not in stored.token_hash
    mine = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=mine).status_code == 200
    assert client.delete(f"/api/v1/me/tokens/{token_id}", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=mine).status_code == 401
    # someone else's token id is not yours to revoke
    other = world.as_("clinician", "org-b")
    assert client.delete(f"/api/v1/me/tokens/{token_id}", headers=other).status_code == 404
    bad = client.post("/api/v1/me/tokens", json={"name": "x", "ttl_days": 9999}, headers=headers)
    assert bad.status_code == 422


def test_a_locked_or_removed_user_loses_access_on_the_next_request(world: World) -> None:
    client = world.app_client
    admin = world.as_("org-admin")
    victim = world.as_("clinician")
    victim_id = world.user_ids[("clinician", "org-a")]
    assert client.get("/api/v1/me", headers=victim).status_code == 200
    locked = client.patch(f"/api/v1/users/{victim_id}", json={"locked": True}, headers=admin)
    assert locked.status_code == 200 and locked.json()["locked"] is True
    assert client.get("/api/v1/me", headers=victim).status_code == 401
    assert _login(world, "clinician-org-a")[0] == 401
    client.patch(f"/api/v1/users/{victim_id}", json={"locked": False}, headers=admin)
    assert client.get("/api/v1/me", headers=victim).status_code == 200
    assert client.delete(f"/api/v1/users/{victim_id}", headers=admin).status_code == 204
    assert client.get("/api/v1/me", headers=victim).status_code == 401


def test_org_admins_manage_their_own_people_only(world: World) -> None:
    client = world.app_client
    admin = world.as_("org-admin")
    made = client.post(
        "/api/v1/users",
        json={"username": "dr-new", "role": "clinician", "org": "org-a", "password": PASSWORD},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    for body, status in (
        ({"username": "x1", "role": "clinician", "org": "org-b", "password": PASSWORD}, 404),
        ({"username": "x2", "role": "network-admin", "password": PASSWORD}, 403),
        ({"username": "x3", "role": "clinician", "org": "org-a", "password": "short"}, 422),
        ({"username": "dr-new", "role": "clinician", "org": "org-a", "password": PASSWORD}, 409),
        ({"username": "x4", "role": "pope", "org": "org-a", "password": PASSWORD}, 422),
        ({"username": "Bad Name", "role": "clinician", "org": "org-a", "password": PASSWORD}, 422),
    ):
        response = client.post("/api/v1/users", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
    names = {u["username"] for u in client.get("/api/v1/users", headers=admin).json()}
    assert "dr-new" in names and not any(n.endswith("org-b") for n in names)
    own_id = world.user_ids[("org-admin", "org-a")]
    assert (
        client.patch(
            f"/api/v1/users/{own_id}", json={"role": "clinician"}, headers=admin
        ).status_code
        == 403
    )
    with world.services.session() as session:
        user = session.exec(select(User).where(User.username == "dr-new")).one()
        assert user.password_hash and user.password_hash.startswith("$argon2id$")


def test_the_first_network_admin_is_made_on_the_hub_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub.bootstrap import init_hub
    from hub.cli import main
    from hub.settings import HubSettings

    data = tmp_path / "hub"
    init_hub(HubSettings(data_dir=data))
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    import pytest

    with pytest.raises(SystemExit) as done:
        main(["user", "add", "--data-dir", str(data), "--username", "root-admin",
              "--role", "network-admin", "--password-file", str(secret)])  # fmt: skip
    assert done.value.code in (0, None)
    with pytest.raises(SystemExit) as again:
        main(["user", "add", "--data-dir", str(data), "--username", "root-admin",
              "--role", "network-admin", "--password-file", str(secret)])  # fmt: skip
    assert again.value.code == 2  # taken: a clear error, not a traceback
