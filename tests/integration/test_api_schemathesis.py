"""Property-based requests generated from the app's own OpenAPI spec (schemathesis): no input gives a 500.

The app runs open on loopback (no keys) with a recording enqueuer. Each operation gets a bounded,
derandomized Hypothesis run (schemathesis' Python API; its pytest plugin does not load under pytest 9),
so the whole test stays well under a minute. The SSE stream is left out (a long-lived response).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.api_fixtures import Api, running_api

MAX_EXAMPLES = int(os.environ.get("FRAMESCRIBE_SCHEMATHESIS_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, clip_12s: Path) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("schemathesis")) as a:
        (a.media / "clip.mp4").symlink_to(clip_12s)
        yield a


def test_no_input_gives_a_server_error(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json")
    tried: list[str] = []
    calls = [0]
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue
        tried.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            calls[0] += 1
            case.call_and_validate(base_url=api.base, checks=[not_a_server_error], timeout=30)

        run()
    assert calls[0] >= 5 * len(tried)  # really exercised, not skipped
    assert {"POST /v1/jobs", "GET /v1/jobs", "POST /v1/schedules", "PATCH /v1/schedules/{schedule_id}"} <= set(tried)
