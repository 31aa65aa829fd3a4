"""Managing collections and who may read them (no FastAPI: routes and the CLI call these).

Visibility: a network admin sees every collection; an org admin the collections of their
organization; anyone else (researchers) only a collection they hold a grant for. Every other
caller is told the collection does not exist (404), never that it is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_
from sqlmodel import Session, col, delete, select

from deidentify import Profile
from hub import audit
from hub.collections.keys import KeyProvider, new_collection_key
from hub.collections.models import Collection, CollectionGrant
from hub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hub.models import Organization
from hub.principals import Principal, Role
from hub.users.models import User
from wire import signatures
from wire.collection_key import (
    MAX_COLLECTION_NAME,
    CollectionKey,
    collection_key_message,
)

NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class CollectionView:
    name: str
    description: str
    org: str
    profile: list[str]
    key_id: str
    public_key: str
    key_signature: str


def view(row: Collection) -> CollectionView:
    return CollectionView(
        name=row.name,
        description=row.description,
        org=row.org,
        profile=json.loads(row.profile),
        key_id=row.key_id,
        public_key=row.public_key,
        key_signature=row.key_signature,
    )


def key_message(name: str, key_id: str, public_b64: str) -> bytes:
    """What the hub signs for a collection key (agents check it with the hub's key)."""
    return collection_key_message(name, key_id, public_b64)


def published_key(session: Session, name: str) -> CollectionKey:
    """A collection's public key as agents fetch it (any enrolled site may seal to it)."""
    row = _by_name(session, name)
    if row is None:
        raise NotFound(f"no research collection {name!r} at this hub")
    return CollectionKey(
        name=row.name, key_id=row.key_id, public_key=row.public_key, signature=row.key_signature
    )


def require_collection(session: Session, name: str) -> Collection:
    row = _by_name(session, name)
    if row is None:
        raise InvalidRequest(f"research collection {name!r} does not exist at this hub")
    return row


def create(
    session: Session,
    principal: Principal,
    provider: KeyProvider,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    name: str,
    org: str,
    description: str = "",
    profile: list[str] | None = None,
) -> CollectionView:
    if not principal.is_network_admin:
        raise Forbidden("only a network admin creates research collections")
    if not NAME.match(name) or len(name) > MAX_COLLECTION_NAME:
        raise InvalidRequest(
            f"a collection name is 1-{MAX_COLLECTION_NAME} lowercase letters, digits and "
            "inner hyphens"
        )
    options = list(profile or [])
    try:
        Profile.from_names(options)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if session.get(Organization, org) is None:
        raise InvalidRequest(f"no organization {org!r}; create it first")
    if session.exec(select(Collection).where(Collection.name == name)).first() is not None:
        raise Conflict(f"a collection named {name!r} exists already")
    key = new_collection_key(provider, name)
    signature = signatures.sign(signing_key, key_message(name, key.key_id, key.public_b64))
    row = Collection(
        name=name,
        description=description,
        org=org,
        profile=json.dumps(sorted(options)),
        key_id=key.key_id,
        public_key=key.public_b64,
        sealed_private_key=key.sealed_b64,
        key_signature=signature,
    )
    session.add(row)
    audit.record(session, actor=principal.actor, action="collection.create", subject=name, org=org)
    session.commit()
    session.refresh(row)
    return view(row)


def _by_name(session: Session, name: str) -> Collection | None:
    return session.exec(select(Collection).where(Collection.name == name)).first()


def _not_found(name: str) -> NotFound:
    return NotFound(f"no collection {name!r} that you can read")


def can_manage(principal: Principal, row: Collection) -> bool:
    if principal.is_network_admin:
        return True
    return principal.role is Role.ORG_ADMIN and principal.org == row.org


def readable(session: Session, principal: Principal, name: str) -> Collection:
    """The collection, if `principal` may read it (checked on every request); else 404.
    The collection and the caller's grant are read in one query."""
    grant_of_caller = and_(
        col(CollectionGrant.collection_id) == col(Collection.id),
        col(CollectionGrant.user_id) == (principal.user_id or 0),  # user ids start at 1
    )
    found = session.exec(
        select(Collection, CollectionGrant.user_id)
        .outerjoin(CollectionGrant, grant_of_caller)
        .where(Collection.name == name)
    ).first()
    if found is None:
        raise _not_found(name)
    row, granted = found
    if can_manage(principal, row):
        return row
    if principal.user_id is not None and granted is not None:
        return row
    raise _not_found(name)


def manageable(session: Session, principal: Principal, name: str) -> Collection:
    row = readable(session, principal, name)
    if not can_manage(principal, row):
        raise Forbidden(
            f"adding to or changing collection {name!r} needs an admin of {row.org} or of the "
            "network"
        )
    return row


def list_readable(session: Session, principal: Principal) -> list[CollectionView]:
    rows = session.exec(select(Collection).order_by(col(Collection.name))).all()
    granted = set()
    if principal.user_id is not None:
        granted = set(
            session.exec(
                select(CollectionGrant.collection_id).where(
                    CollectionGrant.user_id == principal.user_id
                )
            ).all()
        )
    return [view(r) for r in rows if can_manage(principal, r) or r.id in granted]


def _user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or user.removed_at is not None:
        raise NotFound(f"no user {username!r}")
    return user


def grant(session: Session, principal: Principal, name: str, username: str) -> None:
    row = manageable(session, principal, name)
    user = _user(session, username)
    if session.get(CollectionGrant, (row.id, user.id)) is None:
        session.add(
            CollectionGrant(
                collection_id=row.id or 0, user_id=user.id or 0, granted_by=principal.actor
            )
        )
        audit.record(
            session, actor=principal.actor, action="collection.grant",
            subject=f"{name}:{username}", org=row.org,
        )  # fmt: skip
        session.commit()


def revoke(session: Session, principal: Principal, name: str, username: str) -> bool:
    row = manageable(session, principal, name)
    user = _user(session, username)
    result = session.exec(
        delete(CollectionGrant).where(
            col(CollectionGrant.collection_id) == row.id,
            col(CollectionGrant.user_id) == user.id,
        )
    )
    audit.record(
        session, actor=principal.actor, action="collection.revoke",
        subject=f"{name}:{username}", org=row.org,
    )  # fmt: skip
    session.commit()
    return bool(result.rowcount)


def grantees(session: Session, principal: Principal, name: str) -> list[str]:
    row = manageable(session, principal, name)
    names = session.exec(
        select(User.username)
        .join(CollectionGrant, col(CollectionGrant.user_id) == col(User.id))
        .where(CollectionGrant.collection_id == row.id)
        .order_by(col(User.username))
    ).all()
    return list(names)
