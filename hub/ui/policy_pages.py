"""Web UI: a site's sharing policy as a form, its dry run beside the current version, its
version history with diff and roll back."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlmodel import Session
from starlette.datastructures import FormData

from hub.api.deps import OrgPath, SessionDep, SitePath
from hub.errors import InvalidRequest
from hub.permissions import Permission, holds
from hub.policy import dryrun
from hub.policy import service as policies
from hub.principals import Principal
from hub.ui.web import PolicyReadUi, PolicyWriteUi, UiRoute, render
from wire.collection_key import COLLECTION_PREFIX
from wire.policy import PixelPolicy, PolicyRule

router = APIRouter(
    prefix="/ui/orgs/{org}/sites/{site}/policy", route_class=UiRoute, include_in_schema=False
)

LISTS = ("modalities", "sop_classes", "body_parts", "calling_aes", "station_names")
TEXTS = ("study_description", "min_age_years", "max_age_years")
MAX_RULES = 256
PIXEL_POLICIES = get_args(PixelPolicy)  # the wire model's choices, whatever they are
Version = Annotated[int, Query(ge=0, le=2**31 - 1)]


async def form_data(request: Request) -> FormData:
    return await request.form()


FormDep = Annotated[FormData, Depends(form_data)]


def rule_fields(rule: PolicyRule) -> dict[str, str]:
    """A rule as the form's text fields."""
    match = rule.match
    out = {
        "destination_org": rule.destination_org,
        "mode": rule.mode,
        "priority": str(rule.priority),
        "deid_options": ", ".join(rule.deid_options),
        "recipe": rule.recipe or "",
        "pixel_policy": rule.pixel_policy,
    }
    for name in LISTS:
        out[name] = ", ".join(getattr(match, name))
    for name in TEXTS:
        value = getattr(match, name)
        out[name] = "" if value is None else str(value)
    return out


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def fields_from_form(form: FormData) -> list[dict[str, str]]:
    """The rows the user filled in (a row without destination is ignored; `delete` drops it)."""
    rows = []
    for i in range(MAX_RULES + 1):
        prefix = f"r{i}."
        if f"{prefix}destination_org" not in form:
            break
        row = {k[len(prefix) :]: str(v) for k, v in form.multi_items() if k.startswith(prefix)}
        if row.get("delete") or not row.get("destination_org", "").strip():
            continue
        rows.append(row)
    return rows


def rules_from_fields(rows: list[dict[str, str]]) -> list[PolicyRule]:
    raw = []
    for row in rows:
        match: dict[str, object] = {name: _split(row.get(name, "")) for name in LISTS}
        for name in TEXTS:
            value = row.get(name, "").strip()
            if value:
                match[name] = value
        recipe = row.get("recipe", "").replace("\r\n", "\n")
        raw.append(
            {
                "destination_org": row.get("destination_org", "").strip(),
                "mode": row.get("mode", ""),
                "priority": row.get("priority", "").strip() or "100",
                "deid_options": _split(row.get("deid_options", "")),
                "recipe": recipe if recipe.strip() else None,
                "pixel_policy": row.get("pixel_policy")
                or PolicyRule.model_fields["pixel_policy"].default,
                "match": match,
            }
        )
    return policies.parse_rules(raw)


def _page(
    request: Request, session: Session, actor: Principal, org: str, site: str, *,
    rows: list[dict[str, str]] | None = None, dry: dryrun.DryRun | None = None,
    error: str | None = None, diff: policies.PolicyDiff | None = None, status: int = 200,
    days: int = 30,
) -> Response:  # fmt: skip
    policy = policies.show(session, actor, org, site)
    return render(
        request, "policy.html", status, org=org, site=site, policy=policy,
        rows=rows if rows is not None else [rule_fields(r) for r in policy.rules],
        versions=policies.list_versions(session, actor, org, site), dry=dry, error=error,
        diff=diff, days=days, may_write=holds(actor, Permission.POLICY_WRITE),
        pixel_policies=PIXEL_POLICIES,
        blank=rule_fields(PolicyRule(destination_org="x", mode="deidentified")) | {
            "destination_org": ""},
        destinations=_destinations(session, actor),
    )  # fmt: skip


def _destinations(session: Session, actor: Principal) -> list[tuple[str, str]]:
    """Suggestions for a rule's destination: the organizations and research collections the
    user can see (any other organization's id can still be typed)."""
    from hub.collections import service as collections
    from hub.sites import service as sites

    suggested = [(o.id, o.name) for o in sites.list_orgs(session, actor)]
    if holds(actor, Permission.COLLECTION_READ):
        suggested += [
            (f"{COLLECTION_PREFIX}{c.name}", f"research collection {c.name} (de-identified only)")
            for c in collections.list_readable(session, actor)
        ]
    return suggested


@router.get("")
def policy_page(
    request: Request, org: OrgPath, site: SitePath, actor: PolicyReadUi, session: SessionDep,
    from_version: Annotated[int | None, Query(alias="from", ge=0, le=2**31 - 1)] = None,
    to_version: Annotated[int | None, Query(alias="to", ge=0, le=2**31 - 1)] = None,
) -> Response:  # fmt: skip
    diff = None
    if from_version is not None and to_version is not None:
        diff = policies.diff(session, actor, org, site, from_version, to_version)
    return _page(request, session, actor, org, site, diff=diff)


@router.post("/dry-run")
def dry_run(
    request: Request, org: OrgPath, site: SitePath, actor: PolicyReadUi, session: SessionDep,
    form: FormDep, days: Annotated[int, Form(ge=1, le=dryrun.MAX_DAYS)] = 30,
) -> Response:  # fmt: skip
    rows = fields_from_form(form)
    try:
        result = dryrun.dry_run(session, actor, org, site, rules_from_fields(rows), days=days)
    except InvalidRequest as exc:
        return _page(request, session, actor, org, site, rows=rows, error=exc.detail,
                     status=422, days=days)  # fmt: skip
    return _page(request, session, actor, org, site, rows=rows, dry=result, days=days)


@router.post("")
def save(
    request: Request, org: OrgPath, site: SitePath, actor: PolicyWriteUi, session: SessionDep,
    form: FormDep, reason: Annotated[str, Form(max_length=500)] = "",
    expected_version: Annotated[int | None, Form(ge=0)] = None,
) -> Response:  # fmt: skip
    rows = fields_from_form(form)
    try:
        policies.save(
            session, actor, org, site, rules_from_fields(rows), reason=reason,
            expected_version=expected_version,
        )  # fmt: skip
    except InvalidRequest as exc:
        return _page(request, session, actor, org, site, rows=rows, error=exc.detail, status=422)
    return RedirectResponse(f"/ui/orgs/{org}/sites/{site}/policy", status_code=303)


@router.post("/rollback")
def rollback(
    org: OrgPath, site: SitePath, actor: PolicyWriteUi, session: SessionDep,
    to_version: Annotated[int, Form(ge=0, le=2**31 - 1)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:  # fmt: skip
    policies.rollback(session, actor, org, site, to_version, reason=reason)
    return RedirectResponse(f"/ui/orgs/{org}/sites/{site}/policy", status_code=303)
