"""Helpers shared by the API tests that enqueue: two small graphs, enqueueing a batch and waiting for it."""

from __future__ import annotations

from typing import Any

import httpx
from tests.helpers import edge, graph_json

ADD_GRAPH = graph_json(
    [{"id": "a", "type": "integer", "value": 1}, {"id": "sum", "type": "add", "b": 100}],
    [edge("a", "value", "sum", "a")],
)
WAIT_GRAPH = graph_json([{"id": "wait", "type": "test_wait", "seconds": 30}])


def enqueue(client: httpx.Client, graph: dict[str, Any], **batch: Any) -> dict[str, Any]:
    response = client.post("/enqueue_batch", json={"batch": {"graph": graph, **batch}})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait(client: httpx.Client, batch_id: str, timeout: float = 20) -> dict[str, Any]:
    response = client.get(f"/b/{batch_id}/wait", params={"timeout": timeout})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
