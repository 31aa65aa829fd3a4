"""ASGI TLS extension for uvicorn: put the verified client certificate into the scope.

The hub's node API takes the calling site's identity from the client certificate that
the mutual-TLS handshake verified. uvicorn (0.54) does not pass that certificate to the
app: its implementation of the ASGI TLS extension
(https://asgi.readthedocs.io/en/latest/specs/tls.html) is still an open pull request
(encode/uvicorn#1119, "Implement asgiref tls extension"). This module fills
``scope["extensions"]["tls"]`` from a per-connection protocol subclass instead:

    uvicorn.Config(app, http=protocol_class("h11"), ssl_cert_reqs=ssl.CERT_REQUIRED, ...)

Hook: after uvicorn's own ``connection_made`` (which asyncio calls only once the TLS
handshake has completed), the protocol reads the connection's ``ssl_object`` once and
replaces its per-connection ``self.app`` with a thin wrapper that adds the extension to
every HTTP request scope on that connection (keep-alive included). Plain-HTTP connections
are left untouched, as the spec requires. An extension already put there by the server is
never overwritten, so this becomes a no-op once uvicorn implements it.

Drop this module (and pass ``http="h11"`` or ``"auto"`` again) once a uvicorn release with
the TLS extension is the minimum version in pyproject.toml.

Limits: Python 3.11's ``ssl`` exposes only the peer's leaf certificate, so
``client_cert_chain`` holds at most that one certificate. ``client_cert_error`` is always
None: with CERT_OPTIONAL or CERT_REQUIRED a client certificate that fails verification
aborts the handshake, and with CERT_NONE none is requested. WebSocket connections (handed
over to uvicorn's separate WebSocket protocol) do not get the extension.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import TYPE_CHECKING, Any, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = [
    "HAS_HTTPTOOLS",
    "TLSScopeH11Protocol",
    "protocol_class",
    "tls_extension_for",
]

# ssl.SSLObject.version() -> TLS protocol version number (RFC 8446 / 5246 / 4346 / 2246).
_TLS_VERSIONS: dict[str, int] = {
    "SSLv3": 0x0300,
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}

# OpenSSL cipher name (ssl.SSLObject.cipher()[0]) -> IANA cipher suite number.
# The TLS 1.3 suites plus the TLS 1.2 suites a current OpenSSL default offers; values
# checked against `openssl ciphers -V`. Anything else is reported as None.
_CIPHER_SUITES: dict[str, int] = {
    # TLS 1.3 (RFC 8446)
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_AES_128_CCM_SHA256": 0x1304,
    "TLS_AES_128_CCM_8_SHA256": 0x1305,
    # TLS 1.2 AEAD
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
    "DHE-RSA-AES128-GCM-SHA256": 0x009E,
    "DHE-RSA-AES256-GCM-SHA384": 0x009F,
    "DHE-RSA-CHACHA20-POLY1305": 0xCCAA,
    "AES128-GCM-SHA256": 0x009C,
    "AES256-GCM-SHA384": 0x009D,
    # TLS 1.2 CBC
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
    "ECDHE-ECDSA-AES256-SHA384": 0xC024,
    "ECDHE-RSA-AES128-SHA256": 0xC027,
    "ECDHE-RSA-AES256-SHA384": 0xC028,
    "ECDHE-ECDSA-AES128-SHA": 0xC009,
    "ECDHE-ECDSA-AES256-SHA": 0xC00A,
    "ECDHE-RSA-AES128-SHA": 0xC013,
    "ECDHE-RSA-AES256-SHA": 0xC014,
}


def tls_extension_for(
    ssl_object: ssl.SSLObject | None, *, server_cert: str | None = None
) -> dict[str, object] | None:
    """The ASGI ``tls`` extension dict for a connection, or None when it is not TLS.

    ``ssl_object`` is ``transport.get_extra_info("ssl_object")`` after the handshake.
    ``server_cert`` is the server's own certificate as PEM, if known (``ssl`` cannot
    report the certificate it sent).
    """
    if ssl_object is None:
        return None
    chain: list[str] = []
    name: str | None = None
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        leaf = x509.load_der_x509_certificate(der)
        chain.append(leaf.public_bytes(Encoding.PEM).decode("ascii"))
        name = leaf.subject.rfc4514_string()
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _CIPHER_SUITES.get(cipher[0]) if cipher else None,
    }


@functools.lru_cache(maxsize=8)
def _first_cert_pem(path: str) -> str | None:
    """The first certificate of a PEM file, re-encoded; None if unreadable.

    Cached: uvicorn loads its SSLContext once at startup, so a certificate file replaced
    later is not what the server sends either.
    """
    try:
        with open(path, "rb") as fh:
            certs = x509.load_pem_x509_certificates(fh.read())
    except (OSError, ValueError):
        return None
    return certs[0].public_bytes(Encoding.PEM).decode("ascii") if certs else None


def _server_cert_pem(config: Config) -> str | None:
    # A custom ssl_context_factory builds its own context: the hub's (`hub.server`) loads the
    # same certificate file it also names as ssl_certfile. Without ssl_certfile: unknown.
    if config.ssl_certfile is None:
        return None
    return _first_cert_pem(str(config.ssl_certfile))


def _with_tls_extension(app: ASGI3Application, tls: dict[str, object]) -> ASGI3Application:
    chain = tuple(cast("list[str]", tls["client_cert_chain"]))

    async def app_with_tls(
        scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = cast("dict[str, Any]", scope)
            extensions: dict[str, Any] = dict(raw.get("extensions") or {})
            # Each request gets its own copy; never override a server-provided extension.
            extensions.setdefault("tls", {**tls, "client_cert_chain": list(chain)})
            raw["extensions"] = extensions
        await app(scope, receive, send)

    return app_with_tls


class _UvicornHTTPProtocol(Protocol):
    """What both uvicorn HTTP protocol classes have: the config and the per-connection app."""

    config: Config
    app: ASGI3Application


def _install_tls_extension(protocol: _UvicornHTTPProtocol, transport: asyncio.Transport) -> None:
    tls = tls_extension_for(
        transport.get_extra_info("ssl_object"), server_cert=_server_cert_pem(protocol.config)
    )
    if tls is not None:
        # uvicorn reads self.app for every request on this connection.
        protocol.app = _with_tls_extension(protocol.app, tls)


class TLSScopeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, adding ``scope["extensions"]["tls"]`` on TLS connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _install_tls_extension(self, transport)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional (uvicorn[standard])
    HAS_HTTPTOOLS = False
else:
    HAS_HTTPTOOLS = True

    class TLSScopeHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, adding ``scope["extensions"]["tls"]`` on TLS."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _install_tls_extension(self, transport)

    __all__ += ["TLSScopeHttpToolsProtocol"]


def protocol_class(config_http: str = "h11") -> type[asyncio.Protocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)`` for an ``http`` setting.

    ``"h11"``, ``"httptools"`` (ImportError if httptools is not installed) or ``"auto"``
    (httptools when installed, else h11, as uvicorn's own "auto").
    """
    if config_http == "auto":
        config_http = "httptools" if HAS_HTTPTOOLS else "h11"
    if config_http == "h11":
        return TLSScopeH11Protocol
    if config_http == "httptools":
        if not HAS_HTTPTOOLS:
            raise ImportError("http='httptools' needs the httptools package (uvicorn[standard])")
        return TLSScopeHttpToolsProtocol
    raise ValueError(f"unsupported http protocol {config_http!r}: use 'h11', 'httptools' or 'auto'")
