"""What every `hexchange-agent` command does first: read agent.toml, or exit 2 saying which
key is wrong (shared by the command modules, so each says it the same way)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from node_agent.config import AgentConfig, ConfigError, load_config

err = Console(stderr=True, soft_wrap=True)  # a message's paths and commands stay whole


def load_or_exit(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
