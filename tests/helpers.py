"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import httpx

    from nodeloom.app.invocations.baseinvocation import BaseInvocation
    from nodeloom.app.services.shared.graph import Graph, GraphExecutionState

T = TypeVar("T")
N = TypeVar("N", bound="BaseInvocation")


def edge(source: str, source_field: str, destination: str, destination_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def graph_json(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"nodes": {n["id"]: n for n in nodes}, "edges": edges or []}


def node_of(graph: Graph, node_id: str, kind: type[N]) -> N:
    """The graph's node `node_id`, which must be a `kind`."""
    node = graph.nodes[node_id]
    assert isinstance(node, kind), node
    return node


def ran_whole(session: GraphExecutionState) -> bool:
    """Whether every node of the session's graph executed and none failed."""
    return session.graph.nodes.keys() <= session.executed and not session.errors


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Polls `check` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def finished_item(client: httpx.Client, url: str, timeout: float = 60) -> dict[str, Any]:
    """The queue item at `url` (its JSON) once it is completed, failed or canceled."""

    def finished() -> dict[str, Any] | None:
        item: dict[str, Any] = client.get(url).json()
        return item if item["status"] in ("completed", "failed", "canceled") else None

    return wait_for(finished, timeout=timeout, what=f"{url} to finish")
