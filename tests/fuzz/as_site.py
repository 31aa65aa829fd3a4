"""The node API's ASGI app as a site reaches it through mutual TLS, for in-process tests: each
HTTP request carries the ASGI TLS extension a verified client certificate would give it."""

from __future__ import annotations

from typing import Any


def as_site(app: Any, cert_pem: str, *, org: str = "org-a", site: str = "site-a") -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {
                "tls": {
                    "client_cert_chain": [cert_pem],
                    "client_cert_name": f"O={org},CN={site}",
                    "client_cert_error": None,
                }
            }
        await app(scope, receive, send)

    return wrapped
