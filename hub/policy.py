"""Sharing policy per site: versioned rules, deny by default, re-checked at ingest."""

from __future__ import annotations

import datetime as dt
import json

from sqlmodel import Session

from hub import audit
from hub.models import SharingPolicy, utcnow
from wire.policy import PolicyRule, SitePolicy


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def current(session: Session, org: str, site: str) -> SitePolicy:
    row = session.get(SharingPolicy, (org, site))
    if row is None:
        return SitePolicy(org=org, site=site, version=0, rules=[], updated_at=utcnow())
    rules = [PolicyRule.model_validate(r) for r in json.loads(row.rules)]
    return SitePolicy(
        org=org, site=site, version=row.version, rules=rules, updated_at=_aware(row.updated_at)
    )


def replace_rules(
    session: Session, org: str, site: str, rules: list[PolicyRule], *, actor: str
) -> SitePolicy:
    row = session.get(SharingPolicy, (org, site))
    if row is None:
        row = SharingPolicy(org=org, site=site)
    row.version += 1
    row.rules = json.dumps([r.model_dump(mode="json") for r in rules])
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="policy.set",
        subject=f"{org}/{site}",
        detail=json.dumps({"version": row.version, "rules": json.loads(row.rules)}),
    )
    session.commit()
    return current(session, org, site)


def add_rule(session: Session, org: str, site: str, rule: PolicyRule, *, actor: str) -> SitePolicy:
    existing = current(session, org, site).rules
    kept = [
        r
        for r in existing
        if (r.destination_org, r.mode, r.match) != (rule.destination_org, rule.mode, rule.match)
    ]
    return replace_rules(session, org, site, [*kept, rule], actor=actor)
