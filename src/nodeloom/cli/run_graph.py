"""`nodeloom run GRAPH.json`: validate a graph, run it in this process, print the outputs.

Exit codes: 0 when every node ran, 1 when a node failed, 2 when the graph (or the command line) is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData
from nodeloom.app.services.shared.session_runner import run_session
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation
    from nodeloom.app.services.shared.session_runner import SessionOutcome


class UsageError(NodeloomError):
    """The graph file or the command line is invalid."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", type=Path, help="a graph JSON file: {nodes: {id: node}, edges: [...]}")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NODE.FIELD=VALUE",
        help="set a node's field before running; VALUE is read as JSON, else as a string (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with every output and error")


def read_json_file(path: Path) -> Any:
    """The JSON value in `path`; raises `UsageError` where the file cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"Cannot read {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not valid JSON: {e}") from e


def read_graph_json(path: Path, overrides: list[str]) -> dict[str, Any]:
    """The graph JSON in `path` with the `--set` overrides applied, not yet validated; raises `UsageError`."""
    raw = read_json_file(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes", {}), dict):
        raise UsageError(f"{path} must hold a graph object with a 'nodes' object and an 'edges' list")
    for override in overrides:
        target, sep, value = override.partition("=")
        node_id, dot, field = target.rpartition(".")
        if not (sep and dot and node_id and field):
            raise UsageError(f"--set {override!r}: expected NODE.FIELD=VALUE")
        node = raw.get("nodes", {}).get(node_id)
        if not isinstance(node, dict):
            raise UsageError(f"--set {override!r}: the graph has no node '{node_id}'")
        try:
            node[field] = json.loads(value)
        except json.JSONDecodeError:
            node[field] = value
    return raw


def load_graph(path: Path, overrides: list[str]) -> Graph:
    """The validated graph in `path` with the `--set` overrides applied; raises `UsageError` or `ValidationError`."""
    return Graph.model_validate(read_graph_json(path, overrides))


def print_outputs(outputs: dict[str, list[dict[str, Any]]], indent: str = "") -> None:
    """Each source node's outputs, one line per output."""
    for source_id, source_outputs in outputs.items():
        for output in source_outputs:
            fields = ", ".join(f"{key}={json.dumps(value)}" for key, value in output.items() if key != "type")
            print(f"{indent}{source_id}: {fields}")


def execute(session: GraphExecutionState) -> SessionOutcome:
    """Runs every node of the session in order; a failing node's error is recorded on the session."""

    def make_context(node: BaseInvocation) -> InvocationContext:
        data = InvocationContextData(
            invocation=node, source_invocation_id=session.prepared_source_mapping[node.id], session_id=session.id
        )
        return InvocationContext(data=data)

    return run_session(session, make_context)


def outputs_by_source(session: GraphExecutionState) -> dict[str, list[dict[str, Any]]]:
    """Each source node's outputs, one per prepared copy in execution order."""
    outputs: dict[str, list[dict[str, Any]]] = {}
    for prepared_id, output in session.results.items():
        source_id = session.prepared_source_mapping[prepared_id]
        outputs.setdefault(source_id, []).append(output.model_dump(mode="json"))
    return outputs


def run(args: argparse.Namespace) -> int:
    load_builtin_nodes()
    try:
        session = GraphExecutionState(graph=load_graph(args.graph, args.overrides))
    except (UsageError, ValidationError, NodeloomError) as e:
        print(f"nodeloom run: invalid graph: {e}", file=sys.stderr)
        return 2
    error = execute(session).error
    if error is not None and isinstance(error.exception, KeyboardInterrupt):
        raise error.exception  # Ctrl-C in a node stops the command, as it does anywhere else, not as a node error
    if error is not None and error.node is None:
        print(f"nodeloom run: {error.message}", file=sys.stderr)
        return 1
    outputs = outputs_by_source(session)
    errors = {session.prepared_source_mapping[p]: message for p, message in session.errors.items()}
    if args.json:
        print(json.dumps({"outputs": outputs, "errors": errors}))
    else:
        print_outputs(outputs)
        for source_id, message in errors.items():
            print(f"{source_id}: error: {message}", file=sys.stderr)
    return 1 if errors else 0
