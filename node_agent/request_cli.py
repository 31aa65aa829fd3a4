"""`hexchange-agent request ...`: federated queries from the command line.

At the asking site: `find` (the patient's studies at other organizations), `status` (what each
organization answered), `list` (this site's requests). At the answering site: `waiting`
(requests that need a person's approval) and `approve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from node_agent.cli_config import load_or_exit
from node_agent.config import AgentConfig
from node_agent.requests import FindResult, RequestError, Requests

request_app = typer.Typer(
    help="Federated queries: find a patient's studies at other organizations.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # a message's paths and commands stay whole

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="HEXCHANGE_AGENT_CONFIG", help="agent.toml")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


_config = load_or_exit


def open_requests(cfg: AgentConfig) -> Requests:
    """The agent's request machinery, built as `hexchange-agent run` builds it."""
    from node_agent.app import pull_requested_study
    from node_agent.hubclient import HubClient
    from node_agent.identity import load_identity
    from node_agent.policy import PolicyCache
    from node_agent.recipients import RecipientDirectory
    from node_agent.spool import Spool
    from node_agent.state import AgentState

    identity = load_identity(cfg.agent.data_dir / "identity")
    client = HubClient(cfg.hub.node_url, identity, timeout=cfg.hub.timeout_seconds)
    policy = PolicyCache(cfg.agent.data_dir / "policy.json", identity.hub_receipt_key)
    directory = RecipientDirectory(client, identity)
    state = AgentState(cfg.agent.data_dir / "state.db")
    spool = Spool(cfg.agent.data_dir / "spool", state)
    return Requests(
        cfg, identity, client, state, directory.keys_for, policy.load,
        pull=lambda study_uid: pull_requested_study(cfg, state, spool, study_uid),
        pull_in_background=False,
    )  # fmt: skip


def _print_result(result: FindResult, as_json: bool) -> None:
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "request_id": result.request_id,
                    "matches": [m.model_dump(mode="json") for m in result.matches],
                    "refusals": [vars(r) for r in result.refusals],
                }
            )
        )
        return
    out.print(f"request {result.request_id}")
    table = Table("source", "study date", "modalities", "description", "instances", "study UID")
    for m in result.matches:
        table.add_row(
            m.institution_name or m.source_org, m.study_date or "", " ".join(m.modalities),
            escape(m.study_description or ""), str(m.instances or ""), m.study_uid,
        )  # fmt: skip
    out.print(table)
    for refusal in result.refusals:
        out.print(f"[yellow]{refusal.kind}[/yellow]: {escape(refusal.reason)}")


@request_app.command("find")
def find(
    config: ConfigOpt,
    patient_id: Annotated[str | None, typer.Option("--patient-id")] = None,
    name: Annotated[str | None, typer.Option("--name", help="DICOM PN, e.g. DOE^JANE")] = None,
    birth_date: Annotated[str | None, typer.Option("--birth-date", help="YYYYMMDD")] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="IssuerOfPatientID")] = None,
    org: Annotated[
        list[str] | None, typer.Option("--org", help="ask this organization; repeat for more")
    ] = None,
    hold: Annotated[
        bool, typer.Option("--hold", help="an offline organization answers when it returns")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for answers")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Ask other organizations for a patient's studies (sealed: the hub cannot read it)."""
    from pydantic import ValidationError

    from wire.query import QueryKeys

    cfg = _config(config)
    orgs = list(org or (cfg.query_retrieve.ask_orgs if cfg.query_retrieve else []))
    try:
        keys = QueryKeys(
            patient_id=patient_id, patient_name=name, patient_birth_date=birth_date,
            issuer_of_patient_id=issuer,
        )  # fmt: skip
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
        err.print(f"[red]invalid query keys:[/red] {fields}")
        raise typer.Exit(2) from exc
    try:
        result = open_requests(cfg).find(keys, orgs, timeout, hold=hold)
    except RequestError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    _print_result(result, as_json)


@request_app.command("status")
def status(config: ConfigOpt, request_id: str, as_json: JsonOpt = False) -> None:
    """What each asked organization answered (opened here; the hub holds them sealed)."""
    requests = open_requests(_config(config))
    try:
        current, _ = requests.client.request_status(request_id)
    except Exception as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    result = requests.collect(current)
    with requests.state.connect() as conn:
        row = conn.execute(
            "SELECT state, arrived, expected FROM retrieves WHERE request_id = ?", (request_id,)
        ).fetchone()
    retrieve = dict(row) if row is not None else None  # this site's count of what arrived
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "request_id": request_id,
                    "targets": [t.model_dump(mode="json") for t in current.targets],
                    "matches": [m.model_dump(mode="json") for m in result.matches],
                    "refusals": [vars(r) for r in result.refusals],
                    "retrieve": retrieve,
                }
            )
        )
        return
    for target in current.targets:
        out.print(f"{target.org}: {target.state} {target.outcome or ''} {target.match_count or ''}")
    if retrieve is not None:
        out.print(f"retrieve: {retrieve['state']} {retrieve['arrived']}/{retrieve['expected']}")
    _print_result(result, False)


@request_app.command("list")
def list_requests(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """This site's federated requests, newest first (ids, organizations, counts)."""
    requests = open_requests(_config(config))
    with requests.state.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                "SELECT f.request_id, f.kind, f.targets, f.created_at, f.summary, "
                "r.expected, r.arrived, r.state AS retrieve_state FROM fed_requests f "
                "LEFT JOIN retrieves r ON r.request_id = f.request_id "
                "ORDER BY f.created_at DESC LIMIT 200"
            )
        ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("request", "kind", "organizations", "summary", "retrieve")
    for row in rows:
        retrieve = (
            f"{row['retrieve_state']} {row['arrived']}/{row['expected']}"
            if row["retrieve_state"]
            else ""
        )
        table.add_row(
            row["request_id"], row["kind"], row["targets"], row["summary"] or "", retrieve
        )
    out.print(table)


@request_app.command("waiting")
def waiting(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Requests from other organizations waiting for approval here."""
    rows = open_requests(_config(config)).waiting_approvals()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        out.print(f"{row['request_id']}  from {row['requester_org']}/{row['requester_site']}")


@request_app.command("approve")
def approve(config: ConfigOpt, request_id: str) -> None:
    """Approve a waiting request: run it on the PACS and answer."""
    try:
        answer = open_requests(_config(config)).approve(request_id)
    except RequestError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    out.print(f"answered: {answer.outcome} ({len(answer.matches)} studies)")
