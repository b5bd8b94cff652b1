"""A bounded schemathesis run over every route of a real server: nothing a client sends gets a 5xx, and every
response keeps to the OpenAPI schema (a documented status, content type and body).

The operations are driven with hypothesis directly (schemathesis's own pytest plugin does not run on pytest 9).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import APIRouter
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err, Ok
from tests.conftest import LiveServer

import nodeloom.app.api.routers as routers_package

EXAMPLES_PER_OPERATION = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# schemathesis draws some multipart bodies with the `random` module, which hypothesis warns about.
@pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies")
def test_every_route_keeps_to_its_schema_and_never_fails(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "root").start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        results = list(schema.get_all_operations())
        assert [result.err() for result in results if isinstance(result, Err)] == []
        operations = [result.ok() for result in results if isinstance(result, Ok)]
        fuzzed = {(operation.method.upper(), operation.definition.raw["operationId"]) for operation in operations}
        assert fuzzed == declared_operations()
        for operation in operations:
            run_operation(operation)
    finally:
        server.stop()


def declared_operations() -> set[tuple[str, str | None]]:
    """(method, operation id) of every route that the API's routers declare in the schema."""
    operations = set()
    for module in pkgutil.iter_modules(routers_package.__path__):
        namespace = vars(importlib.import_module(f"{routers_package.__name__}.{module.name}"))
        for router in (value for value in namespace.values() if isinstance(value, APIRouter)):
            for route in router.routes:
                if isinstance(route, APIRoute) and route.include_in_schema:
                    operations |= {(method, route.operation_id) for method in route.methods or ()}
    return operations


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
        case.call_and_validate(checks=CHECKS, timeout=30)

    check()
