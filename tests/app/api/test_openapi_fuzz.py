"""A bounded schemathesis run over the whole OpenAPI schema of a real server: nothing a client sends gets a 5xx.

The operations are driven with hypothesis directly (schemathesis's own pytest plugin does not run on pytest 9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import not_a_server_error
from tests.conftest import LiveServer

EXAMPLES_PER_OPERATION = 10


# schemathesis draws some multipart bodies with the `random` module, which hypothesis warns about.
@pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies")
def test_no_server_errors(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "root").start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 20
        for operation in operations:
            run_operation(operation)
    finally:
        server.stop()


def run_operation(operation: Any) -> None:
    @seed(20261127)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.call_and_validate(checks=[not_a_server_error], timeout=30)

    check()
