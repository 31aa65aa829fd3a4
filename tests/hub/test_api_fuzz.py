"""schemathesis over the hub's own OpenAPI schema, as a network admin: 0 server errors.

Every operation gets schema-valid and schema-violating requests (hypothesis-generated, bounded
in count); the hub must answer each with a 2xx/4xx, never a 5xx. Runs in process (the real app
from `create_app`) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.hub.api_world import World, world_on

EXAMPLES_PER_OPERATION = 12
SKIPPED = {
    ("DELETE", "/api/v1/me/tokens/{token_id}"),  # would revoke the fuzzer's own token
    ("POST", "/api/v1/auth/logout"),
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzz_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with world_on(request.param, tmp_path_factory.mktemp("fuzz")) as made:
        yield made


def _operations(world: World) -> list[Any]:
    schema = schemathesis.openapi.from_dict(world.app_client.app.openapi())  # type: ignore[attr-defined]
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if (op.method.upper(), op.path) not in SKIPPED]


def test_no_request_makes_the_hub_fail(fuzz_world: World) -> None:
    operations = _operations(fuzz_world)
    assert len(operations) > 30
    admin = fuzz_world.as_("network-admin")
    failures: list[str] = []
    for operation in operations:
        _fuzz(fuzz_world, operation, admin, failures)
    assert failures == [], "\n".join(failures[:20])
    # the admin's token still works: nothing above broke the hub
    assert fuzz_world.app_client.get("/api/v1/me", headers=admin).status_code == 200


def _fuzz(world: World, operation: Any, admin: dict[str, str], failures: list[str]) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="https://testserver", headers=admin)
        kwargs.pop("cookies", None)
        response = world.app_client.request(**kwargs)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path}: {response.status_code} "
                f"for {kwargs.get('url')} {str(kwargs.get('json'))[:200]}"
            )

    run()
