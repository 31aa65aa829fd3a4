"""schemathesis against the node API's OpenAPI (the app in-process over ASGI): every node
operation with generated valid and invalid requests; the hub never answers 5xx. (The public
and user API has its own run as a network admin: tests/hub/test_api_fuzz.py.)

Node operations are called as an enrolled site (the TLS extension a verified mutual-TLS
connection carries is put into each request's scope), so they are exercised past
authentication."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from certs.registry import CADirectory
from certs.tokens import issue_token
from hub.bootstrap import init_hub
from hub.main import create_app
from hub.settings import HubSettings
from tests.fuzz.as_site import as_site
from tests.hub.conftest import enroll_request

with warnings.catch_warnings():  # starlette asks for httpx2, which the project does not use
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _as_site(app: Any, cert_pem: str) -> Any:
    """The node API's app as an enrolled site reaches it, plus its schema at /openapi.json
    (the hub serves no schema on the node listener; the fuzzer needs one)."""
    schema = json.dumps(app.openapi()).encode()

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/openapi.json":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": schema})
            return
        await node(scope, receive, send)

    node = as_site(app, cert_pem)
    return wrapped


@pytest.fixture(scope="module")
def hub_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    settings_ = HubSettings(data_dir=tmp / "hub")
    init_hub(settings_)
    app = create_app(settings_)
    ca = CADirectory(settings_.ca_dir).load()
    attempt = enroll_request(issue_token(ca, org="org-a", site="site-a"), "org-a", "site-a")
    with TestClient(app, base_url="https://hub") as client:
        response = client.post("/api/v1/enroll", json=attempt.request.model_dump(mode="json"))
        assert response.status_code == 200, response.text
    yield _as_site(app.state.node_app, response.json()["certificate_pem"])
    app.state.services.close()


def _no_long_wait(case: schemathesis.Case) -> None:
    """A long poll's `wait` (seconds the hub holds the request when nothing is there) is cut to
    a tenth of a second when it is a number: the fuzzer tries values, not patience. Values that
    are not numbers are sent as generated, to be refused."""
    query = case.query if isinstance(case.query, dict) else None
    if query is None or "wait" not in query:
        return
    try:
        seconds = float(query["wait"])
    except (TypeError, ValueError):
        return
    if seconds == seconds and seconds > 0.1:  # not NaN
        query["wait"] = 0.1


def test_no_operation_answers_5xx(hub_app: Any) -> None:
    api = schemathesis.openapi.from_asgi("/openapi.json", hub_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10  # every node operation is in the schema
    seen: set[int] = set()

    for operation in operations:
        strategy = operation.as_strategy() | operation.as_strategy(
            schemathesis.GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(
            max_examples=15,
            deadline=3000,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            _no_long_wait(case)
            response = case.call()
            seen.add(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        call()
    assert any(200 <= status < 300 for status in seen)  # not everything was refused
    assert any(400 <= status < 500 for status in seen)  # and invalid requests were generated
