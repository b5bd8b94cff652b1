"""The graph engine alone (no events, no database): one JSON object per measurement.

(a) a chain of N `add` nodes; (b) range(M) -> iterate -> add -> collect; (c) two nested iterates.
`engine_us_per_node` is the time spent in `next()` and `complete()` per prepared node, without `invoke`.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData


def edge(source: str, source_field: str, destination: str, destination_field: str) -> dict[str, Any]:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def chain(n: int) -> dict[str, Any]:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "add", "a": 0, "b": 1} for i in range(n)}
    edges = [edge(f"n{i - 1}", "value", f"n{i}", "a") for i in range(1, n)]
    return {"nodes": nodes, "edges": edges}


def fan_out(m: int) -> dict[str, Any]:
    nodes = {
        "range": {"id": "range", "type": "range", "start": 0, "stop": m, "step": 1},
        "iterate": {"id": "iterate", "type": "iterate"},
        "add": {"id": "add", "type": "add", "b": 1},
        "collect": {"id": "collect", "type": "collect"},
    }
    edges = [
        edge("range", "collection", "iterate", "collection"),
        edge("iterate", "item", "add", "a"),
        edge("add", "value", "collect", "item"),
    ]
    return {"nodes": nodes, "edges": edges}


def nested(outer: int, inner: int) -> dict[str, Any]:
    nodes = {
        "outer_range": {"id": "outer_range", "type": "range", "start": 0, "stop": outer, "step": 1},
        "outer": {"id": "outer", "type": "iterate"},
        "inner_range": {"id": "inner_range", "type": "range_of_size", "size": inner, "step": 1},
        "inner": {"id": "inner", "type": "iterate"},
        "add": {"id": "add", "type": "add", "b": 1},
        "collect_inner": {"id": "collect_inner", "type": "collect"},
        "collect_outer": {"id": "collect_outer", "type": "collect"},
    }
    edges = [
        edge("outer_range", "collection", "outer", "collection"),
        edge("outer", "item", "inner_range", "start"),
        edge("inner_range", "collection", "inner", "collection"),
        edge("inner", "item", "add", "a"),
        edge("add", "value", "collect_inner", "item"),
        edge("collect_inner", "collection", "collect_outer", "item"),
    ]
    return {"nodes": nodes, "edges": edges}


def measure(name: str, size: int | str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    graph_json = make()
    gc.collect()  # so no measurement pays for collecting the garbage of the one before
    started = time.perf_counter()
    graph = Graph.model_validate(graph_json)
    session = GraphExecutionState(graph=graph)
    built = time.perf_counter()
    invoke_s = 0.0
    while (node := session.next()) is not None:
        data = InvocationContextData(
            invocation=node, source_invocation_id=session.prepared_source_mapping[node.id], session_id=session.id
        )
        t = time.perf_counter()
        output = node.invoke(InvocationContext(data=data))
        invoke_s += time.perf_counter() - t
        session.complete(node.id, output)
    finished = time.perf_counter()
    assert session.graph.nodes.keys() <= session.executed and not session.errors
    prepared = len(session.execution_graph.nodes)
    run_s = finished - built
    return {
        "case": name,
        "size": size,
        "prepared_nodes": prepared,
        "build_s": round(built - started, 4),
        "run_s": round(run_s, 4),
        "total_s": round(finished - started, 4),
        "us_per_node": round(run_s / prepared * 1e6, 2),
        "engine_us_per_node": round((run_s - invoke_s) / prepared * 1e6, 2),
    }


def main() -> None:
    load_builtin_nodes()
    for n in (100, 1_000, 10_000):
        print(json.dumps(measure("chain", n, lambda n=n: chain(n))), flush=True)
    for m in (100, 1_000, 10_000):
        print(json.dumps(measure("fan_out", m, lambda m=m: fan_out(m))), flush=True)
    print(json.dumps(measure("nested", "100x100", lambda: nested(100, 100))), flush=True)


if __name__ == "__main__":
    main()
