"""Policy versions: save (validated, audited), list, show, diff, roll back. No FastAPI here."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlmodel import Session, col, select

from hub import audit
from hub.errors import InvalidRequest, NotFound
from hub.models import Organization, SharingPolicy, Site, aware, utcnow
from hub.permissions import Permission, authorize
from hub.policy.models import PolicyVersion
from hub.principals import Principal
from wire.collection_key import collection_named
from wire.policy import PolicyRule, SitePolicy


def _rules(text: str) -> list[PolicyRule]:
    return [PolicyRule.model_validate(r) for r in json.loads(text)]


def _dump(rules: list[PolicyRule]) -> str:
    return json.dumps([r.model_dump(mode="json", exclude_defaults=False) for r in rules])


def current(session: Session, org: str, site: str) -> SitePolicy:
    row = session.get(SharingPolicy, (org, site))
    if row is None:
        return SitePolicy(org=org, site=site, version=0, rules=[], updated_at=utcnow())
    return SitePolicy(
        org=org, site=site, version=row.version, rules=_rules(row.rules),
        updated_at=aware(row.updated_at),
    )  # fmt: skip


def validate_rules(session: Session, rules: list[PolicyRule]) -> None:
    """What the wire model cannot check: destinations exist, de-id options and recipes parse."""
    from deidentify.profile import Profile
    from deidentify.recipe import RecipeError, parse_recipe

    for number, rule in enumerate(rules, start=1):
        collection = collection_named(rule.destination_org)
        if collection is not None:
            from hub.collections.service import require_collection

            try:
                require_collection(session, collection)
            except InvalidRequest as exc:
                raise InvalidRequest(f"rule {number}: {exc.detail}") from None
        elif session.get(Organization, rule.destination_org) is None:
            raise InvalidRequest(
                f"rule {number}: organization {rule.destination_org!r} is not part of this network"
            )
        try:
            Profile.from_names(rule.deid_options)
        except ValueError as exc:
            raise InvalidRequest(f"rule {number}: {exc}") from None
        if rule.mode == "identified" and (rule.deid_options or rule.recipe):
            raise InvalidRequest(
                f"rule {number}: an identified rule takes no de-identification options or recipe"
            )
        if rule.recipe is not None:
            try:
                parse_recipe(rule.recipe)
            except RecipeError as exc:
                raise InvalidRequest(f"rule {number}: recipe: {exc}") from None


def parse_rules(raw: object) -> list[PolicyRule]:
    """Rules from JSON-like data, with an error that says which rule and field is wrong."""
    if not isinstance(raw, list):
        raise InvalidRequest("rules must be a list of rule objects")
    out = []
    for number, item in enumerate(raw, start=1):
        try:
            out.append(PolicyRule.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'rule'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidRequest(f"rule {number}: {problems}") from None
    return out


def _require_site(session: Session, org: str, site: str) -> None:
    if session.exec(select(Site).where(Site.org == org, Site.site == site)).first() is None:
        raise NotFound(
            f"site {org}/{site} is not registered; add it first (`hexchange-hub site add` or "
            "POST /api/v1/orgs/{org}/sites)"
        )


def replace_rules(
    session: Session,
    org: str,
    site: str,
    rules: list[PolicyRule],
    *,
    actor: str | Principal,
    reason: str = "",
    rolled_back_from: int | None = None,
) -> SitePolicy:
    """Save `rules` as the site's next version (every version is kept)."""
    who = actor.actor if isinstance(actor, Principal) else actor
    row = session.get(SharingPolicy, (org, site))
    if row is None:
        row = SharingPolicy(org=org, site=site)
    row.version += 1
    row.rules = _dump(rules)
    row.updated_at = utcnow()
    session.add(row)
    session.add(
        PolicyVersion(
            org=org,
            site=site,
            version=row.version,
            rules=row.rules,
            author=who,
            reason=" ".join(reason.split())[:500],
            created_at=row.updated_at,
            rolled_back_from=rolled_back_from,
        )
    )
    audit.record(
        session,
        actor=who,
        action="policy.set",
        subject=f"{org}/{site}",
        detail=json.dumps({"version": row.version, "reason": reason[:500]}),
        org=org,
    )
    session.commit()
    return current(session, org, site)


def add_rule(
    session: Session, org: str, site: str, rule: PolicyRule, *, actor: str | Principal
) -> SitePolicy:
    existing = current(session, org, site).rules
    kept = [
        r
        for r in existing
        if (r.destination_org, r.mode, r.match) != (rule.destination_org, rule.mode, rule.match)
    ]
    return replace_rules(session, org, site, [*kept, rule], actor=actor, reason="rule added")


# --- for people (permission-checked) ------------------------------------------------------


@dataclass(frozen=True)
class VersionView:
    version: int
    author: str
    reason: str
    created_at: dt.datetime
    rolled_back_from: int | None
    rules: list[PolicyRule]


def _version_view(row: PolicyVersion) -> VersionView:
    return VersionView(
        version=row.version,
        author=row.author,
        reason=row.reason,
        created_at=aware(row.created_at),
        rolled_back_from=row.rolled_back_from,
        rules=_rules(row.rules),
    )


def show(session: Session, actor: Principal, org: str, site: str) -> SitePolicy:
    authorize(actor, Permission.POLICY_READ, org)
    _require_site(session, org, site)
    return current(session, org, site)


def save(
    session: Session,
    actor: Principal,
    org: str,
    site: str,
    rules: list[PolicyRule],
    *,
    reason: str,
    expected_version: int | None = None,
) -> SitePolicy:
    """A new version from an admin: validated, with a reason; refuses a stale edit."""
    authorize(actor, Permission.POLICY_WRITE, org)
    _require_site(session, org, site)
    if not reason.strip():
        raise InvalidRequest("say why the policy changes (reason), for the audit log")
    validate_rules(session, rules)
    now = current(session, org, site)
    if expected_version is not None and expected_version != now.version:
        raise InvalidRequest(
            f"the policy changed meanwhile (version {now.version}, you edited "
            f"{expected_version}); reload it and apply your change again"
        )
    return replace_rules(session, org, site, rules, actor=actor, reason=reason)


def list_versions(session: Session, actor: Principal, org: str, site: str) -> list[VersionView]:
    authorize(actor, Permission.POLICY_READ, org)
    _require_site(session, org, site)
    rows = session.exec(
        select(PolicyVersion)
        .where(PolicyVersion.org == org, PolicyVersion.site == site)
        .order_by(col(PolicyVersion.version).desc())
    )
    return [_version_view(r) for r in rows]


def get_version(
    session: Session, actor: Principal, org: str, site: str, version: int
) -> VersionView:
    authorize(actor, Permission.POLICY_READ, org)
    _require_site(session, org, site)
    if version == 0:
        return VersionView(0, "-", "deny by default", utcnow(), None, [])
    row = session.get(PolicyVersion, (org, site, version))
    if row is None:
        raise NotFound(f"{org}/{site} has no policy version {version}")
    return _version_view(row)


def rollback(
    session: Session, actor: Principal, org: str, site: str, to_version: int, *, reason: str
) -> SitePolicy:
    """A new version whose rules are those of `to_version` (history is never rewritten)."""
    authorize(actor, Permission.POLICY_WRITE, org)
    target = get_version(session, actor, org, site, to_version)
    validate_rules(session, target.rules)
    why = reason.strip() or f"roll back to version {to_version}"
    return replace_rules(
        session, org, site, target.rules, actor=actor, reason=why, rolled_back_from=to_version
    )


@dataclass(frozen=True)
class PolicyDiff:
    from_version: int
    to_version: int
    added: list[PolicyRule] = field(default_factory=list)
    removed: list[PolicyRule] = field(default_factory=list)
    unchanged: int = 0


def diff_rules(
    old: list[PolicyRule], new: list[PolicyRule], from_version: int, to_version: int
) -> PolicyDiff:
    def key(rule: PolicyRule) -> str:
        return json.dumps(rule.model_dump(mode="json"), sort_keys=True)

    old_keys = {key(r) for r in old}
    new_keys = {key(r) for r in new}
    return PolicyDiff(
        from_version=from_version,
        to_version=to_version,
        added=[r for r in new if key(r) not in old_keys],
        removed=[r for r in old if key(r) not in new_keys],
        unchanged=len(old_keys & new_keys),
    )


def diff(
    session: Session, actor: Principal, org: str, site: str, from_version: int, to_version: int
) -> PolicyDiff:
    a = get_version(session, actor, org, site, from_version)
    b = get_version(session, actor, org, site, to_version)
    return diff_rules(a.rules, b.rules, from_version, to_version)
