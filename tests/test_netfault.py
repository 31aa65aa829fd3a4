"""The fault proxy itself: rate, latency, cuts and byte counts, against a loopback echo."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.netfault import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = bytearray()
        while data := sock.recv(65536):
            out += data
    return bytes(out)


def test_latency_and_rate_and_counts(echo_port: int) -> None:
    with FaultProxy(echo_port, latency_s=0.1) as proxy:
        start = time.monotonic()
        assert _roundtrip(proxy.port, b"ping") == b"ping"
        assert time.monotonic() - start >= 0.2  # one round trip = 2 x latency
    with FaultProxy(echo_port, rate_bytes_per_s=200_000) as proxy:
        payload = bytes(range(256)) * 1600  # 400 kB
        start = time.monotonic()
        assert _roundtrip(proxy.port, payload) == payload
        elapsed = time.monotonic() - start
        assert 1.6 <= elapsed <= 4.0  # ~2 s at 200 kB/s, both directions run concurrently
        assert proxy.stats.up_from_client == proxy.stats.up_forwarded == len(payload)
        assert proxy.stats.down_forwarded == len(payload)


def test_cut_aborts_open_connections_and_refuses_new_ones(echo_port: int) -> None:
    with FaultProxy(echo_port, cut_every_s=10, cut_for_s=0.8, first_cut_s=0.4) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(b"x" * 1000)
        time.sleep(0.6)  # the cut began while the connection was open and in use
        assert proxy.cutting
        with pytest.raises(OSError):
            for _ in range(100):
                sock.sendall(b"y" * 1000)
                time.sleep(0.01)
        sock.close()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", proxy.port)) as s2:
            s2.settimeout(2)
            s2.sendall(b"z")
            if not s2.recv(10):
                raise ConnectionResetError("refused")
        time.sleep(0.8)
        assert not proxy.cutting
        assert _roundtrip(proxy.port, b"back") == b"back"
        assert proxy.stats.cuts_mid_transfer == 1
        assert proxy.stats.aborted >= 1 and proxy.stats.refused >= 1
