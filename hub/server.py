"""Run the hub's two listeners in one process.

- node API: mutual TLS required (CERT_REQUIRED against the network CA); the protocol class
  from `hub.tls_scope` hands the verified client certificate to the app.
- public API: server TLS only (enrollment, health, later the user API and web UI).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable, Generator

import uvicorn
from fastapi import FastAPI

from certs.tls import server_ssl_context
from hub.main import create_app
from hub.settings import HubSettings
from hub.tls_scope import TLSScopeH11Protocol


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
    }
    node = uvicorn.Config(
        app.state.node_app,
        port=settings.node_port,
        http=TLSScopeH11Protocol,
        ssl_context_factory=_context_factory(settings, mutual=True),
        **common,  # type: ignore[arg-type]
    )
    # the public app's lifespan runs the hub's background work (collection ingest worker)
    public = uvicorn.Config(
        app,
        port=settings.public_port,
        http="h11",
        ssl_context_factory=_context_factory(settings, mutual=False),
        **{**common, "lifespan": "on"},  # type: ignore[arg-type]
    )
    return node, public


async def serve(
    settings: HubSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run both listeners until SIGINT/SIGTERM or, if given, until `stop` is set.

    `stop` lets an embedding thread (tests) shut the hub down cleanly: set it on this loop,
    e.g. with `loop.call_soon_threadsafe(stop.set)`.
    """
    app = create_app(settings)
    node_config, public_config = _configs(app, settings)
    servers = [_Server(node_config), _Server(public_config)]
    loop = asyncio.get_running_loop()

    def _stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
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


def run(settings: HubSettings) -> None:
    asyncio.run(serve(settings))
