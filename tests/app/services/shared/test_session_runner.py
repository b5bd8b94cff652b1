from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests import nodes
from tests.helpers import edge, graph_json, ran_whole

from nodeloom.app.invocations.baseinvocation import BaseInvocation, CanceledException
from nodeloom.app.invocations.primitives import IntegerOutput
from nodeloom.app.services.invocation_cache.invocation_cache_memory import MemoryInvocationCache
from nodeloom.app.services.invocation_stats.invocation_stats_common import GESStatsNotFoundError
from nodeloom.app.services.invocation_stats.invocation_stats_default import InvocationStatsService
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState
from nodeloom.app.services.shared.graph_common import NodeInputError
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData, UtilInterface
from nodeloom.app.services.shared.session_runner import (
    NodeCompleted,
    NodeFailed,
    NodeStarted,
    RunEvent,
    SessionInvariantError,
    run_session,
)

ADD_GRAPH = graph_json(
    [{"id": "a", "type": "integer", "value": 1}, {"id": "sum", "type": "add", "b": 100}],
    [edge("a", "value", "sum", "a")],
)


def session_of(graph: dict[str, Any]) -> GraphExecutionState:
    return GraphExecutionState(graph=Graph.model_validate(graph))


def contexts(
    session: GraphExecutionState, is_canceled: Callable[[], bool] = lambda: False
) -> Callable[[BaseInvocation], InvocationContext]:
    def make(node: BaseInvocation) -> InvocationContext:
        data = InvocationContextData(
            invocation=node, source_invocation_id=session.prepared_source_mapping[node.id], session_id=session.id
        )
        return InvocationContext(data=data, util=UtilInterface(is_canceled))

    return make


def kinds(events: list[RunEvent]) -> list[tuple[str, str]]:
    """(event class, node type) for each event."""
    return [(type(event).__name__, event.node.type) for event in events]


def test_runs_every_node_in_order_and_summarises_the_stats_once() -> None:
    session = session_of(ADD_GRAPH)
    stats = InvocationStatsService()
    events: list[RunEvent] = []
    outcome = run_session(session, contexts(session), stats=stats, emit=events.append)
    assert outcome.status == "completed" and outcome.error is None
    assert kinds(events) == [
        ("NodeStarted", "integer"),
        ("NodeCompleted", "integer"),
        ("NodeStarted", "add"),
        ("NodeCompleted", "add"),
    ]
    outputs = [event.output for event in events if isinstance(event, NodeCompleted)]
    assert [output.value for output in outputs if isinstance(output, IntegerOutput)] == [1, 101]
    assert outcome.stats is not None
    assert {node.node_type: node.num_calls for node in outcome.stats.node_stats} == {"integer": 1, "add": 1}
    with pytest.raises(GESStatsNotFoundError):  # summarised, then forgotten: the service holds no session forever
        stats.get_stats(session.id)


def test_without_stats_or_events_the_outcome_has_no_summary() -> None:
    session = session_of(ADD_GRAPH)
    outcome = run_session(session, contexts(session))
    assert outcome.status == "completed" and outcome.stats is None
    assert ran_whole(session)


def test_the_cache_is_used_when_given() -> None:
    cache = MemoryInvocationCache(max_size=10)
    graph = graph_json([{"id": "c", "type": "test_count", "value": 3, "label": "runner-cache"}])
    for _ in range(2):
        session = session_of(graph)
        assert run_session(session, contexts(session), cache=cache).status == "completed"
    assert nodes.INVOKED.count("runner-cache") == 1


@pytest.mark.parametrize(
    ("node", "error_type", "message"),
    [
        ({"type": "test_fail", "message": "the node broke"}, "RuntimeError", "the node broke"),
        ({"type": "test_exit", "message": "the node quit"}, "SystemExit", "the node quit"),
    ],
)
def test_whatever_a_node_raises_fails_the_session_on_that_node(
    node: dict[str, Any], error_type: str, message: str
) -> None:
    graph = graph_json(
        [{"id": "boom", **node}, {"id": "after", "type": "test_count", "label": "after-boom"}],
        [edge("boom", "value", "after", "value")],
    )
    session = session_of(graph)
    events: list[RunEvent] = []
    outcome = run_session(session, contexts(session), emit=events.append)
    assert outcome.status == "failed" and outcome.error is not None
    assert (outcome.error.error_type, outcome.error.message) == (error_type, message)
    assert outcome.error.node is not None and session.prepared_source_mapping[outcome.error.node.id] == "boom"
    assert f"{error_type}: {message}" in outcome.error.traceback
    assert session.errors == {outcome.error.node.id: f"{error_type}: {message}"}
    assert kinds(events)[-2:] == [("NodeStarted", node["type"]), ("NodeFailed", node["type"])]
    assert isinstance(events[-1], NodeFailed) and events[-1].error is outcome.error
    assert "after-boom" not in nodes.INVOKED


def test_an_input_that_does_not_fit_fails_its_node_like_an_error_in_invoke() -> None:
    graph = graph_json(
        [{"id": "x", "type": "test_any", "value": "text"}, {"id": "a", "type": "add"}], [edge("x", "value", "a", "a")]
    )
    session = session_of(graph)
    events: list[RunEvent] = []
    outcome = run_session(session, contexts(session), emit=events.append)
    assert outcome.status == "failed" and outcome.error is not None
    error = outcome.error
    assert isinstance(error.exception, NodeInputError) and error.error_type == "NodeInputError"
    assert error.node is not None and session.prepared_source_mapping[error.node.id] == "a"
    assert session.errors == {error.node.id: f"NodeInputError: {error.message}"}
    assert "Input 'a' of node 'a'" in error.message and "NodeInputError" in error.traceback
    # Its inputs never filled, the node never started: it fails as soon as the engine tries to fill them.
    assert kinds(events) == [("NodeStarted", "test_any"), ("NodeCompleted", "test_any"), ("NodeFailed", "add")]


def test_a_cancel_seen_by_the_node_stops_the_session() -> None:
    session = session_of(graph_json([{"id": "p", "type": "test_progress", "steps": 3}]))
    stop: list[bool] = []
    events: list[RunEvent] = []

    def stop_when_started(event: RunEvent) -> None:
        events.append(event)
        stop.append(True)

    outcome = run_session(
        session, contexts(session, lambda: bool(stop)), emit=stop_when_started, should_stop=lambda: bool(stop)
    )
    assert outcome.status == "stopped" and outcome.error is None
    assert kinds(events) == [("NodeStarted", "test_progress")]  # signal_progress raised CanceledException
    assert not session.results and not session.errors


def test_a_canceled_exception_without_a_stop_is_a_node_error() -> None:
    session = session_of(graph_json([{"id": "p", "type": "test_progress", "steps": 3}]))
    outcome = run_session(session, contexts(session, lambda: True))
    assert outcome.status == "failed" and outcome.error is not None
    assert isinstance(outcome.error.exception, CanceledException) and outcome.error.node is not None


def test_an_output_after_the_stop_is_dropped() -> None:
    session = session_of(ADD_GRAPH)
    stop: list[bool] = []
    events: list[RunEvent] = []

    def stop_when_started(event: RunEvent) -> None:
        events.append(event)
        if isinstance(event, NodeStarted):
            stop.append(True)

    outcome = run_session(session, contexts(session), emit=stop_when_started, should_stop=lambda: bool(stop))
    assert outcome.status == "stopped"
    assert kinds(events) == [("NodeStarted", "integer")]
    assert not session.results and not session.executed


def test_an_engine_error_fails_the_session_with_no_node() -> None:
    session = session_of(ADD_GRAPH)

    def broken_emit(event: RunEvent) -> None:
        if isinstance(event, NodeCompleted):
            raise OSError("the event bus is gone")

    outcome = run_session(session, contexts(session), emit=broken_emit)
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.node is None and outcome.error.error_type == "OSError"
    assert "the event bus is gone" in outcome.error.traceback
    assert not session.errors  # no node failed


class StuckSession(GraphExecutionState):
    """A session whose scheduler has lost track of its nodes: nothing is ever ready."""

    def next(self) -> BaseInvocation | None:
        return None


def test_a_session_left_with_nodes_pending_fails_naming_them() -> None:
    session = StuckSession(graph=Graph.model_validate(ADD_GRAPH))
    outcome = run_session(session, contexts(session))
    assert outcome.status == "failed" and outcome.error is not None
    assert isinstance(outcome.error.exception, SessionInvariantError) and outcome.error.node is None
    assert outcome.error.message == f"No node of session {session.id} is ready to run, yet 2 never ran: 'a', 'sum'"


def test_a_long_list_of_pending_nodes_is_cut_short() -> None:
    graph = graph_json([{"id": f"n{i}", "type": "integer"} for i in range(25)])
    outcome = run_session(StuckSession(graph=Graph.model_validate(graph)), lambda node: pytest.fail("no node runs"))
    assert outcome.error is not None
    assert outcome.error.message.endswith("'n19' and 5 more") and "'n20'" not in outcome.error.message
