"""CORS for a browser viewer on another origin: only the configured origins, only on the
DICOMweb paths, bearer tokens (no credentials); the rest of the API sends no CORS headers."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from hub.bootstrap import init_hub
from hub.main import create_app
from hub.settings import HubSettings

VIEWER = "https://viewer.example"


def test_cors_only_for_configured_origins_and_dicomweb(tmp_path: Path) -> None:
    settings = HubSettings(data_dir=tmp_path / "hub", dicomweb_cors_origins=[VIEWER])
    init_hub(settings)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        preflight = client.options(
            "/dicomweb/collections/x/studies",
            headers={"Origin": VIEWER, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == VIEWER
        assert "access-control-allow-credentials" not in preflight.headers
        denied = client.get("/dicomweb/collections/x/studies", headers={"Origin": VIEWER})
        assert denied.status_code == 401  # CORS does not sign anyone in
        assert denied.headers["access-control-allow-origin"] == VIEWER
        other = client.options(
            "/dicomweb/collections/x/studies",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers
        api = client.get("/api/v1/health", headers={"Origin": VIEWER})
        assert "access-control-allow-origin" not in api.headers
