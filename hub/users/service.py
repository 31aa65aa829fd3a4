"""Accounts, sign-in and API tokens. No FastAPI here: the API, the CLI and the UI call these."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from hub import audit
from hub.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    SignInRequired,
    TooManyRequests,
)
from hub.models import Organization, aware
from hub.permissions import Permission, authorize, visible_orgs
from hub.principals import Principal, Role
from hub.users.models import ApiToken, LoginFailure, User, WebSession
from hub.users.passwords import PasswordHasher, WeakPassword

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
TOKEN_PREFIX = "hxt_"  # noqa: S105 - a format tag, not a secret
SESSION_TTL = dt.timedelta(hours=8)
MAX_TOKEN_TTL_DAYS = 366
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20


def _digest(secret: str) -> str:
    # API tokens and session ids are 256-bit random values: a plain hash is enough to store them
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_of(user: User, address: str = "") -> Principal:
    return Principal(
        kind="user",
        name=user.username,
        role=Role(user.role),
        org=user.org,
        user_id=user.id,
        address=address,
    )


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    display_name: str
    role: str
    org: str | None
    locked: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


def view(user: User) -> UserView:
    assert user.id is not None
    return UserView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        org=user.org,
        locked=user.locked,
        created_at=aware(user.created_at),
        last_login_at=aware(user.last_login_at) if user.last_login_at else None,
    )


# --- accounts ---------------------------------------------------------------------------


def _check_role_and_org(session: Session, actor: Principal, role: str, org: str | None) -> Role:
    try:
        parsed = Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidRequest(f"role {role!r} is not one of: {choices}") from None
    if parsed is Role.NETWORK_ADMIN:
        if not actor.is_network_admin:
            raise Forbidden("only a network admin may make another network admin")
        if org is not None:
            raise InvalidRequest("a network admin belongs to no organization: leave org empty")
        return parsed
    if org is None:
        raise InvalidRequest(f"a {parsed.value} belongs to an organization: give its id")
    authorize(actor, Permission.USER_MANAGE, org)
    if session.get(Organization, org) is None:
        raise NotFound(f"no organization {org!r}; create it first")
    return parsed


def create_user(
    session: Session,
    actor: Principal,
    passwords: PasswordHasher,
    *,
    username: str,
    role: str,
    org: str | None,
    password: str,
    display_name: str = "",
) -> UserView:
    authorize(actor, Permission.USER_MANAGE)
    if not USERNAME.fullmatch(username):
        raise InvalidRequest(
            "a username has 2-64 characters: lowercase letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    parsed = _check_role_and_org(session, actor, role, org)
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"the username {username!r} is taken")
    try:
        hashed = passwords.hash(password)
    except WeakPassword as exc:
        raise InvalidRequest(str(exc)) from None
    user = User(
        username=username,
        display_name=display_name[:200],
        role=parsed.value,
        org=org,
        password_hash=hashed,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor.actor,
        action="user.create",
        subject=f"user:{username}",
        detail=f"role={parsed.value} org={org or '-'}",
        org=org or "",
    )
    session.commit()
    session.refresh(user)
    return view(user)


def _visible_user(session: Session, actor: Principal, user_id: int, permission: Permission) -> User:
    user = session.get(User, user_id)
    if user is None or user.removed_at is not None:
        raise NotFound(f"no user {user_id}")
    if user.org is None:
        if not actor.is_network_admin:
            raise NotFound(f"no user {user_id}")
        authorize(actor, permission)
    else:
        authorize(actor, permission, user.org)
    return user


def list_users(session: Session, actor: Principal, org: str | None = None) -> list[UserView]:
    authorize(actor, Permission.USER_READ, org)
    query = select(User).where(col(User.removed_at).is_(None)).order_by(User.username)
    orgs = visible_orgs(actor)
    if org is not None:
        query = query.where(User.org == org)
    elif orgs is not None:
        query = query.where(col(User.org).in_(orgs))
    return [view(u) for u in session.exec(query)]


def get_user(session: Session, actor: Principal, user_id: int) -> UserView:
    return view(_visible_user(session, actor, user_id, Permission.USER_READ))


def update_user(
    session: Session,
    actor: Principal,
    passwords: PasswordHasher,
    user_id: int,
    *,
    locked: bool | None = None,
    role: str | None = None,
    password: str | None = None,
    display_name: str | None = None,
) -> UserView:
    user = _visible_user(session, actor, user_id, Permission.USER_MANAGE)
    changes: list[str] = []
    if role is not None and role != user.role:
        if user.id == actor.user_id:
            raise Forbidden("you cannot change your own role; ask another admin")
        user.role = _check_role_and_org(session, actor, role, user.org).value
        changes.append(f"role={user.role}")
    if locked is not None and locked != user.locked:
        if user.id == actor.user_id and locked:
            raise Forbidden("you cannot lock yourself out; ask another admin")
        user.locked = locked
        changes.append(f"locked={locked}")
    if password is not None:
        try:
            user.password_hash = passwords.hash(password)
        except WeakPassword as exc:
            raise InvalidRequest(str(exc)) from None
        changes.append("password")
    if display_name is not None:
        user.display_name = display_name[:200]
        changes.append("display_name")
    if role is not None or locked or password is not None:
        _end_sessions(session, user)
    session.add(user)
    audit.record(
        session,
        actor=actor.actor,
        action="user.update",
        subject=f"user:{user.username}",
        detail=" ".join(changes),
        org=user.org or "",
    )
    session.commit()
    session.refresh(user)
    return view(user)


def remove_user(session: Session, actor: Principal, user_id: int) -> None:
    user = _visible_user(session, actor, user_id, Permission.USER_MANAGE)
    if user.id == actor.user_id:
        raise Forbidden("you cannot remove yourself; ask another admin")
    user.removed_at = dt.datetime.now(dt.UTC)
    user.username = f"{user.username}#removed-{user.id}"[:64]
    user.password_hash = None
    user.oidc_subject = None
    _end_sessions(session, user)
    session.add(user)
    audit.record(
        session,
        actor=actor.actor,
        action="user.remove",
        subject=f"user:{user.id}",
        org=user.org or "",
    )
    session.commit()


def _end_sessions(session: Session, user: User) -> None:
    now = dt.datetime.now(dt.UTC)
    for web in session.exec(
        select(WebSession).where(
            WebSession.user_id == user.id, col(WebSession.revoked_at).is_(None)
        )
    ):
        web.revoked_at = now
        session.add(web)
    if user.removed_at is not None:
        for token in session.exec(
            select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
        ):
            token.revoked_at = now
            session.add(token)


# --- sign-in ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    session_id: str
    csrf_token: str
    expires_at: dt.datetime
    user: UserView


def _recent_failures(session: Session, now: dt.datetime, **where: str) -> int:
    since = now - FAILURE_WINDOW
    query = select(func.count()).select_from(LoginFailure).where(LoginFailure.at >= since)
    for column, value in where.items():
        query = query.where(getattr(LoginFailure, column) == value)
    return int(session.exec(query).one())


def login(
    session: Session,
    passwords: PasswordHasher,
    *,
    username: str,
    password: str,
    address: str,
    now: dt.datetime | None = None,
) -> SignIn:
    """Check a password; refuse after too many failures for the account or the address."""
    now = now or dt.datetime.now(dt.UTC)
    username = username.strip().lower()[:64]
    address = address[:64]
    session.exec(delete(LoginFailure).where(col(LoginFailure.at) < now - FAILURE_WINDOW))
    if (
        _recent_failures(session, now, username=username) >= MAX_FAILURES_PER_USER
        or _recent_failures(session, now, address=address) >= MAX_FAILURES_PER_ADDRESS
    ):
        session.commit()
        audit.record(session, actor=f"address:{address}", action="login.throttled", subject="user")
        session.commit()
        raise TooManyRequests(
            "too many failed sign-ins; wait 15 minutes or ask an admin to reset the password",
            retry_after_s=int(FAILURE_WINDOW.total_seconds()),
        )
    user = session.exec(select(User).where(User.username == username)).first()
    usable = user is not None and user.removed_at is None and not user.locked
    valid, new_hash = passwords.verify(password, user.password_hash if user else None)
    if not (valid and usable and user is not None):
        session.add(LoginFailure(username=username, address=address, at=now))
        known = user is not None and USERNAME.fullmatch(username)
        audit.record(
            session,
            actor=f"user:{username}" if known else f"address:{address}",
            action="login.failed",
            subject="locked" if user is not None and user.locked else "",
            org=user.org or "" if user else "",
        )
        session.commit()
        raise SignInRequired("wrong username or password, or the account is locked")
    if new_hash:
        user.password_hash = new_hash
    user.last_login_at = now
    session.add(user)
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + SESSION_TTL
    session.add(
        WebSession(
            token_hash=_digest(session_id),
            user_id=user.id or 0,
            csrf_token=csrf,
            expires_at=expires,
        )
    )
    audit.record(
        session,
        actor=f"user:{user.username}",
        action="login",
        subject=f"from {address}",
        org=user.org or "",
    )
    session.commit()
    session.refresh(user)
    return SignIn(session_id=session_id, csrf_token=csrf, expires_at=expires, user=view(user))


def logout(session: Session, session_id: str) -> None:
    web = session.get(WebSession, _digest(session_id))
    if web is not None and web.revoked_at is None:
        web.revoked_at = dt.datetime.now(dt.UTC)
        session.add(web)
        session.commit()


def _active_user(session: Session, user_id: int) -> User | None:
    user = session.get(User, user_id)
    if user is None or user.removed_at is not None or user.locked:
        return None
    return user


def from_session(
    session: Session, session_id: str, address: str = ""
) -> tuple[Principal, str] | None:
    """(principal, csrf token) of a live sign-in session, checked on every request."""
    web = session.get(WebSession, _digest(session_id))
    now = dt.datetime.now(dt.UTC)
    if web is None or web.revoked_at is not None or aware(web.expires_at) <= now:
        return None
    user = _active_user(session, web.user_id)
    return (principal_of(user, address), web.csrf_token) if user else None


_TOKENS = ApiToken.__table__  # type: ignore[attr-defined]
_USERS = User.__table__  # type: ignore[attr-defined]


def from_api_token(session: Session, token: str, address: str = "") -> Principal | None:
    """The account behind a live API token, checked on every request (revoked, expired,
    locked or removed: None); the token and its account are read in one query."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    connection = session.connection()  # plain rows: no ORM objects to build for a lookup
    found = connection.execute(
        sa_select(
            _TOKENS.c.id, _TOKENS.c.expires_at, _TOKENS.c.revoked_at, _TOKENS.c.last_used_at,
            _USERS.c.id, _USERS.c.username, _USERS.c.role, _USERS.c.org, _USERS.c.locked,
            _USERS.c.removed_at,
        )
        .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
        .where(_TOKENS.c.token_hash == _digest(token))
    ).first()  # fmt: skip
    if found is None:
        return None
    token_id, expires_at, revoked_at, last_used_at = found[:4]
    user_id, username, role, org, locked, removed_at = found[4:]
    now = dt.datetime.now(dt.UTC)
    if revoked_at is not None or aware(expires_at) <= now:
        return None
    if removed_at is not None or locked:
        return None
    last = aware(last_used_at) if last_used_at else None
    if last is None or now - last > dt.timedelta(minutes=1):
        connection.execute(update(_TOKENS).where(_TOKENS.c.id == token_id).values(last_used_at=now))
        session.commit()
    return Principal(
        kind="user", name=username, role=Role(role), org=org, user_id=user_id, address=address
    )


# --- personal API tokens ----------------------------------------------------------------


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool
    last_used_at: dt.datetime | None


def _token_view(row: ApiToken) -> TokenView:
    assert row.id is not None
    return TokenView(
        id=row.id,
        name=row.name,
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at),
        revoked=row.revoked_at is not None,
        last_used_at=aware(row.last_used_at) if row.last_used_at else None,
    )


def create_api_token(
    session: Session, actor: Principal, *, name: str, ttl_days: int
) -> tuple[str, TokenView]:
    """A new token for the actor's own account; the secret is returned once, stored hashed."""
    authorize(actor, Permission.SELF)
    if actor.user_id is None:
        raise Forbidden("only a person's account has API tokens")
    if not 1 <= ttl_days <= MAX_TOKEN_TTL_DAYS:
        raise InvalidRequest(f"ttl_days must be between 1 and {MAX_TOKEN_TTL_DAYS}")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidRequest("a token name has 1-100 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=actor.user_id,
        name=name,
        token_hash=_digest(secret),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=ttl_days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.actor,
        action="token.create",
        subject=f"token:{row.id}",
        org=actor.org or "",
    )
    session.commit()
    session.refresh(row)
    return secret, _token_view(row)


def list_api_tokens(session: Session, actor: Principal) -> list[TokenView]:
    authorize(actor, Permission.SELF)
    rows = session.exec(
        select(ApiToken).where(ApiToken.user_id == actor.user_id).order_by(col(ApiToken.id))
    )
    return [_token_view(r) for r in rows]


def revoke_api_token(session: Session, actor: Principal, token_id: int) -> None:
    authorize(actor, Permission.SELF)
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != actor.user_id:
        raise NotFound(f"no token {token_id} of yours")
    if row.revoked_at is None:
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.add(row)
        audit.record(
            session,
            actor=actor.actor,
            action="token.revoke",
            subject=f"token:{token_id}",
            org=actor.org or "",
        )
        session.commit()


def view_self(session: Session, actor: Principal) -> UserView:
    authorize(actor, Permission.SELF)
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None:
        raise NotFound("this principal has no account")
    return view(user)
