"""`hexchange-hub`: parse arguments, build the services, call the domain functions, print.

Every command acts as the network admin (`Principal.cli()`, audited with the OS user name) and
calls the same service functions as the HTTP API, so both get the same checks. Anything a site
or a user controls is printed escaped (no rich markup, no terminal control sequences).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session

from hub.bootstrap import init_hub
from hub.errors import HubError
from hub.fleet_view import plain
from hub.principals import Principal
from hub.services import Services, build_services
from hub.settings import HubSettings
from wire.policy import PolicyMatch, PolicyRule, SitePolicy

app = typer.Typer(help="Hexchange hub: the centre of a federation.", no_args_is_help=True)
site_app = typer.Typer(help="Organizations and sites.", no_args_is_help=True)
app.add_typer(site_app, name="site")
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
app.add_typer(org_app, name="org")
token_app = typer.Typer(help="One-time enrollment tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
policy_app = typer.Typer(help="Sharing policy of a site (deny by default).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
user_app = typer.Typer(help="People: accounts and roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")
audit_app = typer.Typer(help="The hub's append-only audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
err = Console(stderr=True, soft_wrap=True)  # a message's paths and commands stay whole

DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="HEXCHANGE_HUB_DATA_DIR", help="Hub data folder")
]
Org = Annotated[str, typer.Option(help="Organization id, e.g. org-a")]
SiteOpt = Annotated[str, typer.Option("--site", help="Site id, e.g. clinic-a")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def safe(value: object, limit: int = 200) -> str:
    """Text from a site or a user, made safe for a terminal: one printable line without
    control or format characters, and no rich markup."""
    return escape(plain(value, limit).plain)


def _settings(data_dir: Path, **overrides: object) -> HubSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    return HubSettings(data_dir=data_dir, **values)  # type: ignore[arg-type]


@contextmanager
def _services(data_dir: Path) -> Iterator[tuple[Services, Session]]:
    """The same services `create_app` builds; domain errors become a clear message, exit 2."""
    settings = _settings(data_dir)
    if not settings.receipt_key_file.exists():
        err.print(f"{settings.data_dir} is not initialised: run `hexchange-hub init` first")
        raise typer.Exit(2)
    services = build_services(settings)
    try:
        with services.session() as session:
            yield services, session
    except HubError as exc:
        err.print(f"[red]{escape(exc.title)}:[/red] {safe(exc.detail, 2000)}")
        raise typer.Exit(2) from None
    finally:
        services.close()


def _json(value: Any) -> None:
    from pydantic import TypeAdapter

    sys.stdout.write(TypeAdapter(type(value)).dump_json(value, indent=2).decode() + "\n")


@app.command()
def init(
    data_dir: DataDir,
    network_name: Annotated[str, typer.Option(help="Name of the network CA")] = "Hexchange network",
) -> None:
    """Create the CA, the hub's TLS certificate, its signing key and the database (idempotent)."""
    settings = _settings(data_dir)
    report = init_hub(settings, network_name=network_name)
    err.print(
        f"hub data folder {settings.data_dir}: CA {'created' if report.created_ca else 'kept'}, "
        f"server certificate {'created' if report.created_server_cert else 'kept'}, "
        f"receipt key {'created' if report.created_receipt_key else 'kept'}, database ready"
    )


# --- organizations and sites ------------------------------------------------------------


@org_app.command("add")
def org_add(
    data_dir: DataDir, org: Org, name: Annotated[str, typer.Option(help="Display name")] = ""
) -> None:
    """Create an organization."""
    from hub.sites import service as sites

    with _services(data_dir) as (_, session):
        view = sites.create_org(session, Principal.cli(), org, name)
    err.print(f"organization {safe(view.id)} created")


@org_app.command("list")
def org_list(data_dir: DataDir, as_json: AsJson = False) -> None:
    from hub.sites import service as sites

    with _services(data_dir) as (_, session):
        rows = sites.list_orgs(session, Principal.cli())
    if as_json:
        _json(rows)
        return
    table = Table("org", "name", "sites", "created")
    for row in rows:
        table.add_row(safe(row.id), safe(row.name), str(row.sites), f"{row.created_at:%Y-%m-%d}")
    Console().print(table)


@site_app.command("add")
def site_add(
    data_dir: DataDir,
    org: Org,
    site: SiteOpt,
    org_name: Annotated[str, typer.Option(help="Display name of the organization")] = "",
    site_name: Annotated[str, typer.Option(help="Display name of the site")] = "",
    ttl_minutes: Annotated[int, typer.Option(help="Token lifetime in minutes")] = 60,
) -> None:
    """Register a site (and its organization if new); print a one-time enrollment token."""
    from hub.errors import NotFound
    from hub.permissions import Permission
    from hub.sites import service as sites

    actor = Principal.cli()
    with _services(data_dir) as (services, session):
        try:
            sites.require_org(session, actor, org, Permission.SITE_MANAGE)
        except NotFound:
            sites.create_org(session, actor, org, org_name)
        try:
            sites.get_site(session, services.ca, actor, org, site)
        except NotFound:
            sites.create_site(session, services.ca, actor, org, site, site_name)
        issued = sites.issue_enrollment_token(session, services.ca, actor, org, site, ttl_minutes)
    err.print(
        f"site {org}/{site} registered; one-time token valid {ttl_minutes} min. At the site run:\n"
        f"  hexchange-agent enroll --config /etc/hexchange/agent.toml --token <the token below>"
    )
    sys.stdout.write(issued.token + "\n")


@site_app.command("list")
def site_list(data_dir: DataDir, as_json: AsJson = False) -> None:
    """The fleet: enrollment, last contact and what each agent last reported."""
    from hub.fleet import service as fleet
    from hub.fleet_view import site_table

    with _services(data_dir) as (services, session):
        if as_json:
            _json(fleet.fleet(session, services.ca, Principal.cli()))
            return
        table = site_table(session, services.ca)
    Console().print(table)


@site_app.command("revoke")
def site_revoke(
    data_dir: DataDir,
    org: Org,
    site: SiteOpt,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log)")] = "",
) -> None:
    """Revoke every certificate of a site: its next request to the node API is refused."""
    from hub.sites import service as sites

    with _services(data_dir) as (services, session):
        sites.revoke_site(session, services.ca, Principal.cli(), org, site, reason)
    err.print(f"site {org}/{site} revoked; issue a new token to let it enroll again")


@site_app.command("remove")
def site_remove(data_dir: DataDir, org: Org, site: SiteOpt) -> None:
    """Revoke and forget a site (its bundles and the audit log stay)."""
    from hub.sites import service as sites

    with _services(data_dir) as (services, session):
        sites.remove_site(session, services.ca, Principal.cli(), org, site)
    err.print(f"site {org}/{site} removed")


@token_app.command("list")
def token_list(
    data_dir: DataDir,
    org: Org,
    site: Annotated[str | None, typer.Option("--site")] = None,
    as_json: AsJson = False,
) -> None:
    """Enrollment tokens of an organization and what became of them."""
    from hub.sites import service as sites

    with _services(data_dir) as (services, session):
        rows = sites.list_enrollment_tokens(session, services.ca, Principal.cli(), org, site)
    if as_json:
        _json(rows)
        return
    table = Table("token id", "site", "state", "expires", "created by")
    for row in rows:
        table.add_row(
            row.token_id, safe(row.site), row.state, f"{row.expires_at:%Y-%m-%d %H:%M}",
            safe(row.created_by),
        )  # fmt: skip
    Console().print(table)


@token_app.command("cancel")
def token_cancel(
    data_dir: DataDir, org: Org, token_id: Annotated[str, typer.Option("--token-id")]
) -> None:
    """Cancel an unused token: enrolling with it is refused from now on."""
    from hub.sites import service as sites

    with _services(data_dir) as (services, session):
        sites.cancel_enrollment_token(session, services.ca, Principal.cli(), org, token_id)
    err.print(f"token {token_id} cancelled")


# --- people -----------------------------------------------------------------------------


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        return password_file.read_text().rstrip("\n")
    env = os.environ.get("HEXCHANGE_HUB_NEW_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        err.print("[red]the passwords differ")
        raise typer.Exit(2)
    return first


@user_app.command("add")
def user_add(
    data_dir: DataDir,
    username: Annotated[str, typer.Option(help="Sign-in name, e.g. alice@org-a")],
    role: Annotated[str, typer.Option(help="network-admin, org-admin, clinician or researcher")],
    org: Annotated[str | None, typer.Option(help="Organization (not for network-admin)")] = None,
    display_name: Annotated[str, typer.Option(help="Full name shown in the UI")] = "",
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the password from this file (else HEXCHANGE_HUB_NEW_PASSWORD, "
                     "stdin, or a prompt)"),
    ] = None,
) -> None:  # fmt: skip
    """Create an account (the first network admin is made this way, on the hub host)."""
    from hub.users import service as users

    password = _read_password(password_file)
    with _services(data_dir) as (services, session):
        view = users.create_user(
            session, Principal.cli(), services.passwords, username=username, role=role,
            org=org, password=password, display_name=display_name,
        )  # fmt: skip
    err.print(f"user {safe(view.username)} ({view.role}) created; sign in at the public API")


@user_app.command("list")
def user_list(data_dir: DataDir, as_json: AsJson = False) -> None:
    from hub.users import service as users

    with _services(data_dir) as (_, session):
        rows = users.list_users(session, Principal.cli())
    if as_json:
        _json(rows)
        return
    table = Table("id", "username", "role", "org", "locked", "last sign-in")
    for row in rows:
        table.add_row(
            str(row.id), safe(row.username), row.role, safe(row.org or "-"),
            "yes" if row.locked else "no",
            f"{row.last_login_at:%Y-%m-%d %H:%M}" if row.last_login_at else "never",
        )  # fmt: skip
    Console().print(table)


@user_app.command("lock")
def user_lock(
    data_dir: DataDir,
    user_id: Annotated[int, typer.Option("--id")],
    unlock: Annotated[bool, typer.Option("--unlock", help="Unlock instead")] = False,
) -> None:
    """Lock (or unlock) an account: it loses access on its next request."""
    from hub.users import service as users

    with _services(data_dir) as (services, session):
        users.update_user(session, Principal.cli(), services.passwords, user_id, locked=not unlock)
    err.print(f"user {user_id} {'unlocked' if unlock else 'locked'}")


@user_app.command("passwd")
def user_passwd(
    data_dir: DataDir,
    user_id: Annotated[int, typer.Option("--id")],
    password_file: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Set a new password (ends the account's sign-in sessions)."""
    from hub.users import service as users

    password = _read_password(password_file)
    with _services(data_dir) as (services, session):
        users.update_user(session, Principal.cli(), services.passwords, user_id, password=password)
    err.print(f"password of user {user_id} changed")


# --- policy -----------------------------------------------------------------------------


def _print_policy(current: SitePolicy, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(current.model_dump_json(indent=2) + "\n")
        return
    table = Table(
        "to", "mode", "match", "priority", "de-id options", "pixels",
        title=f"{current.org}/{current.site} policy version {current.version}",
    )  # fmt: skip
    for rule in current.rules:
        criteria = rule.match.model_dump(exclude_defaults=True)
        match = json.dumps(criteria) if criteria else "any"
        options = ",".join(rule.deid_options) or "-"
        table.add_row(
            safe(rule.destination_org), rule.mode, safe(match), str(rule.priority), safe(options),
            rule.pixel_policy,
        )  # fmt: skip
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
    reason: Annotated[str, typer.Option(help="Why (kept with the version)")] = "rule added",
    as_json: AsJson = False,
) -> None:
    """Allow a site to send matching studies to an organization (a new version)."""
    from pydantic import ValidationError

    from hub.policy import service as policies

    try:
        rule = PolicyRule(
            destination_org=to,
            mode=mode,  # validated by the model
            priority=priority,
            deid_options=list(option or []),
            match=PolicyMatch(modalities=list(modality or [])),
        )
    except ValidationError as exc:
        err.print(f"[red]invalid rule:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    actor = Principal.cli()
    with _services(data_dir) as (_, session):
        existing = policies.show(session, actor, org, site).rules
        kept = [
            r for r in existing
            if (r.destination_org, r.mode, r.match) != (rule.destination_org, rule.mode, rule.match)
        ]  # fmt: skip
        current = policies.save(session, actor, org, site, [*kept, rule], reason=reason)
    _print_policy(current, as_json)


@policy_app.command("set")
def policy_set(
    data_dir: DataDir,
    org: Org,
    site: SiteOpt,
    rules_file: Annotated[Path, typer.Option(help="JSON file: a list of rules")],
    reason: Annotated[str, typer.Option(help="Why (kept with the version)")],
    as_json: AsJson = False,
) -> None:
    """Replace the whole rule set from a JSON file (a new version)."""
    from hub.policy import service as policies

    try:
        raw = json.loads(rules_file.read_text())
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read {rules_file}:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    with _services(data_dir) as (_, session):
        rules = policies.parse_rules(raw)
        current = policies.save(session, Principal.cli(), org, site, rules, reason=reason)
    _print_policy(current, as_json)


@policy_app.command("show")
def policy_show(data_dir: DataDir, org: Org, site: SiteOpt, as_json: AsJson = False) -> None:
    """The current policy of a site."""
    from hub.policy import service as policies

    with _services(data_dir) as (_, session):
        _print_policy(policies.show(session, Principal.cli(), org, site), as_json)


@policy_app.command("clear")
def policy_clear(data_dir: DataDir, org: Org, site: SiteOpt) -> None:
    """Remove every rule: nothing more leaves the site (a new version)."""
    from hub.policy import service as policies

    with _services(data_dir) as (_, session):
        current = policies.save(session, Principal.cli(), org, site, [], reason="all rules removed")
    _print_policy(current, False)


@policy_app.command("history")
def policy_history(data_dir: DataDir, org: Org, site: SiteOpt, as_json: AsJson = False) -> None:
    """Every version: who, when, why."""
    from hub.policy import service as policies

    with _services(data_dir) as (_, session):
        rows = policies.list_versions(session, Principal.cli(), org, site)
    if as_json:
        _json(rows)
        return
    table = Table("version", "when", "who", "rules", "why")
    for row in rows:
        table.add_row(
            str(row.version), f"{row.created_at:%Y-%m-%d %H:%M}", safe(row.author),
            str(len(row.rules)), safe(row.reason, 120),
        )  # fmt: skip
    Console().print(table)


@policy_app.command("rollback")
def policy_rollback(
    data_dir: DataDir,
    org: Org,
    site: SiteOpt,
    to_version: Annotated[int, typer.Option("--to-version")],
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Make an earlier version's rules current again (as a new version)."""
    from hub.policy import service as policies

    with _services(data_dir) as (_, session):
        current = policies.rollback(session, Principal.cli(), org, site, to_version, reason=reason)
    _print_policy(current, False)


# --- audit and index --------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir,
    checkpoint_file: Annotated[
        Path | None, typer.Option(help="A checkpoint exported earlier (`audit checkpoint`)")
    ] = None,
) -> None:
    """Check every link, the head and the signed checkpoints; exit 1 at the first break."""
    from hub.audit.chain import AuditBroken, verify_chain, verify_external_checkpoint

    with _services(data_dir) as (services, session):
        try:
            report = verify_chain(session, services.signing_key.public_key())
            if checkpoint_file is not None:
                saved = json.loads(checkpoint_file.read_text())
                verify_external_checkpoint(report, session, int(saved["seq"]), str(saved["hash"]))
        except AuditBroken as exc:
            err.print(f"[red]{escape(str(exc))}")
            raise typer.Exit(1) from exc
    err.print(
        f"audit chain intact: {report.events} events, {report.checkpoints} signed checkpoints"
    )


@audit_app.command("checkpoint")
def audit_checkpoint(data_dir: DataDir) -> None:
    """Sign the newest event now and print the checkpoint (keep a copy off the hub)."""
    from hub.audit.chain import checkpoint
    from hub.models import AuditCheckpoint, AuditHead

    with _services(data_dir) as (services, session):
        checkpoint(session, services.signing_key)
        head = session.get(AuditHead, 1)
        row = session.get(AuditCheckpoint, head.seq) if head else None
    if row is None:
        err.print("the audit log is empty")
        return
    sys.stdout.write(
        json.dumps({"seq": row.seq, "hash": row.hash, "signature": row.signature}) + "\n"
    )


@audit_app.command("export")
def audit_export(
    data_dir: DataDir,
    org: Annotated[str | None, typer.Option(help="Only this organization")] = None,
    limit: Annotated[int, typer.Option()] = 1000,
) -> None:
    """The newest events as FHIR R4 AuditEvent resources (a JSON Bundle on stdout)."""
    from hub.audit import fhir
    from hub.audit import query as audit_query

    with _services(data_dir) as (_, session):
        events = audit_query.query(session, Principal.cli(), org=org, limit=limit)
    sys.stdout.write(json.dumps(fhir.bundle(events), indent=2) + "\n")


@app.command()
def bundles(data_dir: DataDir, as_json: AsJson = False) -> None:
    """The index: bundles and their deliveries (no patient identity is held here)."""
    from sqlmodel import select

    from hub.models import Bundle, Delivery

    with _services(data_dir) as (_, session):
        out: list[dict[str, Any]] = []
        for b in session.exec(select(Bundle)).all():
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
            item["bundle_id"], safe(item["from"]), item["mode"], str(item["instances"]),
            str(item["bytes"]), item["state"], safe(json.dumps(item["deliveries"])),
        )  # fmt: skip
    Console().print(table)


@app.command()
def serve(
    data_dir: DataDir,
    host: Annotated[str | None, typer.Option(help="Address to bind")] = None,
    node_port: Annotated[int | None, typer.Option(help="Node API port (mutual TLS)")] = None,
    public_port: Annotated[int | None, typer.Option(help="Public API port (server TLS)")] = None,
    database_url: Annotated[str | None, typer.Option(envvar="HEXCHANGE_HUB_DATABASE_URL")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            envvar="HEXCHANGE_HUB_WORKERS",
            help="Hub processes serving both listeners (default 1; more needs PostgreSQL)",
        ),
    ] = None,
) -> None:
    """Serve the node API and the public API until interrupted."""
    from hub.server import WorkersRefused, check_workers, run

    settings = _settings(
        data_dir, host=host, node_port=node_port, public_port=public_port,
        database_url=database_url, workers=workers,
    )  # fmt: skip
    if not settings.receipt_key_file.exists():
        err.print(f"[red]{settings.data_dir} is not initialised: run `hexchange-hub init` first")
        raise typer.Exit(2)
    try:
        check_workers(settings)
    except WorkersRefused as exc:
        err.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(2) from None
    err.print(
        f"hub serving: node API https://{settings.host}:{settings.node_port} (mutual TLS), "
        f"public API https://{settings.host}:{settings.public_port}, "
        f"{settings.workers} process{'es' if settings.workers > 1 else ''}"
    )
    run(settings)


def main(argv: list[str] | None = None) -> None:
    from hub.server import redact_logs

    redact_logs()  # e.g. `collection` commands read headers: pydicom's warnings quote values
    app(args=argv)


# research collections (its module uses the helpers above, so it is imported last)
from hub.collections_cli import collection_app  # noqa: E402

app.add_typer(collection_app, name="collection")
