"""`hexchange-hub serve --workers N`: several hub processes on the same listening sockets
(PostgreSQL only), and the request-head cap of the httptools protocol both listeners use."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from certs.tls import client_ssl_context
from hub.bootstrap import init_hub
from hub.cli import app as hub_cli
from hub.http_protocols import MAX_HEAD_BYTES
from hub.settings import HubSettings
from tests.hub.conftest import (
    SKIP_POSTGRES_ENV,
    Hub,
    free_port,
    postgres_database,
    running_hub,
)  # fmt: skip

_MAIN = "import sys; from hub.cli import main; sys.exit(main())"
START_TIMEOUT_S = 30.0


def _workers_of(pid: int) -> list[int]:
    """The worker processes (forked children) of the hub's parent process (Linux /proc)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            children += [int(c) for c in fh.read().split()]
    return children


def _health(base: str, context: ssl.SSLContext) -> int:
    """One request on a new connection (so the kernel hands it to a worker anew)."""
    with httpx.Client(verify=context, timeout=5) as client:
        return client.get(base + "/api/v1/health").status_code


@pytest.mark.postgres
def test_serve_with_two_workers_answers_from_both_processes_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    if os.environ.get(SKIP_POSTGRES_ENV) == "1":
        pytest.skip(f"{SKIP_POSTGRES_ENV}=1")
    with postgres_database() as url:
        settings = HubSettings(
            data_dir=tmp_path / "hub", database_url=url,
            node_port=free_port(), public_port=free_port(),
        )  # fmt: skip
        init_hub(settings)
        command = [
            sys.executable, "-c", _MAIN, "serve", "--data-dir", str(settings.data_dir),
            "--node-port", str(settings.node_port), "--public-port", str(settings.public_port),
            "--workers", "2",
        ]  # fmt: skip
        env = {**os.environ, "HEXCHANGE_HUB_DATABASE_URL": url}
        proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        base = f"https://127.0.0.1:{settings.public_port}"
        context = client_ssl_context(settings.ca_cert_file)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            workers: list[int] = []
            while time.monotonic() < deadline and proc.poll() is None:
                workers = _workers_of(proc.pid)
                try:
                    if len(workers) == 2 and _health(base, context) == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert len(workers) == 2, workers
            # each worker alone (the other one stopped) accepts and answers new connections
            for serving in workers:
                others = [w for w in workers if w != serving]
                for other in others:
                    os.kill(other, signal.SIGSTOP)
                try:
                    for _ in range(2):
                        deadline = time.monotonic() + START_TIMEOUT_S
                        while True:  # the worker may still be starting its listeners
                            try:
                                assert _health(base, context) == 200
                                break
                            except httpx.HTTPError:
                                if time.monotonic() > deadline:
                                    raise
                                time.sleep(0.2)
                finally:
                    for other in others:
                        os.kill(other, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            for worker in workers:
                assert not Path(f"/proc/{worker}").exists() or _zombie(worker)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path / "hub")
    init_hub(settings)
    result = CliRunner().invoke(
        hub_cli, ["serve", "--data-dir", str(settings.data_dir), "--workers", "2"]
    )
    assert result.exit_code == 2
    assert "need PostgreSQL" in result.output


def test_a_request_head_over_the_cap_is_refused_with_431_on_both_listeners(
    tmp_path: Path,
) -> None:
    settings = HubSettings(
        data_dir=tmp_path / "hub", node_port=free_port(), public_port=free_port()
    )
    assert settings.http_protocol == "httptools"
    init_hub(settings)
    hub = Hub(settings=settings, backend="sqlite", workdir=tmp_path / "work")
    with running_hub(settings):
        try:
            site = hub.enroll("org-a", "site-a")
            public = hub.public_client()
            for client, path in ((public, "/api/v1/health"), (site.client, "/node/v1/whoami")):
                fits = client.get(path, headers={"x-pad": "a" * (MAX_HEAD_BYTES - 1024)})
                assert fits.status_code == 200, path
                for big in (MAX_HEAD_BYTES + 100, 20 * MAX_HEAD_BYTES):
                    assert client.get(path, headers={"x-pad": "a" * big}).status_code == 431
                too_long = {"q": "a" * (MAX_HEAD_BYTES + 100)}
                assert client.get(path, params=too_long).status_code == 431
                assert client.get(path).status_code == 200  # a new connection serves again
        finally:
            hub.close()
