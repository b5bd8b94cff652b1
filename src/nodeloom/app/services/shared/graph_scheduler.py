"""The scheduler behind `GraphExecutionState`: which prepared node runs next, and preparing the rest.

Nodes are prepared (copied into the execution graph, once per iteration they sit in) as soon as their
parents are, and tracked in explicit states: a source node is blocked until its parents are prepared (an
iterate node until its collection is executed), then prepared; a prepared node waits for its inputs, is
ready, then executed. Each step touches only the nodes next to the one it handles, so a whole session costs
time linear in the number of prepared nodes.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from nodeloom.app.invocations.limits import check_limit
from nodeloom.app.invocations.special import (
    COLLECTION_FIELD,
    ITEM_FIELD,
    CollectInvocation,
    IterateInvocation,
    iterate_output,
)
from nodeloom.app.services.shared.graph_common import Edge, EdgeConnection, NodeInputError, uuid_string

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation
    from nodeloom.app.services.shared.graph import Graph, GraphExecutionState

IterationKey = tuple[int, ...]
NodeT = TypeVar("NodeT", bound="BaseInvocation")
# An input of a copy about to be made: (source prepared id, source field, destination field).
PendingInput = tuple[str, str, str]


class _Plan:
    """What the source graph says about every node, computed once per session in linear time.

    `dims[n]` are the iterate nodes whose items a copy of `n` is made for, outermost first: a copy is
    identified by its key, one index per dim. A node inherits the dims of its parents; an iterate node adds
    itself; a collect node drops the innermost dim, gathering one copy per combination of the others.
    """

    def __init__(self, graph: Graph) -> None:
        self.order = graph.topological_order()
        position = {node_id: i for i, node_id in enumerate(self.order)}
        self.nodes = graph.nodes
        self.input_edges: dict[str, list[Edge]] = {n: graph.input_edges(n) for n in self.order}
        self.parents: dict[str, list[str]] = {
            n: list(dict.fromkeys(e.source.node_id for e in self.input_edges[n])) for n in self.order
        }
        self.children: dict[str, list[str]] = {n: [] for n in self.order}
        self.iterates = {n for n in self.order if isinstance(graph.nodes[n], IterateInvocation)}
        self.dims: dict[str, tuple[str, ...]] = {}
        for node_id in self.order:
            for parent in self.parents[node_id]:
                self.children[parent].append(node_id)
            inherited = sorted({d for p in self.parents[node_id] for d in self.dims[p]}, key=position.__getitem__)
            if node_id in self.iterates:
                inherited.append(node_id)
            elif isinstance(graph.nodes[node_id], CollectInvocation) and inherited:
                inherited.pop()
            self.dims[node_id] = tuple(inherited)


def _join(
    target: tuple[str, ...], relations: Iterable[tuple[tuple[str, ...], Iterable[IterationKey]]]
) -> list[IterationKey]:
    """Every key over `target` that agrees with one key of each relation on the dims they share."""
    partial: list[list[int]] = [[-1] * len(target)]
    bound: set[int] = set()
    for dims, keys in relations:
        positions = [target.index(d) for d in dims]
        shared = [i for i, p in enumerate(positions) if p in bound]
        groups: defaultdict[IterationKey, list[IterationKey]] = defaultdict(list)
        for key in keys:
            groups[tuple(key[i] for i in shared)].append(key)
        joined: list[list[int]] = []
        for row in partial:
            for key in groups.get(tuple(row[positions[i]] for i in shared), ()):
                extended = row.copy()
                for i, p in enumerate(positions):
                    extended[p] = key[i]
                joined.append(extended)
        partial = joined
        bound.update(positions)
    return [tuple(row) for row in partial]


def _copy_with(node: NodeT, **updates: Any) -> NodeT:
    """A shallow copy of the node with some fields replaced, unvalidated, like `model_copy(update=...)`.

    Made by hand because pydantic's `model_copy` costs a third of a node's whole preparation; the attributes
    set are the ones pydantic documents for a model instance.
    """
    copy = object.__new__(type(node))
    object.__setattr__(copy, "__dict__", {**node.__dict__, **updates})
    object.__setattr__(copy, "__pydantic_fields_set__", node.__pydantic_fields_set__ | updates.keys())
    # A node type that allows extra fields (core_metadata) keeps them, as its own fields are kept.
    extra = node.__pydantic_extra__
    object.__setattr__(copy, "__pydantic_extra__", None if extra is None else dict(extra))
    object.__setattr__(copy, "__pydantic_private__", None)
    return copy


def _project(key: IterationKey, source: tuple[str, ...], target: tuple[str, ...]) -> IterationKey:
    if source == target:
        return key
    return tuple(key[source.index(d)] for d in target)


class GraphScheduler:
    """Runs the state machine over a session's fields, which it changes in place.

    Its own indexes are derived from those fields when it is built, so a session saved at any point and
    loaded again gets a scheduler that continues where the first one stopped.
    """

    def __init__(self, state: GraphExecutionState, max_nodes: int | None = None) -> None:
        plan = self._plan = _Plan(state.graph)
        self._max_nodes = max_nodes
        self._nodes = state.execution_graph.nodes
        self._edges = state.execution_graph.edges
        self._executed = state.executed
        self._history = state.executed_history
        self._results = state.results
        self._prepared_source = state.prepared_source_mapping
        self._source_prepared = state.source_prepared_mapping
        self._paths = state.iteration_paths

        self._copies: dict[str, dict[IterationKey, str]] = {node_id: {} for node_id in plan.order}
        for prepared_id, source_id in self._prepared_source.items():
            self._copies[source_id][tuple(self._paths[prepared_id])] = prepared_id
        self._inputs: defaultdict[str, list[Edge]] = defaultdict(list)
        self._dependents: defaultdict[str, list[str]] = defaultdict(list)
        self._waiting: defaultdict[str, int] = defaultdict(int)
        for edge in self._edges:
            self._inputs[edge.destination.node_id].append(edge)
            if edge.source.node_id not in self._executed:
                self._dependents[edge.source.node_id].append(edge.destination.node_id)
                self._waiting[edge.destination.node_id] += 1
        self._ready = deque(p for p in self._nodes if p not in self._executed and self._waiting[p] == 0)
        self._unexecuted = {
            source_id: sum(p not in self._executed for p in prepared)
            for source_id, prepared in self._source_prepared.items()
        }
        self._blockers: dict[str, int] = {}
        # Prepared first in, first out, so that nodes become ready in topological order.
        self._to_prepare: deque[str] = deque()
        for node_id in plan.order:
            if node_id not in self._source_prepared:
                self._blockers[node_id] = sum(not self._parent_done(p, node_id) for p in plan.parents[node_id])
                if self._blockers[node_id] == 0:
                    self._to_prepare.append(node_id)
        self._prepare_pending()

    def _parent_done(self, parent: str, child: str) -> bool:
        """An iterate node waits for its collection to be executed; any other node for its parents' copies."""
        if child in self._plan.iterates:
            return parent in self._executed
        return parent in self._source_prepared

    def next(self) -> BaseInvocation | None:
        while self._ready:
            prepared_id = self._ready.popleft()
            if prepared_id in self._executed:
                continue  # an iterate copy, completed when it was prepared
            node = self._fill_inputs(self._nodes[prepared_id])
            self._nodes[prepared_id] = node
            return node
        return None

    def complete(self, prepared_id: str, output: BaseModel) -> None:
        self._complete(prepared_id, output)
        self._prepare_pending()

    def _complete(self, prepared_id: str, output: BaseModel) -> None:
        if prepared_id in self._executed:
            return
        self._results[prepared_id] = output  # type: ignore[assignment]
        self._executed.add(prepared_id)
        waiting = self._waiting
        for dependent in self._dependents.pop(prepared_id, ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                self._ready.append(dependent)
        source_id = self._prepared_source[prepared_id]
        self._unexecuted[source_id] -= 1
        if self._unexecuted[source_id] == 0:
            self._source_executed(source_id)

    def _source_executed(self, source_id: str) -> None:
        self._executed.add(source_id)
        self._history.append(source_id)
        for child in self._plan.children[source_id]:
            if child in self._plan.iterates:
                self._unblock(child)

    def _unblock(self, node_id: str) -> None:
        self._blockers[node_id] -= 1
        if self._blockers[node_id] == 0:
            self._to_prepare.append(node_id)

    def _prepare_pending(self) -> None:
        while self._to_prepare:
            self._prepare(self._to_prepare.popleft())

    def _prepare(self, source_id: str) -> None:
        plan = self._plan
        node = plan.nodes[source_id]
        self._source_prepared[source_id] = set()
        del self._blockers[source_id]
        finished: list[tuple[str, BaseModel]] = []
        if isinstance(node, IterateInvocation):
            finished = self._prepare_iterate(node)
        elif isinstance(node, CollectInvocation):
            self._prepare_collect(node)
        else:
            self._prepare_node(node)
        prepared = self._source_prepared[source_id]
        self._unexecuted[source_id] = len(prepared)
        for child in plan.children[source_id]:
            if child not in plan.iterates:
                self._unblock(child)
        if not prepared:
            self._source_executed(source_id)
        for prepared_id, output in finished:
            self._complete(prepared_id, output)

    def _prepare_node(self, node: BaseInvocation) -> None:
        plan = self._plan
        dims = plan.dims[node.id]
        edges = plan.input_edges[node.id]
        parents = plan.parents[node.id]
        if not dims:
            inputs = [(self._copies[e.source.node_id][()], e.source.field, e.destination.field) for e in edges]
            self._add_copy(node, (), inputs)
            return
        for key in _join(dims, [(plan.dims[p], self._copies[p].keys()) for p in parents]):
            inputs = [
                (
                    self._copies[e.source.node_id][_project(key, dims, plan.dims[e.source.node_id])],
                    e.source.field,
                    e.destination.field,
                )
                for e in edges
            ]
            self._add_copy(node, key, inputs)

    def _prepare_iterate(self, node: IterateInvocation) -> list[tuple[str, BaseModel]]:
        """Adds one copy per item and returns their outputs.

        The engine completes iterate copies itself: each one's output is known once the collection is, and
        running them as nodes would copy the whole collection into every copy.
        """
        (edge,) = self._plan.input_edges[node.id]
        finished: list[tuple[str, BaseModel]] = []
        for key, parent_id in list(self._copies[edge.source.node_id].items()):
            collection = getattr(self._results[parent_id], edge.source.field)
            for index in range(len(collection)):
                inputs = [(parent_id, edge.source.field, COLLECTION_FIELD)]
                prepared_id = self._add_copy(node, (*key, index), inputs, index=index)
                finished.append((prepared_id, iterate_output(collection, index)))
        return finished

    def _prepare_collect(self, node: CollectInvocation) -> None:
        plan = self._plan
        dims = plan.dims[node.id]
        edges = plan.input_edges[node.id]
        shared_dims = [tuple(d for d in dims if d in plan.dims[e.source.node_id]) for e in edges]
        # Each edge's item copies grouped by the outer iteration they belong to.
        groups: defaultdict[tuple[int, IterationKey], list[tuple[IterationKey, int, str, str]]] = defaultdict(list)
        for order, edge in enumerate(edges):
            parent_dims = plan.dims[edge.source.node_id]
            for key, parent_id in self._copies[edge.source.node_id].items():
                groups[order, _project(key, parent_dims, shared_dims[order])].append(
                    (key, order, parent_id, edge.source.field)
                )
        outer_keys = _join(dims, [(plan.dims[d], self._copies[d].keys()) for d in dims]) if dims else [()]
        for key in outer_keys:
            members = [
                member
                for order in range(len(edges))
                for member in groups.get((order, _project(key, dims, shared_dims[order])), ())
            ]
            members.sort(key=lambda m: (m[0], m[1]))
            self._add_copy(node, key, [(parent_id, field, ITEM_FIELD) for _, _, parent_id, field in members])

    def _add_copy(self, node: BaseInvocation, key: IterationKey, inputs: list[PendingInput], **updates: Any) -> str:
        """Adds a prepared copy of `node` for the iteration `key`, wired to its inputs."""
        if self._max_nodes is not None:
            check_limit(
                "The number of nodes the session prepares", len(self._nodes) + 1, self._max_nodes, "max_session_nodes"
            )
        prepared_id = uuid_string()
        source_id = node.id
        self._nodes[prepared_id] = _copy_with(node, id=prepared_id, **updates)
        self._prepared_source[prepared_id] = source_id
        self._source_prepared[source_id].add(prepared_id)
        self._paths[prepared_id] = list(key)
        self._copies[source_id][key] = prepared_id
        waiting = 0
        own_inputs = self._inputs[prepared_id]
        for parent_id, source_field, destination_field in inputs:
            edge = Edge(EdgeConnection(parent_id, source_field), EdgeConnection(prepared_id, destination_field))
            self._edges.append(edge)
            own_inputs.append(edge)
            if parent_id not in self._executed:
                self._dependents[parent_id].append(prepared_id)
                waiting += 1
        self._waiting[prepared_id] = waiting
        if waiting == 0:
            self._ready.append(prepared_id)
        return prepared_id

    def _fill_inputs(self, node: BaseInvocation) -> BaseInvocation:
        edges = self._inputs.get(node.id)
        if not edges:
            return node
        if isinstance(node, CollectInvocation):
            items = [getattr(self._results[e.source.node_id], e.source.field) for e in edges]
            return _copy_with(node, **{COLLECTION_FIELD: items})
        values = {e.destination.field: getattr(self._results[e.source.node_id], e.source.field) for e in edges}
        try:
            # Validated again so an int feeds a float input as a float and lists are copied, not shared.
            return type(node).model_validate({**node.__dict__, **(node.__pydantic_extra__ or {}), **values})
        except ValidationError as e:
            error = e.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            source_id = self._prepared_source[node.id]
            raise NodeInputError(
                f"Input '{field}' of node '{source_id}' ({node.invocation_type}) got an invalid value: {error['msg']}",
                node_id=source_id,
                field=field,
                prepared_id=node.id,
            ) from e
