"""Dry run: what a candidate policy would have sent, where and how, over the site's recent
bundles, side by side with the current version. Works from the index only (manifest facts,
no identity): a rule that needs a fact the hub never sees is reported as undecided."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlmodel import Session, col, select

from hub.models import Bundle
from hub.permissions import Permission, authorize
from hub.policy.service import _require_site, current, validate_rules
from hub.principals import Principal
from wire.facts import StudyFacts
from wire.policy import PolicyRule

MAX_DAYS = 365
MAX_BUNDLES = 100_000


@dataclass(frozen=True)
class Route:
    destination_org: str
    mode: str
    certain: bool  # False: the rule needs a fact the hub does not hold


@dataclass(frozen=True)
class FactsGroup:
    facts: StudyFacts
    bundles: int
    instances: int
    sent: list[tuple[str, str]]  # (org, mode) actually sent in the window
    current: list[Route]
    candidate: list[Route]
    changed: bool


@dataclass(frozen=True)
class DryRun:
    org: str
    site: str
    days: int
    current_version: int
    bundles_considered: int
    groups: list[FactsGroup] = field(default_factory=list)
    summary: dict[str, dict[str, int]] = field(default_factory=dict)


def _routes(rules: list[PolicyRule], facts: StudyFacts) -> list[Route]:
    out: dict[tuple[str, str], bool] = {}
    for rule in rules:
        verdict = rule.match.evaluate(facts)
        if verdict is False:
            continue
        key = (rule.destination_org, rule.mode)
        out[key] = out.get(key, False) or verdict is True
    return [Route(org, mode, certain) for (org, mode), certain in sorted(out.items())]


def _facts_of(row: Bundle) -> StudyFacts:
    if row.facts:
        try:
            return StudyFacts.model_validate_json(row.facts)
        except ValidationError:
            pass
    return StudyFacts(modalities=sorted(json.loads(row.modalities or "[]")))


def dry_run(
    session: Session,
    actor: Principal,
    org: str,
    site: str,
    candidate: list[PolicyRule],
    *,
    days: int = 30,
    now: dt.datetime | None = None,
) -> DryRun:
    authorize(actor, Permission.POLICY_READ, org)
    _require_site(session, org, site)
    validate_rules(session, candidate)
    days = max(1, min(days, MAX_DAYS))
    now = now or dt.datetime.now(dt.UTC)
    live = current(session, org, site)
    rows = session.exec(
        select(Bundle)
        .where(
            Bundle.sender_org == org,
            Bundle.sender_site == site,
            Bundle.created_at >= now - dt.timedelta(days=days),
        )
        .order_by(col(Bundle.created_at).desc())
        .limit(MAX_BUNDLES)
    ).all()
    grouped: dict[str, list[Bundle]] = {}
    for row in rows:
        facts = _facts_of(row)
        grouped.setdefault(facts.model_dump_json(), []).append(row)
    groups = []
    summary: dict[str, dict[str, int]] = {}
    for key, members in grouped.items():
        facts = StudyFacts.model_validate_json(key)
        sent = sorted({(o, b.mode) for b in members for o in json.loads(b.recipients or "[]")})
        now_routes = _routes(live.rules, facts)
        new_routes = _routes(candidate, facts)
        groups.append(
            FactsGroup(
                facts=facts,
                bundles=len(members),
                instances=sum(b.instance_count for b in members),
                sent=sent,
                current=now_routes,
                candidate=new_routes,
                changed=now_routes != new_routes,
            )
        )
        for label, routes in (("current", now_routes), ("candidate", new_routes)):
            for route in routes:
                name = f"{route.destination_org} {route.mode}" + (
                    "" if route.certain else " (undecided)"
                )
                summary.setdefault(name, {"current": 0, "candidate": 0})[label] += len(members)
    groups.sort(key=lambda g: (not g.changed, -g.bundles))
    return DryRun(
        org=org,
        site=site,
        days=days,
        current_version=live.version,
        bundles_considered=len(rows),
        groups=groups,
        summary=summary,
    )
