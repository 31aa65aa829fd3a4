"""`hexchange-hub`: initialise a hub, add organizations and sites, serve."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from certs.registry import CADirectory
from certs.tokens import issue_token
from hub.bootstrap import init_hub
from hub.db import create_schema, make_engine
from hub.enrollment import ensure_site
from hub.models import Bundle, Delivery, Site
from hub.settings import HubSettings

app = typer.Typer(help="Hexchange hub: the centre of a federation.", no_args_is_help=True)
site_app = typer.Typer(help="Organizations and sites.", no_args_is_help=True)
app.add_typer(site_app, name="site")
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
    """Sites with enrollment state and last contact."""
    settings = _settings(data_dir)
    engine = make_engine(settings.db_url)
    table = Table("org", "site", "enrolled", "certificate serial", "last seen")
    with Session(engine) as session:
        for row in session.exec(select(Site).order_by(Site.org, Site.site)):
            table.add_row(
                row.org,
                row.site,
                "yes" if row.enrolled_at else "no",
                row.certificate_serial or "-",
                str(row.last_seen_at or "-"),
            )
    Console().print(table)


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
