"""`hexchange-hub collection ...`: research collections from the hub host (as the network
admin, audited with the OS user name), through the same service functions as the API."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub.cli import AsJson, DataDir, _json, _services, safe
from hub.collections import service, versions
from hub.collections.runtime import key_provider
from hub.principals import Principal

collection_app = typer.Typer(
    help="Research collections served over DICOMweb.", no_args_is_help=True
)
Name = Annotated[str, typer.Argument(help="Collection name, e.g. lung-screening-2026")]


@collection_app.command("create")
def create(
    name: Name,
    data_dir: DataDir,
    org: Annotated[str, typer.Option(help="Owning organization")],
    description: Annotated[str, typer.Option(help="What the collection is for")] = "",
    option: Annotated[
        list[str] | None,
        typer.Option(help="De-identification option the collection accepts (repeatable)"),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="Operator key file (default <data-dir>/collection.key)")
    ] = None,
) -> None:
    with _services(data_dir) as (services, session):
        settings = services.settings
        if key_file is not None:
            settings = settings.model_copy(update={"collection_key_file": key_file})
        made = service.create(
            session, Principal.cli(), key_provider(settings), services.signing_key,
            name=name, org=org, description=description, profile=list(option or []),
        )  # fmt: skip
    typer.echo(f"collection {made.name} created for {made.org} (key {made.key_id})")


@collection_app.command("list")
def list_(data_dir: DataDir, as_json: AsJson = False) -> None:
    with _services(data_dir) as (_, session):
        rows = service.list_readable(session, Principal.cli())
    if as_json:
        _json([dataclasses.asdict(r) for r in rows])
        return
    table = Table("collection", "org", "options", "description")
    for row in rows:
        table.add_row(safe(row.name), safe(row.org), safe(",".join(row.profile)),
                      safe(row.description))  # fmt: skip
    Console().print(table)


@collection_app.command("grant")
def grant(name: Name, username: str, data_dir: DataDir) -> None:
    with _services(data_dir) as (_, session):
        service.grant(session, Principal.cli(), name, username)
    typer.echo(f"{username} may read collection {name}")


@collection_app.command("revoke")
def revoke(name: Name, username: str, data_dir: DataDir) -> None:
    with _services(data_dir) as (_, session):
        had = service.revoke(session, Principal.cli(), name, username)
    typer.echo(
        f"{username} may no longer read collection {name}"
        if had
        else f"{username} held no grant for collection {name}"
    )


@collection_app.command("publish")
def publish(
    name: Name,
    data_dir: DataDir,
    note: Annotated[str, typer.Option(help="What this version is, e.g. a paper")] = "",
    as_json: AsJson = False,
) -> None:
    with _services(data_dir) as (_, session):
        made = versions.publish(session, Principal.cli(), name, note)
    if as_json:
        _json(dataclasses.asdict(made))
        return
    typer.echo(
        f"collection {name} version {made.version}: {made.instance_count} instances, "
        f"content hash {made.content_hash}"
    )


@collection_app.command("ingest")
def ingest(data_dir: DataDir) -> None:
    """Ingest the queued collection bundles now, failed ones too (e.g. after the key file was
    put back); a bundle a running hub is ingesting is left to it."""
    from hub.collections.bundles import ingest_pending
    from hub.collections.lease import IngestLeases
    from hub.collections.runtime import instance_files

    with _services(data_dir) as (services, session):
        settings = services.settings
        stored = ingest_pending(
            session, services.blobs, instance_files(services), lambda: key_provider(settings),
            IngestLeases(services.engine, settings.data_dir / "locks"),
            batch_size=settings.collection_ingest_batch,
        )  # fmt: skip
    typer.echo(f"{stored} instances stored from queued collection bundles")
