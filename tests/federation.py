"""A local federation of real processes: one hub and any number of agents on loopback.

Used by the end-to-end tests and by `scripts/demo.sh`. Every process is started through its
own console command (`hexchange-hub`, `hexchange-agent`), exactly as an operator would.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from certs.tls import client_ssl_context
from tests.ports import free_port

BIN = Path(sys.executable).parent


def _command(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


@dataclass
class AgentHandle:
    org: str
    site: str
    config_file: Path
    data_dir: Path
    dicom_port: int
    ae_title: str
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def received_dir(self) -> Path:
        return self.data_dir / "received"

    def received_files(self) -> list[Path]:
        if not self.received_dir.exists():
            return []
        return sorted(self.received_dir.rglob("*.dcm"))


@dataclass
class Federation:
    root: Path
    database_url: str | None = None
    quiet_period: float = 2.0
    part_mib: float | None = None  # agents' [pipeline] part_mib; None: the agent's default
    hub_process: subprocess.Popen[bytes] | None = None
    agents: list[AgentHandle] = field(default_factory=list)
    node_port: int = field(default_factory=free_port)
    public_port: int = field(default_factory=free_port)

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    @property
    def ca_file(self) -> Path:
        return self.hub_dir / "ca" / "ca.pem"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HEXCHANGE_HUB_DATA_DIR"] = str(self.hub_dir)
        if self.database_url:
            env["HEXCHANGE_HUB_DATABASE_URL"] = self.database_url
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def hub_cli(self, *args: str) -> str:
        result = subprocess.run(
            [_command("hexchange-hub"), *args], env=self._env(), capture_output=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"hexchange-hub {args[0]} failed ({result.returncode}): {result.stderr.decode()}"
            )
        return result.stdout.decode()

    def pseudonym_key_file(self) -> Path:
        """The network's pseudonym secret (one per federation, as the hub would issue it)."""
        path = self.root / "pseudonym.key"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path

    def start_hub(self, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.hub_cli("init", "--network-name", "Hexchange demo network")
        log = open(self.root / "hub.log", "ab")  # noqa: SIM115 (closed with the process)
        self.hub_process = subprocess.Popen(
            [
                _command("hexchange-hub"),
                "serve",
                "--node-port",
                str(self.node_port),
                "--public-port",
                str(self.public_port),
            ],
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_hub(timeout)

    def _wait_hub(self, timeout: float) -> None:
        context = client_ssl_context(self.ca_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hub_process is not None and self.hub_process.poll() is not None:
                raise RuntimeError(f"hub exited: see {self.root / 'hub.log'}")
            try:
                response = httpx.get(
                    f"https://127.0.0.1:{self.public_port}/api/v1/health", verify=context, timeout=2
                )
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("hub did not start in time")

    def add_agent(
        self,
        org: str,
        site: str,
        *,
        org_name: str = "",
        destinations: Sequence[tuple[str, str]] = (),
        ae_title: str | None = None,
        inbound: bool = True,
        start: bool = True,
        deid_options: Sequence[str] = (),
        inbound_pacs: tuple[str, int] | None = None,
        dicom_port: int | None = None,
    ) -> AgentHandle:
        token = self.hub_cli(
            "site", "add", "--org", org, "--site", site, "--org-name", org_name or org
        ).strip()
        data_dir = self.root / f"agent-{org}-{site}"
        data_dir.mkdir(parents=True, exist_ok=True)
        port = dicom_port or free_port()
        ae = ae_title or site.upper().replace("-", "")[:16]
        lines = [
            "[agent]",
            f'data_dir = "{data_dir}"',
            f'name = "{org}/{site}"',
            "",
            "[hub]",
            f'public_url = "https://127.0.0.1:{self.public_port}"',
            f'node_url = "https://127.0.0.1:{self.node_port}"',
            f'ca_file = "{self.ca_file}"',
            "",
            "[dicom]",
            f'ae_title = "{ae}"',
            'host = "127.0.0.1"',
            f"port = {port}",
            "",
            "[pipeline]",
            f"quiet_period_seconds = {self.quiet_period}",
            *([f"part_mib = {self.part_mib}"] if self.part_mib is not None else []),
            "poll_seconds = 0.5",
            "policy_poll_seconds = 1",
            "",
            "[inbound]",
            f"enabled = {'true' if inbound else 'false'}",
            *(
                [
                    'store = "pacs"',
                    f'pacs_ae_title = "{inbound_pacs[0]}"',
                    f"pacs_port = {inbound_pacs[1]}",
                ]
                if inbound_pacs
                else []
            ),
            "poll_seconds = 0.5",
            "",
            "[upload]",
            "retry_base_seconds = 0.5",
            "retry_max_seconds = 5",
            "",
        ]
        for dest_org, mode in destinations:
            self.hub_cli(
                "policy",
                "add",
                "--org",
                org,
                "--site",
                site,
                "--to",
                dest_org,
                "--mode",
                mode,
                *[f"--option={o}" for o in deid_options],
            )
        lines += ["[deidentify]", f'key_file = "{self.pseudonym_key_file()}"', ""]
        config_file = data_dir / "agent.toml"
        config_file.write_text("\n".join(lines))
        handle = AgentHandle(org, site, config_file, data_dir, port, ae, data_dir / "agent.log")
        result = subprocess.run(
            [_command("hexchange-agent"), "enroll", "--config", str(config_file), "--token", token],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"enroll failed: {result.stderr.decode()}")
        self.agents.append(handle)
        if start:
            self.start_agent(handle)
        return handle

    def start_clinic_and_archive(self, **clinic: Any) -> tuple[AgentHandle, AgentHandle]:
        """Start the hub and archive B (org-b); enroll clinic A (org-a), which shares
        identified studies with B, but do not start A: the caller finishes A's config (a PACS,
        a proxy, upload options) and starts it. Returns (A, B)."""
        self.start_hub()
        b = self.add_agent("org-b", "archive")
        a = self.add_agent(
            "org-a",
            "clinic-a",
            destinations=[("org-b", "identified")],
            inbound=False,
            start=False,
            **clinic,
        )
        return a, b

    def start_agent(self, handle: AgentHandle, timeout: float = 20.0) -> None:
        log = open(handle.log_file, "ab")  # noqa: SIM115 (closed with the process)
        handle.process = subprocess.Popen(
            [_command("hexchange-agent"), "run", "--config", str(handle.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if handle.process.poll() is not None:
                raise RuntimeError(f"agent exited: see {handle.log_file}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", handle.dicom_port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError("agent DICOM port did not open in time")

    def stop_agent(self, handle: AgentHandle, sig: int = signal.SIGTERM) -> None:
        if handle.process is not None and handle.process.poll() is None:
            handle.process.send_signal(sig)
            try:
                handle.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                handle.process.wait()

    def stop(self) -> None:
        running = [h for h in self.agents if h.process is not None and h.process.poll() is None]
        for handle in running:  # all at once: each may finish a long poll before it exits
            assert handle.process is not None
            handle.process.send_signal(signal.SIGTERM)
        for handle in running:
            self.stop_agent(handle)
        if self.hub_process is not None and self.hub_process.poll() is None:
            self.hub_process.send_signal(signal.SIGTERM)
            try:
                self.hub_process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.hub_process.kill()
                self.hub_process.wait()

    def wait_for(self, predicate: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what}")


def storescu(port: int, ae_title: str, files: Sequence[Path]) -> subprocess.CompletedProcess[bytes]:
    """Send files with dcmtk's storescu, as a modality would."""
    binary = shutil.which("storescu", path="/usr/bin:/usr/local/bin") or "storescu"
    return subprocess.run(
        [
            binary,
            "-aet",
            "MODALITY",
            "-aec",
            ae_title,
            "127.0.0.1",
            str(port),
            *[str(f) for f in files],
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )
