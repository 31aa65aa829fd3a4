"""Run the hub's two listeners, in one process or in `settings.workers` processes.

- node API: mutual TLS required (CERT_REQUIRED against the network CA); the protocol class
  (`hub.http_protocols`, from `hub.tls_scope`) hands the verified client certificate to the app.
- public API: server TLS only (enrollment, the user API, DICOMweb, the web UI).

With `workers` > 1 (PostgreSQL only) the parent process migrates the database once, binds both
listening sockets and forks that many worker processes (each builds its own app with
`create_app`; the parent builds none); the kernel hands each new connection to one of them.
The parent restarts a worker that dies and stops them all on SIGINT/SIGTERM. What the
processes share is the database and the data folder: the collection ingest worker takes each
bundle under a lease, audit appends lock the chain head row, sign-in sessions, tokens and rate
limits live in the database, and CA revocations and used tokens in files every process
re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Generator
from multiprocessing.process import BaseProcess

import structlog
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from certs.tls import server_ssl_context
from deidentify.log_redaction import install as install_log_redaction
from deidentify.log_redaction import structlog_exc_info
from hub.db import create_schema, make_engine
from hub.http_protocols import MAX_HEAD_BYTES, protocols
from hub.main import create_app
from hub.services import build_services
from hub.settings import HubSettings

log = structlog.get_logger("hexchange.hub.server")

# a worker that exits this soon after its start failed to start (TLS files, database): the
# parent stops rather than restarting it in a loop
STARTUP_GRACE_S = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled once for both listeners by `serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _context_factory(
    settings: HubSettings, *, mutual: bool
) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    """uvicorn's `ssl_context_factory`: the project's context from `certs.tls`, never
    uvicorn's default one (TLS 1.2+, the project's cipher choice, no compression)."""

    def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return server_ssl_context(
            settings.server_cert_file,
            settings.server_key_file,
            client_ca_file=settings.ca_cert_file if mutual else None,
            require_client_cert=mutual,
        )

    return factory


def _configs(app: FastAPI, settings: HubSettings) -> tuple[uvicorn.Config, uvicorn.Config]:
    common = {
        "host": settings.host,
        # The context comes from the factory below; the file is named for the TLS extension's
        # `server_cert` (hub.tls_scope) and is the one the factory loads.
        "ssl_certfile": str(settings.server_cert_file),
        "ssl_keyfile": str(settings.server_key_file),
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        # X-Forwarded-* are ignored unless the operator names the proxy (settings).
        "proxy_headers": settings.proxy_headers,
        "forwarded_allow_ips": list(settings.forwarded_allow_ips) if settings.proxy_headers else [],
        "server_header": False,
        "ws": "none",  # no WebSocket routes: an upgrade request is answered as plain HTTP
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
    node_http, public_http = protocols(settings.http_protocol)
    node = uvicorn.Config(
        app.state.node_app,
        port=settings.node_port,
        http=node_http,
        ssl_context_factory=_context_factory(settings, mutual=True),
        **common,  # type: ignore[arg-type]
    )
    # the public app's lifespan runs the hub's background work (collection ingest worker)
    public = uvicorn.Config(
        app,
        port=settings.public_port,
        http=public_http,
        ssl_context_factory=_context_factory(settings, mutual=False),
        **{**common, "lifespan": "on"},  # type: ignore[arg-type]
    )
    return node, public


async def serve(
    settings: HubSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    sockets: tuple[socket.socket, socket.socket] | None = None,
) -> None:
    """Run both listeners until SIGINT/SIGTERM or, if given, until `stop` is set.

    `stop` lets an embedding thread (tests) shut the hub down cleanly: set it on this loop,
    e.g. with `loop.call_soon_threadsafe(stop.set)`. `sockets`: (node, public) listening
    sockets bound by a parent process (`workers` > 1); the database is then migrated already.
    """
    app = create_app(settings, build_services(settings, migrate=sockets is None))
    node_config, public_config = _configs(app, settings)  # sets up uvicorn's logging
    redact_logs()
    servers = [_Server(node_config), _Server(public_config)]
    loop = asyncio.get_running_loop()

    def _stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _stop)
    tasks = [
        asyncio.create_task(server.serve([sock] if sock is not None else None))
        for server, sock in zip(servers, sockets or (None, None), strict=True)
    ]
    watcher = asyncio.create_task(_stop_when(stop, _stop)) if stop is not None else None
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.05)
    if ready is not None:
        ready.set()
    try:
        await asyncio.gather(*tasks)
    finally:
        if watcher is not None:
            watcher.cancel()
        app.state.services.close()


async def _stop_when(event: asyncio.Event, stop: Callable[[], None]) -> None:
    await event.wait()
    stop()


class WorkersRefused(ValueError):
    """`workers` > 1 asked for on a database that several processes cannot share."""


def check_workers(settings: HubSettings) -> None:
    if settings.workers > 1 and make_url(settings.db_url).get_backend_name() != "postgresql":
        raise WorkersRefused(
            f"{settings.workers} hub workers need PostgreSQL (database_url); SQLite is for one "
            "hub process: serve with --workers 1"
        )


def run(settings: HubSettings) -> None:
    """Serve until SIGINT/SIGTERM: in this process, or in `settings.workers` processes."""
    if settings.workers == 1:
        asyncio.run(serve(settings))
        return
    check_workers(settings)
    engine = make_engine(settings.db_url)
    try:
        create_schema(engine)  # once, before the workers start (they do not migrate)
    finally:
        engine.dispose()
    listening = (
        _listen(settings.host, settings.node_port),
        _listen(settings.host, settings.public_port),
    )
    try:
        _supervise(settings, listening)
    finally:
        for sock in listening:
            sock.close()


def redact_logs() -> None:
    """Every standard-library log line of this process without the values it quotes, and
    tracebacks without exception messages (`deidentify.log_redaction`): uvicorn's, pydicom's
    (collections read headers), Python's warnings. Records of loggers without a handler of
    their own go to one stderr handler (not Python's last-resort one, which filters nothing).
    The hub's own structlog lines keep their format; an exception they carry is rendered the
    same way (structlog's default would print it with its local variables)."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    install_log_redaction()
    processors = list(structlog.get_config()["processors"])
    if structlog_exc_info not in processors:
        processors.insert(max(len(processors) - 1, 0), structlog_exc_info)  # before rendering
        structlog.configure(processors=processors)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def _worker(settings: HubSettings, sockets: tuple[socket.socket, socket.socket]) -> None:
    """A worker process's entry point, forked from the parent, which imported the code but
    built no app, engine or thread: the worker builds its own (`create_app`)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # until `serve` installs its own handlers
    asyncio.run(serve(settings, sockets=sockets))


def _supervise(settings: HubSettings, sockets: tuple[socket.socket, socket.socket]) -> None:
    # fork: a worker starts in well under a second (spawn re-imports everything: seconds)
    fork = multiprocessing.get_context("fork")
    stopping = threading.Event()

    def start() -> tuple[BaseProcess, float]:
        process = fork.Process(target=_worker, args=(settings, sockets), name="hub-worker")
        process.start()
        return process, time.monotonic()

    previous = {
        sig: signal.signal(sig, lambda _sig, _frame: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    workers = [start() for _ in range(settings.workers)]
    try:
        while not stopping.wait(0.5):
            for n, (process, started) in enumerate(workers):
                if process.is_alive() or stopping.is_set():
                    continue
                if time.monotonic() - started < STARTUP_GRACE_S:
                    log.error("hub worker failed at start: stopping", exitcode=process.exitcode)
                    raise SystemExit(1)
                log.error("hub worker exited: starting another", exitcode=process.exitcode)
                workers[n] = start()
    finally:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker finishes its requests and stops
        for process, _ in workers:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
