"""`hexchange-agent`: enroll, run, status."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer
from rich.console import Console
from rich.table import Table

from node_agent.config import AgentConfig, ConfigError, load_config
from node_agent.identity import NotEnrolled
from node_agent.state import AgentState

app = typer.Typer(
    help="Hexchange node agent: the clinic side of a federation.", no_args_is_help=True
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="HEXCHANGE_AGENT_CONFIG", help="agent.toml")
]


def _configure_logging(json_logs: bool) -> None:
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
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def _load(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def enroll(
    config: ConfigOpt,
    token: Annotated[str, typer.Option(help="One-time enrollment token from the network admin")],
) -> None:
    """Make this site's keys, send a CSR with the token, and keep the issued certificate."""
    from node_agent.enroll import EnrollmentFailed
    from node_agent.enroll import enroll as do_enroll

    cfg = _load(config)
    try:
        identity = do_enroll(cfg, token)
    except EnrollmentFailed as exc:
        err.print(f"[red]enrollment failed:[/red] {exc}")
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

    _configure_logging(json_logs)
    cfg = _load(config)
    try:
        agent = build_agent(cfg)
    except NotEnrolled as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(2) from exc

    def _stop(_sig: int, _frame: object) -> None:
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run()


@app.command()
def status(config: ConfigOpt) -> None:
    """Queue and pipeline counts from the agent's state database."""
    cfg = _load(config)
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


def main() -> None:
    app()
