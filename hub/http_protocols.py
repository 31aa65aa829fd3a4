"""The HTTP/1.1 protocol classes of the hub's two listeners (`hub.server`).

uvicorn's httptools protocol (llhttp, in C) costs less CPU per request than its h11 one (pure
Python), but it puts no cap on the head of a request: httptools buffers a request line or a
header of any length until it is complete. h11 refuses a head larger than its incomplete-event
cap (16 KiB by default) with 400. `HeadCappedHttpToolsProtocol` gives the httptools protocol
the same cap: a request whose line and headers come to more than `MAX_HEAD_BYTES` is answered
431 and its connection closed. So that httptools never buffers much of one long header either,
the same answer comes once more than `MAX_HEAD_BYTES` were read after the read in which the
request began with its head still incomplete (the first read is not counted: it may end the
previous request), so at most the cap plus one read is ever buffered.

The node listener's class also adds the verified client certificate to the ASGI scope
(`hub.tls_scope`).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.tls_scope import TLSScopeH11Protocol, TLSScopeHttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024  # h11's default incomplete-event cap, used for both protocols

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 26\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request head is too large."
)


class _HeadTooLarge(Exception):
    pass


class HeadCappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head capped at `MAX_HEAD_BYTES`."""

    _in_head = True
    _head_bytes = 0  # request line and headers as parsed (exact)
    _head_read = 0  # bytes read while the head is incomplete (bounds httptools' buffering)
    _began_in_this_read = False
    _too_large = False

    def data_received(self, data: bytes) -> None:
        self._began_in_this_read = False
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if not self._began_in_this_read:
            self._head_read += len(data)
        if self._head_read > MAX_HEAD_BYTES:
            self._too_large = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self.logger.warning("Request head over %d bytes: refused.", MAX_HEAD_BYTES)
        self.transport.write(_TOO_LARGE)
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge  # httptools stops parsing; uvicorn answers (431 above)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_read = 0
        self._began_in_this_read = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()


class NodeHttpToolsProtocol(HeadCappedHttpToolsProtocol, TLSScopeHttpToolsProtocol):
    """The node listener's: head capped, and the client certificate in the scope."""


def protocols(http: str) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol] | str]:
    """(node listener's, public listener's) protocol for the `http_protocol` setting."""
    if http == "httptools":
        return NodeHttpToolsProtocol, HeadCappedHttpToolsProtocol
    if http == "h11":
        return TLSScopeH11Protocol, "h11"
    raise ValueError(f"unsupported http protocol {http!r}: use 'h11' or 'httptools'")
