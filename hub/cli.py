"""`hexchange-hub`: initialise a hub, add organizations and sites, serve."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session, select

from certs.registry import CADirectory
from certs.tokens import issue_token
from hub.bootstrap import init_hub
from hub.db import create_schema, make_engine
from hub.enrollment import ensure_site
from hub.fleet_view import site_table
from hub.models import Bundle, Delivery, Organization, Site
from hub.settings import HubSettings
from wire.policy import PolicyMatch, PolicyRule, SitePolicy

app = typer.Typer(help="Hexchange hub: the centre of a federation.", no_args_is_help=True)
site_app = typer.Typer(help="Organizations and sites.", no_args_is_help=True)
app.add_typer(site_app, name="site")
policy_app = typer.Typer(help="Sharing policy of a site (deny by default).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
err = Console(stderr=True)

DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="HEXCHANGE_HUB_DATA_DIR", help="Hub data folder")
]


def _settings(data_dir: Path, **overrides: object) -> HubSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return HubSettings(data_dir=data_dir, **values)  # type: ignore[arg-type]


@app.command()
def init(
    data_dir: DataDir,
    network_name: Annotated[str, typer.Option(help="Name of the network CA")] = "Hexchange network",
) -> None:
    """Create the CA, the hub's TLS certificate, its receipt key and the database (idempotent)."""
    settings = _settings(data_dir)
    report = init_hub(settings, network_name=network_name)
    err.print(
        f"hub data folder {settings.data_dir}: CA {'created' if report.created_ca else 'kept'}, "
        f"server certificate {'created' if report.created_server_cert else 'kept'}, "
        f"receipt key {'created' if report.created_receipt_key else 'kept'}, database ready"
    )


@site_app.command("add")
def site_add(
    data_dir: DataDir,
    org: Annotated[str, typer.Option(help="Organization id, e.g. org-a")],
    site: Annotated[str, typer.Option(help="Site id, e.g. clinic-a")],
    org_name: Annotated[str, typer.Option(help="Display name of the organization")] = "",
    site_name: Annotated[str, typer.Option(help="Display name of the site")] = "",
    ttl_minutes: Annotated[int, typer.Option(help="Token lifetime in minutes")] = 60,
) -> None:
    """Register a site and print a one-time enrollment token for it on stdout."""
    from certs.identity import is_valid_name

    for label, value in (("--org", org), ("--site", site)):
        if not is_valid_name(value):
            err.print(
                f"[red]{label} {value!r} is not a valid id: use 1-63 lowercase letters, "
                "digits and hyphens, starting with a letter or digit"
            )
            raise typer.Exit(2)
    settings = _settings(data_dir)
    engine = make_engine(settings.db_url)
    create_schema(engine)
    with Session(engine) as session:
        ensure_site(session, org, site, org_name=org_name, site_name=site_name)
        session.commit()
    registry = CADirectory(settings.ca_dir)
    token = issue_token(registry.load(), org=org, site=site, ttl=timedelta(minutes=ttl_minutes))
    err.print(f"site {org}/{site} registered; one-time token valid {ttl_minutes} min:")
    sys.stdout.write(token + "\n")


@site_app.command("list")
def site_list(data_dir: DataDir) -> None:
    """The fleet: enrollment, last contact and what each agent last reported."""
    settings = _settings(data_dir)
    engine = make_engine(settings.db_url)
    with Session(engine) as session:
        table = site_table(session)
    Console().print(table)


def _require_site(session: Session, org: str, site: str) -> None:
    if session.exec(select(Site).where(Site.org == org, Site.site == site)).first() is None:
        err.print(f"[red]site {org}/{site} is not registered; run `hexchange-hub site add`")
        raise typer.Exit(2)


def _print_policy(current: SitePolicy, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(current.model_dump_json(indent=2) + "\n")
        return
    table = Table(
        "to",
        "mode",
        "modalities",
        "priority",
        "de-id options",
        title=f"{current.org}/{current.site} policy version {current.version}",
    )
    for rule in current.rules:
        table.add_row(
            rule.destination_org,
            rule.mode,
            ",".join(rule.match.modalities) or "any",
            str(rule.priority),
            ",".join(rule.deid_options) or "-",
        )
    Console().print(table)


@policy_app.command("add")
def policy_add(
    data_dir: DataDir,
    org: Annotated[str, typer.Option(help="Organization of the sending site")],
    site: Annotated[str, typer.Option(help="The sending site")],
    to: Annotated[str, typer.Option("--to", help="Destination organization")],
    mode: Annotated[str, typer.Option(help="identified or deidentified")] = "identified",
    modality: Annotated[list[str] | None, typer.Option(help="Only these modalities")] = None,
    priority: Annotated[int, typer.Option(help="Lower is sent first")] = 100,
    option: Annotated[list[str] | None, typer.Option(help="PS3.15 option (kebab case)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Allow a site to send matching studies to an organization (bumps the version)."""
    from pydantic import ValidationError

    from deidentify.profile import Profile
    from hub import policy

    try:
        rule = PolicyRule(
            destination_org=to,
            mode=mode,
            priority=priority,  # type: ignore[arg-type]
            deid_options=list(option or []),
            match=PolicyMatch(modalities=list(modality or [])),
        )
        Profile.from_names(rule.deid_options)
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]invalid rule:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    settings = _settings(data_dir)
    engine = make_engine(settings.db_url)
    create_schema(engine)
    with Session(engine) as session:
        _require_site(session, org, site)
        if session.get(Organization, to) is None:
            err.print(
                f"[red]organization {to!r} is not part of this network; add one of its "
                "sites first (`hexchange-hub site add`)"
            )
            raise typer.Exit(2)
        current = policy.add_rule(session, org, site, rule, actor="cli:network-admin")
    _print_policy(current, as_json)


@policy_app.command("show")
def policy_show(
    data_dir: DataDir,
    org: Annotated[str, typer.Option()],
    site: Annotated[str, typer.Option()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The current policy of a site."""
    from hub import policy

    settings = _settings(data_dir)
    with Session(make_engine(settings.db_url)) as session:
        _print_policy(policy.current(session, org, site), as_json)


@policy_app.command("clear")
def policy_clear(
    data_dir: DataDir, org: Annotated[str, typer.Option()], site: Annotated[str, typer.Option()]
) -> None:
    """Remove every rule: nothing more leaves the site (bumps the version)."""
    from hub import policy

    settings = _settings(data_dir)
    with Session(make_engine(settings.db_url)) as session:
        _require_site(session, org, site)
        _print_policy(
            policy.replace_rules(session, org, site, [], actor="cli:network-admin"), False
        )


audit_app = typer.Typer(help="The hub's append-only audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(data_dir: DataDir) -> None:
    """Check every link of the audit hash chain; exit 1 at the first break."""
    from hub.audit import verify_chain

    settings = _settings(data_dir)
    with Session(make_engine(settings.db_url)) as session:
        try:
            count = verify_chain(session)
        except ValueError as exc:
            err.print(f"[red]{escape(str(exc))}")
            raise typer.Exit(1) from exc
    err.print(f"audit chain intact: {count} events")


@app.command()
def bundles(data_dir: DataDir, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The index: bundles and their deliveries (no patient identity is held here)."""
    settings = _settings(data_dir)
    engine = make_engine(settings.db_url)
    with Session(engine) as session:
        rows = session.exec(select(Bundle)).all()
        out = []
        for b in rows:
            ds = session.exec(select(Delivery).where(Delivery.bundle_id == b.bundle_id)).all()
            out.append(
                {
                    "bundle_id": b.bundle_id,
                    "from": f"{b.sender_org}/{b.sender_site}",
                    "mode": b.mode,
                    "instances": b.instance_count,
                    "bytes": b.payload_bytes,
                    "state": b.state,
                    "deliveries": {d.recipient_org: d.state for d in ds},
                }
            )
    if as_json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    table = Table("bundle", "from", "mode", "instances", "bytes", "state", "deliveries")
    for item in out:
        table.add_row(
            item["bundle_id"],
            item["from"],
            item["mode"],
            str(item["instances"]),
            str(item["bytes"]),
            item["state"],
            json.dumps(item["deliveries"]),
        )
    Console().print(table)


@app.command()
def serve(
    data_dir: DataDir,
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    node_port: Annotated[int | None, typer.Option(help="Node API port (mutual TLS)")] = None,
    public_port: Annotated[int | None, typer.Option(help="Public API port (server TLS)")] = None,
    database_url: Annotated[str | None, typer.Option(envvar="HEXCHANGE_HUB_DATABASE_URL")] = None,
) -> None:
    """Serve the node API and the public API until interrupted."""
    from hub.server import run

    settings = _settings(
        data_dir, host=host, node_port=node_port, public_port=public_port, database_url=database_url
    )
    if not settings.receipt_key_file.exists():
        err.print(f"[red]{settings.data_dir} is not initialised: run `hexchange-hub init` first")
        raise typer.Exit(2)
    err.print(
        f"hub serving: node API https://{settings.host}:{settings.node_port} (mutual TLS), "
        f"public API https://{settings.host}:{settings.public_port}"
    )
    run(settings)


def main() -> None:
    app()
