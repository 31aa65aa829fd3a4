"""A fault-injecting TCP proxy the tests own: a bad link between an agent and the hub.

Loopback only. It forwards one listening port to a target port and, on the way,
- limits the rate in each direction with a token bucket shared by all connections (the link),
- adds a fixed one-way latency in each direction (150 ms each way = 300 ms round trip),
- cuts the link on a schedule: every connection is aborted (mid-request, mid-chunk) and new
  connections are refused for `cut_for` seconds, every `cut_every` seconds,
- counts the bytes it took from clients (what the sender put on the link) and the bytes it
  forwarded, per direction.

It runs its own asyncio loop in a daemon thread, so synchronous tests can use it:

    with FaultProxy(hub_port, rate_bytes_per_s=250_000, latency_s=0.15,
                    cut_every_s=30, cut_for_s=10) as proxy:
        ... point the client at proxy.port ...
        proxy.stats.up_from_client
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field

READ_SIZE = 16 * 1024


@dataclass
class LinkStats:
    up_from_client: int = 0  # bytes the clients put on the link (read by the proxy)
    up_forwarded: int = 0  # of those, bytes that reached the server
    down_from_server: int = 0
    down_forwarded: int = 0
    connections: int = 0
    refused: int = 0
    aborted: int = 0  # connections cut while open
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (start, end), monotonic
    cuts_mid_transfer: int = 0  # cuts that hit client bytes moving in the second before


class TokenBucket:
    """Rate limiter for one direction of the link; `take` waits until the bytes may pass."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: int) -> None:
        async with self.lock:  # first come, first served: one sender at a time on the wire
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= amount:
                    self.tokens -= amount
                    return
                await asyncio.sleep((amount - self.tokens) / self.rate)


class FaultProxy:
    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        rate_bytes_per_s: float | None = None,
        latency_s: float = 0.0,
        cut_every_s: float | None = None,
        cut_for_s: float = 0.0,
        first_cut_s: float | None = None,
    ) -> None:
        if target_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy forwards to loopback only")
        self.target = (target_host, target_port)
        self.rate = rate_bytes_per_s
        self.latency = latency_s
        self.cut_every = cut_every_s
        self.cut_for = cut_for_s
        self.first_cut = (cut_every_s or 0.0) if first_cut_s is None else first_cut_s
        self.stats = LinkStats()
        self.port = 0
        self._cutting = False
        self._last_up = 0.0  # monotonic time client bytes last arrived
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- life cycle (called from the test's thread) --------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="netfault", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"fault proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def cutting(self) -> bool:
        return self._cutting

    # -- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or visible in stats
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        burst = READ_SIZE
        self._up = TokenBucket(self.rate, burst) if self.rate else None
        self._down = TokenBucket(self.rate, burst) if self.rate else None
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        cutter = asyncio.create_task(self._cutter()) if self.cut_every else None
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            if cutter is not None:
                cutter.cancel()
            server.close()
            self._abort_all()
            await server.wait_closed()

    async def _cutter(self) -> None:
        assert self.cut_every is not None
        start = time.monotonic()
        next_cut = start + self.first_cut
        while True:
            await asyncio.sleep(max(0.0, next_cut - time.monotonic()))
            began = time.monotonic()
            if began - self._last_up < 1.0:
                self.stats.cuts_mid_transfer += 1
            self._cutting = True
            self._abort_all()
            await asyncio.sleep(self.cut_for)
            self._cutting = False
            self.stats.cuts.append((began, time.monotonic()))
            next_cut += self.cut_every

    def _abort_all(self) -> None:
        for writer in list(self._conns):
            self.stats.aborted += 1
            writer.transport.abort()
        self._conns.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._cutting:
            self.stats.refused += 1
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        if self._cutting:  # the link went down while we connected
            client_w.transport.abort()
            server_w.transport.abort()
            return
        self.stats.connections += 1
        pair = (client_w, server_w)
        self._conns.update(pair)
        try:
            await asyncio.gather(
                self._pump(client_r, server_w, self._up, upstream=True),
                self._pump(server_r, client_w, self._down, upstream=False),
                return_exceptions=True,
            )
        finally:
            for writer in pair:
                if writer in self._conns:
                    self._conns.discard(writer)
                    writer.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        bucket: TokenBucket | None,
        *,
        upstream: bool,
    ) -> None:
        """One direction: read, pass the bottleneck (rate), then travel (latency), then write."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        stats = self.stats

        async def receive() -> None:
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    await queue.put(None)
                    return
                if upstream:
                    stats.up_from_client += len(data)
                    self._last_up = time.monotonic()
                else:
                    stats.down_from_server += len(data)
                if bucket is not None:
                    await bucket.take(len(data))
                await queue.put((time.monotonic() + self.latency, data))

        async def send() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
                if upstream:
                    stats.up_forwarded += len(data)
                else:
                    stats.down_forwarded += len(data)

        receiver = asyncio.create_task(receive())
        try:
            await send()
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await receiver


__all__ = ["FaultProxy", "LinkStats", "TokenBucket"]
