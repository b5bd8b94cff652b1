from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from tests.helpers import edge, ran_whole

from nodeloom.app.invocations.baseinvocation import BaseInvocationOutput, registry
from nodeloom.app.invocations.primitives import IntegerCollectionInvocation, IntegerCollectionOutput
from nodeloom.app.services.shared.graph import (
    CyclicalGraphError,
    DuplicateInputEdgeError,
    DuplicateNodeIdError,
    Edge,
    EdgeConnection,
    Graph,
    GraphError,
    GraphExecutionState,
    IncompatibleTypesError,
    InvalidEdgeError,
    IterateCollectError,
    MissingGraphInputError,
    NodeFieldNotFoundError,
    NodeInputError,
    NodeNotFoundError,
)
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> Graph:
    return Graph.model_validate({"nodes": {n["id"]: n for n in nodes}, "edges": edges or []})


def run(session: GraphExecutionState, limit: int | None = None) -> GraphExecutionState:
    """Runs up to `limit` nodes (all when None)."""
    count = 0
    while (limit is None or count < limit) and (node := session.next()) is not None:
        data = InvocationContextData(
            invocation=node, source_invocation_id=session.prepared_source_mapping[node.id], session_id=session.id
        )
        session.complete(node.id, node.invoke_internal(InvocationContext(data=data)))
        count += 1
    return session


def outputs(session: GraphExecutionState, source_id: str) -> list[dict[str, Any]]:
    """The source node's outputs in iteration order."""
    prepared = sorted(session.source_prepared_mapping[source_id], key=lambda p: session.iteration_paths[p])
    return [session.results[p].model_dump(exclude={"type"}) for p in prepared]


def values(session: GraphExecutionState, source_id: str, field: str = "value") -> list[Any]:
    return [o[field] for o in outputs(session, source_id)]


def fan_out_graph(m: int) -> Graph:
    return graph(
        [
            {"id": "range", "type": "integer_collection", "collection": list(range(m))},
            {"id": "iterate", "type": "iterate"},
            {"id": "add", "type": "add", "b": 10},
            {"id": "collect", "type": "collect"},
            {"id": "after", "type": "integer_collection"},
        ],
        [
            edge("range", "collection", "iterate", "collection"),
            edge("iterate", "item", "add", "a"),
            edge("add", "value", "collect", "item"),
            edge("collect", "collection", "after", "collection"),
        ],
    )


def nested_graph(outer: int, inner: int) -> Graph:
    return graph(
        [
            {"id": "outer_range", "type": "range", "start": 0, "stop": outer, "step": 1},
            {"id": "outer", "type": "iterate"},
            {"id": "mul", "type": "mul", "b": 10},
            {"id": "inner_range", "type": "range_of_size", "size": inner, "step": 1},
            {"id": "inner", "type": "iterate"},
            {"id": "add", "type": "add", "b": 0},
            {"id": "collect_inner", "type": "collect"},
            {"id": "collect_outer", "type": "collect"},
        ],
        [
            edge("outer_range", "collection", "outer", "collection"),
            edge("outer", "item", "mul", "a"),
            edge("mul", "value", "inner_range", "start"),
            edge("inner_range", "collection", "inner", "collection"),
            edge("inner", "item", "add", "a"),
            edge("add", "value", "collect_inner", "item"),
            edge("collect_inner", "collection", "collect_outer", "item"),
        ],
    )


class TestValidation:
    def test_a_valid_graph_passes(self) -> None:
        fan_out_graph(3).validate_self()

    def test_duplicate_node_id(self) -> None:
        g = graph([{"id": "a", "type": "integer"}])
        with pytest.raises(DuplicateNodeIdError) as e:
            g.add_node(registry.validate_invocation({"id": "a", "type": "integer"}))
        assert e.value.node_id == "a"

    def test_node_stored_under_another_id(self) -> None:
        g = Graph.model_validate({"nodes": {"x": {"id": "y", "type": "integer"}}})
        with pytest.raises(GraphError, match="'y' is stored under the id 'x'"):
            g.validate_self()

    @pytest.mark.parametrize(
        ("bad_edge", "node_id"),
        [(edge("ghost", "value", "a", "a"), "ghost"), (edge("i", "value", "ghost", "a"), "ghost")],
    )
    def test_edge_to_missing_node(self, bad_edge: dict[str, Any], node_id: str) -> None:
        g = graph([{"id": "i", "type": "integer"}, {"id": "a", "type": "add"}], [bad_edge])
        with pytest.raises(NodeNotFoundError) as e:
            g.validate_self()
        assert e.value.node_id == node_id

    def test_edge_from_missing_output_field(self) -> None:
        g = graph([{"id": "i", "type": "integer"}, {"id": "a", "type": "add"}], [edge("i", "nope", "a", "a")])
        with pytest.raises(NodeFieldNotFoundError, match="has no output 'nope'") as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("i", "nope")

    def test_edge_to_missing_input_field(self) -> None:
        g = graph([{"id": "i", "type": "integer"}, {"id": "a", "type": "add"}], [edge("i", "value", "a", "c")])
        with pytest.raises(NodeFieldNotFoundError, match="has no input 'c'") as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("a", "c")

    def test_edge_into_a_direct_only_input(self) -> None:
        g = graph(
            [{"id": "r", "type": "range"}, {"id": "c", "type": "collect"}],
            [edge("r", "collection", "c", "collection")],
        )
        with pytest.raises(InvalidEdgeError, match="takes a value, not a connection"):
            g.validate_self()

    def test_incompatible_types(self) -> None:
        g = graph([{"id": "s", "type": "string"}, {"id": "a", "type": "add"}], [edge("s", "value", "a", "a")])
        with pytest.raises(IncompatibleTypesError) as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("a", "a")
        assert "'s'" in str(e.value) and "str" in str(e.value) and "int" in str(e.value)

    def test_int_feeds_float(self) -> None:
        g = graph(
            [{"id": "i", "type": "integer", "value": 3}, {"id": "f", "type": "float_math", "operation": "ADD", "b": 0}],
            [edge("i", "value", "f", "a")],
        )
        session = run(GraphExecutionState(graph=g))
        assert values(session, "f") == [3.0]
        assert isinstance(values(session, "f")[0], float)

    def test_float_does_not_feed_int(self) -> None:
        g = graph([{"id": "f", "type": "float"}, {"id": "a", "type": "add"}], [edge("f", "value", "a", "a")])
        with pytest.raises(IncompatibleTypesError):
            g.validate_self()

    def test_single_value_into_a_list_input_only_through_collect(self) -> None:
        g = graph(
            [{"id": "i", "type": "integer"}, {"id": "ic", "type": "integer_collection"}],
            [edge("i", "value", "ic", "collection")],
        )
        with pytest.raises(IncompatibleTypesError):
            g.validate_self()
        g = graph(
            [
                {"id": "i", "type": "integer", "value": 4},
                {"id": "c", "type": "collect"},
                {"id": "ic", "type": "integer_collection"},
            ],
            [edge("i", "value", "c", "item"), edge("c", "collection", "ic", "collection")],
        )
        assert values(run(GraphExecutionState(graph=g)), "ic", "collection") == [[4]]

    def test_polymorphic_input_takes_one_or_many(self) -> None:
        single = graph(
            [{"id": "i", "type": "integer", "value": 5}, {"id": "p", "type": "test_int_or_list"}],
            [edge("i", "value", "p", "values")],
        )
        many = graph(
            [{"id": "r", "type": "range", "stop": 4}, {"id": "p", "type": "test_int_or_list"}],
            [edge("r", "collection", "p", "values")],
        )
        assert values(run(GraphExecutionState(graph=single)), "p") == [5]
        assert values(run(GraphExecutionState(graph=many)), "p") == [6]

    def test_any_output_feeds_anything(self) -> None:
        g = graph(
            [{"id": "x", "type": "test_any", "value": 2}, {"id": "a", "type": "add"}], [edge("x", "value", "a", "a")]
        )
        assert values(run(GraphExecutionState(graph=g)), "a") == [2]

    def test_two_edges_into_one_input(self) -> None:
        g = graph(
            [{"id": "x", "type": "integer"}, {"id": "y", "type": "integer"}, {"id": "a", "type": "add"}],
            [edge("x", "value", "a", "a"), edge("y", "value", "a", "a")],
        )
        with pytest.raises(DuplicateInputEdgeError) as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("a", "a")

    def test_two_edges_into_collect_item(self) -> None:
        g = graph(
            [
                {"id": "x", "type": "integer", "value": 1},
                {"id": "y", "type": "integer", "value": 2},
                {"id": "c", "type": "collect"},
            ],
            [edge("x", "value", "c", "item"), edge("y", "value", "c", "item")],
        )
        assert values(run(GraphExecutionState(graph=g)), "c", "collection") == [[1, 2]]

    def test_cycle(self) -> None:
        g = graph(
            [{"id": "a", "type": "add"}, {"id": "b", "type": "add"}],
            [edge("a", "value", "b", "a"), edge("b", "value", "a", "a")],
        )
        with pytest.raises(CyclicalGraphError, match="cycle"):
            g.validate_self()

    def test_self_loop(self) -> None:
        g = graph([{"id": "a", "type": "add"}], [edge("a", "value", "a", "b")])
        with pytest.raises(CyclicalGraphError) as e:
            g.validate_self()
        assert e.value.node_id == "a"

    def test_add_edge_refuses_a_cycle_and_keeps_the_graph(self) -> None:
        g = graph([{"id": "a", "type": "add"}, {"id": "b", "type": "add"}], [edge("a", "value", "b", "a")])
        back = Edge(
            source=EdgeConnection(node_id="b", field="value"), destination=EdgeConnection(node_id="a", field="a")
        )
        with pytest.raises(CyclicalGraphError):
            g.add_edge(back)
        assert len(g.edges) == 1
        g.validate_self()

    def test_iterate_without_collection(self) -> None:
        g = graph([{"id": "it", "type": "iterate"}])
        with pytest.raises(IterateCollectError) as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("it", "collection")

    def test_iterate_from_a_single_value(self) -> None:
        g = graph(
            [{"id": "i", "type": "integer"}, {"id": "it", "type": "iterate"}], [edge("i", "value", "it", "collection")]
        )
        with pytest.raises(IncompatibleTypesError):
            g.validate_self()

    def test_collect_with_inconsistent_item_types(self) -> None:
        g = graph(
            [{"id": "i", "type": "integer"}, {"id": "s", "type": "string"}, {"id": "c", "type": "collect"}],
            [edge("i", "value", "c", "item"), edge("s", "value", "c", "item")],
        )
        with pytest.raises(IterateCollectError, match="different types") as e:
            g.validate_self()
        assert (e.value.node_id, e.value.field) == ("c", "item")

    def test_collect_without_items(self) -> None:
        with pytest.raises(IterateCollectError, match="at least one edge"):
            graph([{"id": "c", "type": "collect"}]).validate_self()

    def test_collect_output_type_is_inferred(self) -> None:
        g = graph(
            [{"id": "s", "type": "string"}, {"id": "c", "type": "collect"}, {"id": "ic", "type": "integer_collection"}],
            [edge("s", "value", "c", "item"), edge("c", "collection", "ic", "collection")],
        )
        with pytest.raises(IncompatibleTypesError):
            g.validate_self()

    def test_iterate_item_type_is_inferred(self) -> None:
        g = graph(
            [{"id": "sc", "type": "string_collection"}, {"id": "it", "type": "iterate"}, {"id": "a", "type": "add"}],
            [edge("sc", "collection", "it", "collection"), edge("it", "item", "a", "a")],
        )
        with pytest.raises(IncompatibleTypesError):
            g.validate_self()

    def test_missing_required_inputs(self) -> None:
        with pytest.raises(MissingGraphInputError, match="'wired'") as e:
            graph([{"id": "n", "type": "test_needs_input", "either": 1}]).validate_self()
        assert (e.value.node_id, e.value.field) == ("n", "wired")
        g = graph(
            [{"id": "i", "type": "integer"}, {"id": "n", "type": "test_needs_input"}],
            [edge("i", "value", "n", "wired")],
        )
        with pytest.raises(MissingGraphInputError, match="'either'"):
            g.validate_self()

    def test_unknown_node_type_and_bad_field_value(self) -> None:
        with pytest.raises(ValidationError, match="Unknown node type 'nope'"):
            graph([{"id": "n", "type": "nope"}])
        with pytest.raises(ValidationError, match=r"nodes\.a\.a"):
            graph([{"id": "a", "type": "add", "a": "not a number"}])

    def test_session_refuses_an_invalid_graph(self) -> None:
        g = graph([{"id": "s", "type": "string"}, {"id": "a", "type": "add"}], [edge("s", "value", "a", "a")])
        with pytest.raises(IncompatibleTypesError):
            GraphExecutionState(graph=g)


class TestExecution:
    def test_chain(self) -> None:
        g = graph(
            [{"id": f"n{i}", "type": "add", "a": 0, "b": 1} for i in range(5)],
            [edge(f"n{i}", "value", f"n{i + 1}", "a") for i in range(4)],
        )
        session = run(GraphExecutionState(graph=g))
        assert ran_whole(session)
        assert values(session, "n4") == [5]
        assert session.executed_history == ["n0", "n1", "n2", "n3", "n4"]

    def test_iterate_then_collect(self) -> None:
        session = run(GraphExecutionState(graph=fan_out_graph(4)))
        assert values(session, "add") == [10, 11, 12, 13]
        assert values(session, "collect", "collection") == [[10, 11, 12, 13]]
        assert values(session, "after", "collection") == [[10, 11, 12, 13]]
        assert outputs(session, "iterate") == [{"item": i, "index": i, "total": 4} for i in range(4)]
        assert ran_whole(session)

    def test_empty_collection(self) -> None:
        session = run(GraphExecutionState(graph=fan_out_graph(0)))
        assert ran_whole(session)
        assert values(session, "add") == []
        assert values(session, "collect", "collection") == [[]]
        assert values(session, "after", "collection") == [[]]

    def test_two_iterates_into_one_node_give_collections_of_the_innermost(self) -> None:
        g = graph(
            [
                {"id": "r1", "type": "range", "stop": 3},
                {"id": "r2", "type": "range", "start": 10, "stop": 13},
                {"id": "i1", "type": "iterate"},
                {"id": "i2", "type": "iterate"},
                {"id": "add", "type": "add"},
                {"id": "collect", "type": "collect"},
            ],
            [
                edge("r1", "collection", "i1", "collection"),
                edge("r2", "collection", "i2", "collection"),
                edge("i1", "item", "add", "a"),
                edge("i2", "item", "add", "b"),
                edge("add", "value", "collect", "item"),
            ],
        )
        session = run(GraphExecutionState(graph=g))
        assert len(values(session, "add")) == 9
        assert values(session, "collect", "collection") == [[10, 11, 12], [11, 12, 13], [12, 13, 14]]

    def test_nested_iterates_multiply_and_collect_of_collect(self) -> None:
        session = run(GraphExecutionState(graph=nested_graph(3, 2)))
        assert values(session, "collect_inner", "collection") == [[0, 1], [10, 11], [20, 21]]
        assert values(session, "collect_outer", "collection") == [[[0, 1], [10, 11], [20, 21]]]
        assert len(session.source_prepared_mapping["add"]) == 6

    def test_nested_with_an_empty_inner_iteration(self) -> None:
        g = graph(
            [
                {"id": "counts", "type": "integer_collection", "collection": [2, 0, 1]},
                {"id": "outer", "type": "iterate"},
                {"id": "repeat", "type": "test_repeat", "value": 7},
                {"id": "inner", "type": "iterate"},
                {"id": "add", "type": "add"},
                {"id": "collect_inner", "type": "collect"},
                {"id": "collect_outer", "type": "collect"},
            ],
            [
                edge("counts", "collection", "outer", "collection"),
                edge("outer", "item", "repeat", "times"),
                edge("repeat", "collection", "inner", "collection"),
                edge("inner", "item", "add", "a"),
                edge("outer", "index", "add", "b"),
                edge("add", "value", "collect_inner", "item"),
                edge("collect_inner", "collection", "collect_outer", "item"),
            ],
        )
        session = run(GraphExecutionState(graph=g))
        assert ran_whole(session)
        assert values(session, "collect_inner", "collection") == [[7, 7], [], [9]]
        assert values(session, "collect_outer", "collection") == [[[7, 7], [], [9]]]

    def test_an_iterated_value_joins_an_outer_one(self) -> None:
        g = graph(
            [
                {"id": "base", "type": "integer", "value": 100},
                {"id": "r", "type": "range", "stop": 3},
                {"id": "it", "type": "iterate"},
                {"id": "add", "type": "add"},
                {"id": "collect", "type": "collect"},
            ],
            [
                edge("r", "collection", "it", "collection"),
                edge("it", "item", "add", "a"),
                edge("base", "value", "add", "b"),
                edge("add", "value", "collect", "item"),
            ],
        )
        assert values(run(GraphExecutionState(graph=g)), "collect", "collection") == [[100, 101, 102]]

    def test_json_round_trip_mid_execution(self) -> None:
        expected = run(GraphExecutionState(graph=nested_graph(3, 3)))
        for stop_after in (1, 3, 7, 12):
            session = run(GraphExecutionState(graph=nested_graph(3, 3)), limit=stop_after)
            restored = GraphExecutionState.model_validate_json(session.model_dump_json())
            run(restored)
            assert ran_whole(restored)
            assert values(restored, "collect_outer", "collection") == values(expected, "collect_outer", "collection")
            assert len(restored.execution_graph.nodes) == len(expected.execution_graph.nodes)

    def test_session_json_uses_invokeai_field_names(self) -> None:
        data = run(GraphExecutionState(graph=fan_out_graph(2))).model_dump(mode="json")
        for name in (
            "id",
            "graph",
            "execution_graph",
            "executed",
            "executed_history",
            "results",
            "errors",
            "prepared_source_mapping",
            "source_prepared_mapping",
        ):
            assert name in data
        assert data["graph"]["nodes"]["add"]["type"] == "add"
        assert any(r["type"] == "collect_output" for r in data["results"].values())

    def test_node_error_ends_the_session(self) -> None:
        session = GraphExecutionState(graph=fan_out_graph(2))
        node = session.next()
        assert node is not None
        session.set_node_error(node.id, "it broke")
        assert session.errors == {node.id: "it broke"}

    def test_a_wrong_value_at_run_time_is_a_node_input_error(self) -> None:
        g = graph(
            [{"id": "x", "type": "test_any", "value": "text"}, {"id": "a", "type": "add"}],
            [edge("x", "value", "a", "a")],
        )
        session = run(GraphExecutionState(graph=g), limit=1)
        with pytest.raises(NodeInputError, match="'a'") as e:
            session.next()
        assert (e.value.node_id, e.value.field) == ("a", "a")
        assert session.prepared_source_mapping[e.value.prepared_id] == "a"

    def test_inputs_are_copied_not_shared(self) -> None:
        g = graph(
            [{"id": "r", "type": "range", "stop": 3}, {"id": "c1", "type": "integer_collection"}],
            [edge("r", "collection", "c1", "collection")],
        )
        session = GraphExecutionState(graph=g)
        producer = session.next()
        assert producer is not None
        output = producer.invoke_internal(
            InvocationContext(data=InvocationContextData(invocation=producer, source_invocation_id="r", session_id="s"))
        )
        session.complete(producer.id, output)
        consumer = session.next()
        assert consumer is not None
        assert isinstance(consumer, IntegerCollectionInvocation) and isinstance(output, IntegerCollectionOutput)
        consumer.collection.append(99)
        assert output.collection == [0, 1, 2]

    def test_complete_of_an_unknown_node(self) -> None:
        session = GraphExecutionState(graph=fan_out_graph(1))
        with pytest.raises(NodeNotFoundError):
            session.complete("nope", BaseInvocationOutput.model_construct())
