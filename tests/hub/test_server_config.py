"""How `hub.server` configures its two uvicorn listeners: the project's TLS contexts, proxy
headers ignored unless configured, no server banner."""

from __future__ import annotations

import ssl
from pathlib import Path

from hub.bootstrap import init_hub
from hub.main import create_app
from hub.server import _configs
from hub.settings import HubSettings


def _settings(tmp_path: Path, **overrides: object) -> HubSettings:
    settings = HubSettings(data_dir=tmp_path / "hub", **overrides)  # type: ignore[arg-type]
    init_hub(settings)
    return settings


def test_listeners_use_the_project_tls_contexts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = create_app(settings)
    try:
        node, public = _configs(app, settings)
        for config, mode in ((node, ssl.CERT_REQUIRED), (public, ssl.CERT_NONE)):
            config.load()
            assert config.ssl is not None
            assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
            assert config.ssl.verify_mode == mode
            tls12 = {c["name"] for c in config.ssl.get_ciphers() if c["protocol"] == "TLSv1.2"}
            assert tls12 and all(
                n.startswith("ECDHE-") and ("GCM" in n or "CHACHA" in n) for n in tls12
            ), tls12
    finally:
        app.state.engine.dispose()


def test_proxy_headers_are_ignored_unless_configured(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = create_app(settings)
    try:
        for config in _configs(app, settings):
            assert config.proxy_headers is False
            assert config.forwarded_allow_ips == []
            assert config.server_header is False
    finally:
        app.state.engine.dispose()
    enabled = _settings(tmp_path, proxy_headers=True, forwarded_allow_ips=["10.0.0.5"])
    app = create_app(enabled)
    try:
        for config in _configs(app, enabled):
            assert config.proxy_headers is True
            assert config.forwarded_allow_ips == ["10.0.0.5"]
    finally:
        app.state.engine.dispose()
