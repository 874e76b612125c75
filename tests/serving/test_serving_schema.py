"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis + hypothesis), valid
and invalid inputs alike: the service must never answer 5xx, and every error has the one JSON shape.
Bounded: a fixed number of examples per operation and a wall-clock budget for the whole run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.serving.serving_helpers import make_client

BUDGET_S = 25.0
EXAMPLES = 40


@pytest.fixture(scope="module")
def fuzz_client(tiny_checkpoint: Path):
    with make_client(tiny_checkpoint, max_chars=300) as client:
        yield client


def call(client: TestClient, case: schemathesis.Case):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    kwargs.pop("cookies", None)
    return client.request(**kwargs)


def test_fuzzing_the_openapi_schema_finds_no_server_errors(fuzz_client: TestClient) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_client.get("/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/tag", "POST /v1/tag/batch", "POST /v1/admin/reload"}
    started = time.monotonic()
    seen: dict[int, int] = {}

    for operation in operations:
        for mode in GenerationMode:

            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                if time.monotonic() - started > BUDGET_S:
                    return
                response = call(fuzz_client, case)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1
                assert response.status_code < 500, (case.method, case.path, case.body, response.text)
                if response.status_code >= 400:
                    assert set(response.json()["error"]) >= {"code", "message"}

            try:
                check()
            except Unsatisfiable:
                # an operation without parameters or body has no invalid input to generate
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert time.monotonic() - started < BUDGET_S + 10
    print("status counts:", dict(sorted(seen.items())))
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 0  # both valid and invalid inputs were exercised
