"""The app as a whole: its routes' shape, its OpenAPI document, and its answer for an unknown path."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
from tests.conftest import LiveServer

import nodeloom.app.api.routers as routers_package


def test_async_routes_await() -> None:
    """An `async def` route that never awaits would block the event loop with its sync work."""
    offenders = []
    for path in Path(routers_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef) and not any(isinstance(n, ast.Await) for n in ast.walk(node)):
                offenders.append(f"{path.name}:{node.name}")
    assert offenders == []


def test_openapi_lists_every_node_type(server: LiveServer) -> None:
    from nodeloom.app.invocations.baseinvocation import registry

    schema = httpx.get(f"{server.url}/openapi.json").json()
    defs = schema["components"]["schemas"]
    titles = {d.get("properties", {}).get("type", {}).get("const") for d in defs.values()}
    missing = {cls.invocation_type for cls in registry.invocation_classes()} - titles
    assert missing == set()
    assert "a" in defs["AddInvocation"]["properties"]


def test_unknown_api_path_is_a_json_404(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/api/v1/nothing/here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
