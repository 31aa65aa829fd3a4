"""Fixtures for the adversarial suite: a real hub (both listeners, real TLS) with settings a
test chooses, a raw HTTP/1.1-over-TLS client for requests httpx will not send, and a
snapshot of everything the hub keeps (files and database rows) to prove nothing changed."""

from __future__ import annotations

import hashlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from hub.bootstrap import init_hub
from hub.settings import HubSettings
from tests.hub.conftest import (  # noqa: F401  (database_url is a fixture)
    EnrolledSite,
    Hub,
    database_url,
    free_port,
    running_hub,
)

HubFactory = Callable[..., Hub]

# Database files change on reads too (SQLite WAL); the database is compared by its rows.
_VOLATILE = (".db", ".db-wal", ".db-shm", ".lock")


@pytest.fixture
def start_hub(
    database_url: str,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[HubFactory]:
    """`start_hub(**settings)`: a running hub on this test's database (one per test)."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> Hub:
            settings = HubSettings(
                data_dir=tmp_path / "hub-data",
                database_url=database_url,
                node_port=free_port(),
                public_port=free_port(),
                **overrides,
            )
            init_hub(settings)
            handle = Hub(
                settings=settings,
                backend=request.node.callspec.params["database_url"],
                workdir=tmp_path / "work",
            )
            stack.enter_context(running_hub(settings))
            stack.callback(handle.close)
            return handle

        yield start


def fleet(hub: Hub) -> tuple[EnrolledSite, EnrolledSite]:
    """org-a/site-a and org-b/site-b, each allowed to send identified studies to the other."""
    a, b = hub.enroll("org-a", "site-a"), hub.enroll("org-b", "site-b")
    hub.allow("org-a", "site-a", "org-b")
    hub.allow("org-b", "site-b", "org-a")
    return a, b


# --- what the hub keeps -----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, str]
    rows: dict[str, list[tuple[Any, ...]]]


def snapshot(hub: Hub) -> Snapshot:
    """Every file under the hub's data folder (by content) and every row of every table."""
    files: dict[str, str] = {}
    for path in sorted(hub.settings.data_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(_VOLATILE):
            rel = str(path.relative_to(hub.settings.data_dir))
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with hub.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = sorted((tuple(r) for r in result), key=repr)
    return Snapshot(files, rows)


def assert_unchanged(before: Snapshot, after: Snapshot, *, allow: Iterable[str] = ()) -> None:
    allowed = set(allow)
    changed_files = {
        k
        for k in before.files.keys() | after.files.keys()
        if before.files.get(k) != after.files.get(k)
    }
    changed_tables = {
        k for k in before.rows.keys() | after.rows.keys() if before.rows.get(k) != after.rows.get(k)
    }
    assert changed_files - allowed == set(), f"files changed: {sorted(changed_files)}"
    assert changed_tables - allowed == set(), f"tables changed: {sorted(changed_tables)}"


# --- a raw client -----------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int | None  # None: the hub closed the connection without an answer
    head: str
    body: bytes
    sent: int  # body bytes the client managed to send before the answer


def raw_request(
    port: int,
    context: ssl.SSLContext,
    head: str,
    body: Iterable[bytes] = (),
    *,
    timeout: float = 10.0,
    pause: float = 0.02,
) -> RawResponse:
    """Send `head` then the body pieces over TLS, stopping as soon as the hub answers or closes
    (httpx would insist on sending a whole body first). Before each piece the client waits
    `pause` for an answer, so it never has more than one piece in flight when the hub refuses
    (a connection closed with unread data is reset, and a reset can swallow the answer)."""
    sent = 0
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as sock,
    ):
        sock.sendall(head.encode("latin-1"))
        data = b""
        for piece in body:
            data = _answer_so_far(sock, pause)
            if data is None or data:
                break
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            sent += len(piece)
        data = data or b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, TimeoutError):
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data and _complete(data):
                break
    if not data:
        return RawResponse(None, "", b"", sent)
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    status_line = head_bytes.split(b"\r\n", 1)[0].decode("latin-1")
    return RawResponse(int(status_line.split()[1]), head_bytes.decode("latin-1"), rest, sent)


def _answer_so_far(sock: ssl.SSLSocket, wait: float) -> bytes | None:
    """Application data the hub has sent (b"" if none yet; None if it closed). TLS records
    without data (a TLS 1.3 session ticket) make the socket readable too: skip those."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable and not sock.pending():
        return b""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        part = sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    except (ConnectionResetError, ssl.SSLError):
        return None
    finally:
        sock.settimeout(timeout)
    return part if part else None


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return True
