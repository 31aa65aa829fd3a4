"""`hexchange-agent`: enroll, run, status, queue, quarantine, synth-study."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import structlog
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from node_agent.cli_config import load_or_exit
from node_agent.identity import NotEnrolled
from node_agent.state import AgentState

app = typer.Typer(
    help="Hexchange node agent: the clinic side of a federation.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)  # a message's paths and commands stay whole

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="HEXCHANGE_AGENT_CONFIG", help="agent.toml")
]


def _configure_logging(json_logs: bool) -> None:
    from deidentify.log_redaction import install as install_log_redaction
    from deidentify.log_redaction import structlog_exc_info

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("pynetdicom", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog_exc_info,  # tracebacks without exception messages (values)
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    install_log_redaction()  # library log lines and warnings without the values they quote


@app.command()
def enroll(
    config: ConfigOpt,
    token: Annotated[str, typer.Option(help="One-time enrollment token from the network admin")],
) -> None:
    """Make this site's keys, send a CSR with the token, and keep the issued certificate."""
    from node_agent.enroll import EnrollmentFailed
    from node_agent.enroll import enroll as do_enroll

    cfg = load_or_exit(config)
    try:
        identity = do_enroll(cfg, token)
    except EnrollmentFailed as exc:
        err.print(f"[red]enrollment failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    err.print(
        f"enrolled as {identity.org}/{identity.site}; certificate serial {identity.serial_hex}, "
        f"valid until {identity.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )


@app.command()
def run(
    config: ConfigOpt,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines")] = False,
) -> None:
    """Run the DICOM receiver, pipeline, uploader and inbound deliveries until stopped."""
    from node_agent.app import build_agent
    from node_agent.malloc_arenas import cap_malloc_arenas

    cap_malloc_arenas()  # before the agent's threads start allocating

    _configure_logging(json_logs)
    cfg = load_or_exit(config)
    try:
        agent = build_agent(cfg)
    except NotEnrolled as exc:
        err.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(2) from exc

    def _stop(_sig: int, _frame: object) -> None:
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run()


@app.command()
def status(config: ConfigOpt) -> None:
    """Queue and pipeline counts from the agent's state database."""
    cfg = load_or_exit(config)
    state = AgentState(cfg.agent.data_dir / "state.db")
    table = Table("what", "count")
    for key, value in sorted(state.counts().items()):
        table.add_row(key, str(value))
    Console().print(table)
    with state.connect() as conn:
        rows = conn.execute(
            "SELECT bundle_id, dest_org, mode, state, attempts, last_error FROM outbox "
            "ORDER BY created_at DESC LIMIT 20"
        ).fetchall()
    if rows:
        outbox = Table("bundle", "to", "mode", "state", "attempts", "last error")
        for r in rows:
            outbox.add_row(
                r["bundle_id"],
                r["dest_org"],
                r["mode"],
                r["state"],
                str(r["attempts"]),
                r["last_error"] or "",
            )
        Console().print(outbox)
    with state.connect() as conn:
        deliveries = conn.execute(
            "SELECT bundle_id, sender, state, attempts, last_error FROM inbound "
            "WHERE state != 'acked' ORDER BY updated_at DESC LIMIT 20"
        ).fetchall()
    if deliveries:
        inbound = Table("inbound delivery", "from", "state", "attempts", "last error")
        for r in deliveries:
            inbound.add_row(
                r["bundle_id"], r["sender"], r["state"], str(r["attempts"]), r["last_error"] or ""
            )
        Console().print(inbound)


@app.command()
def pull(
    config: ConfigOpt,
    since: Annotated[
        str | None, typer.Option(help="First study date, YYYYMMDD (default: lookback_days)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last study date, YYYYMMDD")] = None,
    modality: Annotated[
        list[str] | None, typer.Option("--modality", "-m", help="e.g. CT; repeat for more")
    ] = None,
    study_uid: Annotated[
        list[str] | None, typer.Option("--study-uid", help="Only this study; repeat for more")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be fetched")
    ] = False,
    priority: Annotated[
        int,
        typer.Option(
            help="Upload priority of the studies found (lower is sent first; at or below "
            "[upload] urgent_priority also outside off-peak windows). The default puts a "
            "clinician's request before bulk sharing; their bundles already queued move up too",
            min=0,
            max=1000,
        ),
    ] = 10,
) -> None:
    """Pull studies from the PACS now: C-FIND, then C-MOVE to this agent or C-GET."""
    import datetime as dt

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from node_agent.dicom.pull import Puller, PullError, PullQuery, PullResult, RemoteStudy
    from node_agent.dicom.scp import start_scp
    from node_agent.spool import Spool

    cfg = load_or_exit(config)
    if cfg.pacs is None:
        err.print(
            f"[red]{config} has no \\[pacs] section.[/red] Add one with host, port and ae_title "
            "(see node_agent/dicom/pacs_config.py)."
        )
        raise typer.Exit(2)

    def _date(option: str, value: str | None) -> dt.date | None:
        if value is None:
            return None
        try:
            return dt.datetime.strptime(value, "%Y%m%d").date()
        except ValueError as exc:
            err.print(f"[red]{option} {value!r} is not a date YYYYMMDD[/red]")
            raise typer.Exit(2) from exc

    first, last = _date("--since", since), _date("--until", until)
    if first is None and last is None and not study_uid:
        first = dt.date.today() - dt.timedelta(days=cfg.pacs.lookback_days)
    query = PullQuery(
        since=first,
        until=last,
        modalities=tuple(m.upper() for m in (modality or cfg.pacs.query.modalities)),
        study_uids=tuple(study_uid or ()),
        keys=tuple(cfg.pacs.query.keys.items()),
    )
    state = AgentState(cfg.agent.data_dir / "state.db")
    spool = Spool(cfg.agent.data_dir / "spool", state)
    from node_agent.dicom.scp import receive_in_chunks

    receive_in_chunks()  # C-GET and C-MOVE alike: instances go to disk as they arrive
    puller = Puller.from_config(cfg, state, spool)
    try:
        todo, done = puller.plan(query, retry_now=True)
    except PullError as exc:
        err.print(f"[red]query failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    results = [
        PullResult(s, "skipped", puller.skip_reason(s), puller.local_count(s.study_uid))
        for s in done
    ]
    if not dry_run:
        puller.ask_priority([s for s, _why in todo] + done, priority)
    server = None
    if todo and not dry_run and cfg.pacs.retrieve == "move":
        try:  # the agent is not running: receive the C-MOVE here for the pull's duration
            server = start_scp(cfg.dicom, spool, cfg.pipeline.quiet_period_for)
        except OSError:
            err.print(
                f"port {cfg.dicom.port} is in use: assuming the running agent receives the "
                f"C-MOVE as AE {puller.move_destination}"
            )
    try:
        if dry_run:
            results += [PullResult(s, "planned", f"would fetch: {why}") for s, why in todo]
        elif todo:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err,
            ) as bar:
                studies = bar.add_task("studies", total=len(todo))
                instances = bar.add_task("instances", total=None)

                def _progress(study: RemoteStudy, count: int, total: int | None) -> None:
                    bar.update(instances, completed=count, total=total)

                for study, _why in todo:
                    bar.update(
                        instances,
                        completed=0,
                        total=study.instances,
                        description=f"study {study.study_date or '?'} "
                        f"{'/'.join(study.modalities) or '?'}",
                    )
                    results.append(puller.retrieve(study, _progress))
                    bar.update(instances, completed=results[-1].local_instances)
                    bar.advance(studies)
    finally:
        if server is not None:
            server.shutdown()
    table = Table("study UID", "date", "modalities", "PACS", "spool", "result", "note")
    style = {
        "fetched": "green",
        "partial": "yellow",
        "failed": "red",
        "skipped": "dim",
        "planned": "cyan",
    }
    for r in results:
        table.add_row(
            r.study.study_uid,
            r.study.study_date or "",
            "/".join(r.study.modalities),
            "" if r.study.instances is None else str(r.study.instances),
            str(r.local_instances),
            f"[{style[r.outcome]}]{r.outcome}[/{style[r.outcome]}]",
            r.reason,
        )
    Console().print(table)
    if not results:
        err.print("no study on the PACS matches the query")
    if any(r.outcome in ("failed", "partial") for r in results):
        raise typer.Exit(1)


T = TypeVar("T")
R = TypeVar("R")

quarantine_app = typer.Typer(help="Items that need a human decision.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

from node_agent.request_cli import request_app  # noqa: E402

app.add_typer(request_app, name="request")


def _state(config: Path) -> AgentState:
    return AgentState(load_or_exit(config).agent.data_dir / "state.db")


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def queue(
    config: ConfigOpt,
    all_bundles: Annotated[bool, typer.Option("--all", help="Include delivered bundles")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON array instead of the table: an object per bundle with every "
            "outbox column (for scripts)",
        ),
    ] = False,
) -> None:
    """Print the outbox: one table row per bundle not yet delivered (all of them with --all),
    most urgent first, with destination, mode, state, priority, instances, sealed bytes,
    attempts, next attempt and last error."""
    from node_agent import operations

    rows = operations.queue(_state(config), include_done=all_bundles)
    if as_json:
        print(json.dumps([dict(r) for r in rows], indent=1))
        return
    table = Table(
        "bundle",
        "to",
        "mode",
        "state",
        "prio",
        "instances",
        "bytes",
        "attempts",
        "next attempt",
        "last error",
    )
    for r in rows:
        table.add_row(
            r["bundle_id"],
            r["dest_org"],
            r["mode"],
            r["state"],
            str(r["priority"]),
            str(r["instance_count"]),
            f"{r['sealed_bytes']:,}",
            str(r["attempts"]),
            _when(r["next_attempt_at"]),
            r["last_error"] or "",
        )
    Console().print(table)


def _operate(action: Callable[[AgentState, T], R], config: Path, key: T) -> R:
    """Run one operator action on the agent's state; its refusal is a one-line error, exit 1."""
    from node_agent.operations import OperationError

    try:
        return action(_state(config), key)
    except OperationError as exc:
        err.print(f"[red]{escape(str(exc))}")
        raise typer.Exit(1) from exc


@app.command()
def retry(config: ConfigOpt, bundle_id: Annotated[str, typer.Argument()]) -> None:
    """Send a failed (or backing-off) bundle again at once."""
    from node_agent import operations

    previous = _operate(operations.retry, config, bundle_id)
    err.print(f"bundle {bundle_id} ({previous}) queued for upload now")


@quarantine_app.command("list")
def quarantine_list(config: ConfigOpt) -> None:
    """Quarantined instances and deliveries."""
    from node_agent import operations

    table = Table("id", "kind", "reference", "since", "category", "reason")
    for item in operations.quarantine_list(_state(config)):
        table.add_row(
            str(item.id), item.kind, item.ref, _when(item.created_at), item.category, item.reason
        )
    Console().print(table)


@quarantine_app.command("show")
def quarantine_show(config: ConfigOpt, item_id: Annotated[int, typer.Argument()]) -> None:
    """One item in full."""
    from node_agent import operations

    item = _operate(operations.quarantine_get, config, item_id)
    table = Table("field", "value", show_header=False)
    for name, value in (
        ("id", item.id),
        ("kind", item.kind),
        ("reference", item.ref),
        ("since", _when(item.created_at)),
        ("category", item.category),
        ("reason", item.reason),
        ("file", item.path or "-"),
    ):
        table.add_row(name, str(value))
    Console().print(table)


@quarantine_app.command("release")
def quarantine_release(config: ConfigOpt, item_id: Annotated[int, typer.Argument()]) -> None:
    """Try the item again (it passes every check again before anything leaves)."""
    from node_agent import operations

    kind = _operate(operations.release, config, item_id)
    err.print(f"{kind} {item_id} released: it will be processed again")


@quarantine_app.command("discard")
def quarantine_discard(
    config: ConfigOpt,
    item_id: Annotated[int, typer.Argument()],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Give up on the item (an instance is deleted from the spool)."""
    from node_agent import operations

    if not yes and not typer.confirm(f"discard quarantine item {item_id}?"):
        raise typer.Exit(1)
    kind = _operate(operations.discard, config, item_id)
    err.print(f"{kind} {item_id} discarded")


@app.command("synth-study")
def synth_study(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the .dcm files to")],
    instances: Annotated[int, typer.Option(min=1, max=10000, help="Images in the series")] = 5,
    modality: Annotated[str, typer.Option(help="CT or MR")] = "CT",
    rows: Annotated[int, typer.Option(min=1, max=4096, help="Rows of each image")] = 256,
    columns: Annotated[int, typer.Option(min=1, max=4096, help="Columns of each image")] = 256,
) -> None:
    """Write a synthetic study (fake patient SYNTHETIC^PATIENT, new UIDs, a pixel pattern) to
    try the agent with; prints the Study Instance UID and the number of files."""
    from node_agent.synthetic import write_synthetic_study

    try:
        made = write_synthetic_study(
            out, instances=instances, modality=modality.upper(), rows=rows, columns=columns
        )
    except (ValueError, OSError) as exc:
        err.print(f"[red]cannot write the study:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    print(f"{len(made.files)} instances of study {made.study_uid} in {out}")


def main() -> None:
    app()
