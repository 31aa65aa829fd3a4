"""Listening ports for the test servers, chosen outside the kernel's ephemeral range.

A port from `bind(("127.0.0.1", 0))` comes from the ephemeral range, the same range the kernel
draws from for every outgoing connection. Between choosing such a port and the server binding
it (an agent starts seconds after its port is written to its configuration), any client in the
run (findscu, httpx, Orthanc, PostgreSQL connections) can be given it as its local port, and the
server fails with "Address already in use". Ports below the ephemeral range are never handed out
that way, so the only other users are servers started on purpose: this module never gives the
same port twice in one process and starts from a random point so that concurrent runs on one
machine rarely meet.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOWEST = 20000
_FALLBACK_EPHEMERAL_START = 32768
_lock = threading.Lock()
_given: set[int] = set()
_next: int | None = None


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_START


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on, below the ephemeral range, never given twice."""
    global _next
    top = _ephemeral_start()
    if top - _LOWEST < 1000:  # an unusual range: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    with _lock:
        if _next is None:
            _next = random.randrange(_LOWEST, top)
        for _ in range(top - _LOWEST):
            port = _next
            _next = _LOWEST if _next + 1 >= top else _next + 1
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    raise RuntimeError(f"no free loopback port between {_LOWEST} and {top}")
