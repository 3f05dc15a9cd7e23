"""The feed service fuzzed from its own OpenAPI schema (schemathesis), as a real server process: no
generated request, valid or not, may get a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from test_feed_service import KEY, Server, start, world  # noqa: F401  (world is a fixture)

from topicfeed.settings import Settings


@pytest.fixture(scope="module")
def server(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Settings]]:  # noqa: F811
    yield from start(world, tmp_path_factory.mktemp("fuzz"), "sqlite", None)


@pytest.fixture(scope="module")
def api_schema(server: tuple[Server, Settings]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server[0].url}/openapi.json")


def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, 60 generated requests each (with and without the API key): no 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /v1/feed/{user_id}", "POST /v1/events", "GET /v1/users/{user_id}/profile", "GET /healthz", "GET /metrics"}
    calls = 0
    for op in operations:

        @hsettings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            for headers in ({}, {"X-API-Key": KEY}):
                response = case.call(headers=headers, timeout=30)
                calls += 1
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"

        check()
    assert calls >= 2 * len(operations)
