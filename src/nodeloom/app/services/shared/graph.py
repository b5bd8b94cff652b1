"""Graphs of invocations, their validation, and `GraphExecutionState`: one session being executed."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Collection, Iterable
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationInfo, field_validator

from nodeloom.app.invocations.baseinvocation import (
    AnyInvocation,
    AnyInvocationOutput,
    BaseInvocation,
    BaseInvocationOutput,
)
from nodeloom.app.invocations.baseinvocation import describe_node as _describe
from nodeloom.app.invocations.fields import Input
from nodeloom.app.invocations.special import (
    COLLECTION_FIELD,
    ITEM_FIELD,
    CollectInvocation,
    IterateInvocation,
)
from nodeloom.app.services.shared.graph_common import (
    CyclicalGraphError,
    DuplicateInputEdgeError,
    DuplicateNodeIdError,
    Edge,
    EdgeConnection,
    GraphError,
    IncompatibleTypesError,
    InvalidEdgeError,
    IterateCollectError,
    MissingGraphInputError,
    NodeFieldNotFoundError,
    NodeInputError,
    NodeNotFoundError,
    uuid_string,
)
from nodeloom.app.services.shared.graph_scheduler import GraphScheduler
from nodeloom.app.services.shared.type_compat import are_types_compatible, list_item_type

__all__ = [
    "STORED_SESSION",
    "CyclicalGraphError",
    "DuplicateInputEdgeError",
    "DuplicateNodeIdError",
    "Edge",
    "EdgeConnection",
    "Graph",
    "GraphError",
    "GraphExecutionState",
    "IncompatibleTypesError",
    "InvalidEdgeError",
    "IterateCollectError",
    "MissingGraphInputError",
    "NodeFieldNotFoundError",
    "NodeInputError",
    "NodeNotFoundError",
]


class _EdgeIndex:
    """Edges by the node they enter and leave, so no lookup scans the whole edge list."""

    def __init__(self, edges: Iterable[Edge]) -> None:
        self.inputs: defaultdict[str, list[Edge]] = defaultdict(list)
        self.outputs: defaultdict[str, list[Edge]] = defaultdict(list)
        for edge in edges:
            self.add(edge)

    def add(self, edge: Edge) -> None:
        self.inputs[edge.destination.node_id].append(edge)
        self.outputs[edge.source.node_id].append(edge)


class Graph(BaseModel):
    """Nodes by id and the edges between their fields, in the JSON shape InvokeAI uses."""

    id: str = Field(default_factory=uuid_string, description="The id of this graph")
    nodes: dict[str, AnyInvocation] = Field(default_factory=dict, description="The nodes in this graph")
    edges: list[Edge] = Field(default_factory=list, description="The connections between nodes and their fields")

    _index: _EdgeIndex | None = PrivateAttr(default=None)

    def _edges(self) -> _EdgeIndex:
        # Built lazily and kept up to date by the mutators below; change a graph through them. Read from
        # pydantic's private store directly, as `_private` attribute access is slow (see `_schedule`).
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        index: _EdgeIndex | None = private["_index"]
        if index is None:
            index = private["_index"] = _EdgeIndex(self.edges)
        return index

    def get_node(self, node_id: str) -> BaseInvocation:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise NodeNotFoundError(f"Node '{node_id}' is not in the graph", node_id=node_id) from None

    def add_node(self, node: BaseInvocation) -> None:
        if node.id in self.nodes:
            raise DuplicateNodeIdError(f"Node id '{node.id}' is already in the graph", node_id=node.id)
        self.nodes[node.id] = node

    def add_edge(self, edge: Edge) -> None:
        """Adds an edge after checking it against the graph as it is, cycles included."""
        self._check_edge(edge, _TypeResolver(self))
        if self._reaches(edge.destination.node_id, edge.source.node_id):
            raise CyclicalGraphError(
                f"Edge from '{edge.source.node_id}' to '{edge.destination.node_id}' would create a cycle",
                node_id=edge.destination.node_id,
                field=edge.destination.field,
            )
        self.edges.append(edge)
        self._edges().add(edge)

    def input_edges(self, node_id: str, field: str | None = None) -> list[Edge]:
        edges = self._edges().inputs.get(node_id, [])
        return edges if field is None else [e for e in edges if e.destination.field == field]

    def output_edges(self, node_id: str) -> list[Edge]:
        return self._edges().outputs.get(node_id, [])

    def _reaches(self, start: str, goal: str) -> bool:
        seen = {start}
        stack = [start]
        while stack:
            node_id = stack.pop()
            if node_id == goal:
                return True
            for edge in self.output_edges(node_id):
                if edge.destination.node_id not in seen:
                    seen.add(edge.destination.node_id)
                    stack.append(edge.destination.node_id)
        return False

    def topological_order(self) -> list[str]:
        """Node ids, every node after all of its parents; raises `CyclicalGraphError` on a cycle."""
        index = self._edges()
        indegree = {node_id: len(index.inputs.get(node_id, ())) for node_id in self.nodes}
        ready = deque(node_id for node_id, n in indegree.items() if n == 0)
        order: list[str] = []
        while ready:
            node_id = ready.popleft()
            order.append(node_id)
            for edge in index.outputs.get(node_id, ()):
                indegree[edge.destination.node_id] -= 1
                if indegree[edge.destination.node_id] == 0:
                    ready.append(edge.destination.node_id)
        if len(order) < len(self.nodes):
            stuck = next(node_id for node_id, n in indegree.items() if n > 0)
            raise CyclicalGraphError(f"The graph has a cycle through node '{stuck}'", node_id=stuck)
        return order

    def validate_self(self, filled: Collection[tuple[str, str]] = ()) -> None:
        """Raises the first `GraphError` found, naming the node and field it concerns.

        `filled` names the (node id, field) inputs that are set later, as batch data sets them for each session.
        """
        self._index = None
        for node_id, node in self.nodes.items():
            if node_id != node.id:
                raise GraphError(f"Node '{node.id}' is stored under the id '{node_id}'", node_id=node_id)
        resolver = _TypeResolver(self)
        seen_inputs: set[tuple[str, str]] = set()
        for edge in self.edges:
            self._check_edge(edge, resolver, seen_inputs)
        self.topological_order()
        for node in self.nodes.values():
            self._check_node(node, resolver, filled)

    def _check_edge(self, edge: Edge, resolver: _TypeResolver, seen: set[tuple[str, str]] | None = None) -> None:
        source, destination = edge.source, edge.destination
        source_node = self.get_node(source.node_id)
        destination_node = self.get_node(destination.node_id)
        if source.node_id == destination.node_id:
            raise CyclicalGraphError(
                f"Node {_describe(source_node)} is connected to itself",
                node_id=source.node_id,
                field=source.field,
            )
        output_fields = source_node.output_class().output_fields()
        if source.field not in output_fields:
            raise NodeFieldNotFoundError(
                f"Node {_describe(source_node)} has no output '{source.field}' "
                f"(it has: {', '.join(output_fields) or 'none'})",
                node_id=source.node_id,
                field=source.field,
            )
        inputs = destination_node.inputs()
        info = inputs.get(destination.field)
        if info is None:
            raise NodeFieldNotFoundError(
                f"Node {_describe(destination_node)} has no input '{destination.field}' "
                f"(it has: {', '.join(inputs) or 'none'})",
                node_id=destination.node_id,
                field=destination.field,
            )
        if info.not_supported is not None:
            raise InvalidEdgeError(
                f"Input '{destination.field}' of node {_describe(destination_node)} ({info.not_supported}) is not "
                "supported yet; remove the edge into it",
                node_id=destination.node_id,
                field=destination.field,
            )
        if info.input is Input.Direct:
            raise InvalidEdgeError(
                f"Input '{destination.field}' of node {_describe(destination_node)} takes a value, not a connection",
                node_id=destination.node_id,
                field=destination.field,
            )
        is_collect_item = isinstance(destination_node, CollectInvocation) and destination.field == ITEM_FIELD
        if not is_collect_item:
            key = (destination.node_id, destination.field)
            taken = key in seen if seen is not None else bool(self.input_edges(*key))
            if taken:
                raise DuplicateInputEdgeError(
                    f"Input '{destination.field}' of node {_describe(destination_node)} has more than one edge",
                    node_id=destination.node_id,
                    field=destination.field,
                )
            if seen is not None:
                seen.add(key)
        source_type = resolver.output_type(source.node_id, source.field)
        if is_collect_item:
            return
        if isinstance(destination_node, IterateInvocation):
            compatible = list_item_type(source_type) is not None
        else:
            compatible = are_types_compatible(source_type, info.annotation)
        if not compatible:
            raise IncompatibleTypesError(
                f"Output '{source.field}' of node {_describe(source_node)} ({_type_name(source_type)}) cannot "
                f"feed input '{destination.field}' of node {_describe(destination_node)} "
                f"({_type_name(info.annotation)})",
                node_id=destination.node_id,
                field=destination.field,
            )

    def _check_node(self, node: BaseInvocation, resolver: _TypeResolver, filled: Collection[tuple[str, str]]) -> None:
        connected = {edge.destination.field for edge in self.input_edges(node.id)}
        if isinstance(node, IterateInvocation) and COLLECTION_FIELD not in connected:
            raise IterateCollectError(
                f"Iterate node '{node.id}' needs an edge into its 'collection' input",
                node_id=node.id,
                field=COLLECTION_FIELD,
            )
        if isinstance(node, CollectInvocation):
            resolver.collect_item_type(node.id)
            return
        for info in node.inputs().values():
            given = info.name in connected or (node.id, info.name) in filled or getattr(node, info.name) is not None
            if info.required and not given:
                how = "an edge" if info.input is Input.Connection else "a value or an edge"
                raise MissingGraphInputError(
                    f"Input '{info.name}' of node {_describe(node)} is required and has neither {how}",
                    node_id=node.id,
                    field=info.name,
                )


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


class _TypeResolver:
    """Output types, with the item type of iterate and collect nodes inferred from what they are fed."""

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._memo: dict[tuple[str, str], Any] = {}

    def output_type(self, node_id: str, field: str) -> Any:
        key = (node_id, field)
        if key not in self._memo:
            self._memo[key] = self._resolve(node_id, field)
        return self._memo[key]

    def _resolve(self, node_id: str, field: str) -> Any:
        node = self._graph.get_node(node_id)
        if isinstance(node, IterateInvocation) and field == ITEM_FIELD:
            edges = self._graph.input_edges(node_id, COLLECTION_FIELD)
            if not edges:
                return Any
            item = list_item_type(self.output_type(edges[0].source.node_id, edges[0].source.field))
            return Any if item is None else item
        if isinstance(node, CollectInvocation) and field == COLLECTION_FIELD:
            return list[self.collect_item_type(node_id)]  # type: ignore[misc]
        return node.output_class().output_fields()[field]

    def collect_item_type(self, node_id: str) -> Any:
        """The type of a collect node's items; every item edge must agree on it."""
        edges = self._graph.input_edges(node_id, ITEM_FIELD)
        if not edges:
            raise IterateCollectError(
                f"Collect node '{node_id}' needs at least one edge into its 'item' input",
                node_id=node_id,
                field=ITEM_FIELD,
            )
        types_ = [self.output_type(e.source.node_id, e.source.field) for e in edges]
        first = types_[0]
        for edge, other in zip(edges[1:], types_[1:], strict=True):
            if not (are_types_compatible(other, first) and are_types_compatible(first, other)):
                raise IterateCollectError(
                    f"Collect node '{node_id}' gets items of different types: {_type_name(first)} and "
                    f"{_type_name(other)} (from '{edge.source.node_id}.{edge.source.field}')",
                    node_id=node_id,
                    field=ITEM_FIELD,
                )
        return first


STORED_SESSION: dict[str, bool] = {"graph_validated": True}
"""The validation context for loading a session whose graph was validated before it was stored."""


class GraphExecutionState(BaseModel):
    """A session: the source graph, the prepared (execution) graph, and what has run so far.

    The JSON uses InvokeAI's field names, plus `iteration_paths`. `GraphScheduler` does the work; it is
    rebuilt from these fields whenever a session is loaded, so a saved session continues where it stopped.
    """

    id: str = Field(default_factory=uuid_string, description="The id of the execution state")
    graph: Graph = Field(description="The graph being executed")
    execution_graph: Graph = Field(default_factory=Graph, description="The expanded graph of prepared nodes")
    executed: set[str] = Field(default_factory=set, description="The ids of executed prepared and source nodes")
    executed_history: list[str] = Field(
        default_factory=list, description="The source node ids, in the order they finished executing"
    )
    results: dict[str, AnyInvocationOutput] = Field(
        default_factory=dict, description="The outputs of executed prepared nodes"
    )
    errors: dict[str, str] = Field(default_factory=dict, description="Errors raised by prepared nodes")
    prepared_source_mapping: dict[str, str] = Field(
        default_factory=dict, description="The source node id of each prepared node"
    )
    source_prepared_mapping: dict[str, set[str]] = Field(
        default_factory=dict, description="The prepared node ids of each prepared source node"
    )
    iteration_paths: dict[str, list[int]] = Field(
        default_factory=dict, description="The iteration indexes of each prepared node, outermost first"
    )

    _scheduler: GraphScheduler | None = PrivateAttr(default=None)
    _max_nodes: int | None = PrivateAttr(default=None)

    @field_validator("graph")
    @classmethod
    def _graph_is_valid(cls, graph: Graph, info: ValidationInfo) -> Graph:
        if not (info.context or {}).get("graph_validated"):
            graph.validate_self()
        return graph

    def _schedule(self) -> GraphScheduler:
        # Made on first use, not on load: a session read only to be listed or shown never pays for it. Read
        # from pydantic's private store directly: `self._scheduler` goes through a __getattr__ that costs more
        # than the rest of a step.
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        scheduler: GraphScheduler | None = private["_scheduler"]
        if scheduler is None:
            scheduler = private["_scheduler"] = GraphScheduler(self, private["_max_nodes"])
        return scheduler

    def limit_nodes(self, max_nodes: int) -> None:
        """Bounds the nodes the session may prepare, iterations included: two iterates of 10,000 items each would
        otherwise prepare 10^8 copies of what follows them. Preparing more raises `LimitExceededError`."""
        self._max_nodes = max_nodes

    def next(self) -> BaseInvocation | None:
        """The next ready prepared node with its inputs filled, or None when nothing is ready.

        Raises `NodeInputError` when an upstream output does not fit the node's input.
        """
        return self._schedule().next()

    def complete(self, prepared_id: str, output: BaseInvocationOutput) -> None:
        """Stores a prepared node's output and makes ready whatever was waiting only for it."""
        if prepared_id not in self.prepared_source_mapping:
            raise NodeNotFoundError(f"Prepared node '{prepared_id}' is not in this session", node_id=prepared_id)
        self._schedule().complete(prepared_id, output)

    def set_node_error(self, prepared_id: str, error: str) -> None:
        """Records that a prepared node failed, with its error."""
        self.errors[prepared_id] = error
