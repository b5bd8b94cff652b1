"""A batch expanded into the JSON of its sessions' graphs, for `SqlSessionQueue` to store without building them."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

from pydantic import BaseModel, ValidationError

from nodeloom.app.invocations.baseinvocation import BaseInvocation
from nodeloom.app.services.session_queue.session_queue_common import (
    Batch,
    BatchDatum,
    BatchLimits,
    BatchValidationError,
)
from nodeloom.app.services.shared.graph_common import uuid_string

# Stands in for each batch value in the graph's JSON, which is then cut at the stand-ins; random per process, so
# no graph holds it by chance, and fixed within one, so the pattern is compiled once.
_MARKER = f"nodeloom-value-{uuid_string()}-"
_MARKER_PATTERN = re.compile(f'"{re.escape(_MARKER)}(\\d+)"')

_Value = tuple[str, str]
"""One batch value as JSON: as its node's field holds it, and as the item's `NodeFieldValue`."""


class BatchSessions:
    """The graphs of the batch's sessions as JSON text: the graph's JSON with each session's values put in place.

    Building a `GraphExecutionState` per session would cost more than enqueueing 10,000 sessions may take.
    The batch is checked against `limits` first (None: no limits); then each distinct value is validated once,
    against its node and the limits, when the batch is read; a value that does not fit raises
    `BatchValidationError`, one over a limit `LimitExceededError`.
    """

    def __init__(self, batch: Batch, limits: BatchLimits | None = None) -> None:
        if limits is not None:
            limits.check(batch)
        self._runs = batch.runs
        groups = batch.data or []
        data = [datum for group in groups for datum in group]
        graph = batch.graph.model_dump(mode="json")
        for index, datum in enumerate(data):
            graph["nodes"][datum.node_path][datum.field_name] = f"{_MARKER}{index}"
        pieces = _MARKER_PATTERN.split(json.dumps(graph, separators=(",", ":")))
        # The graph's JSON cut where the values go, and which datum's value goes in each cut.
        self._pieces = pieces[0::2]
        self._order = [int(index) for index in pieces[1::2]]
        self._has_data = bool(data)
        # For each zipped group, for each item index: the values of the group's data at that index.
        self._groups: list[list[tuple[_Value, ...]]] = []
        for group in groups:
            columns = [_values(batch.graph.nodes[datum.node_path], datum, limits) for datum in group]
            self._groups.append(list(zip(*columns, strict=True)))

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        """(graph JSON, field values JSON) of each session: runs outermost, then the first group."""
        pieces, order = self._pieces, self._order
        for _ in range(self._runs):
            for combination in itertools.product(*self._groups):
                values = [value for group_values in combination for value in group_values]
                parts = [pieces[0]]
                for index, piece in zip(order, pieces[1:], strict=True):
                    parts += (values[index][0], piece)
                field_values = "[" + ",".join(value[1] for value in values) + "]" if self._has_data else None
                yield "".join(parts), field_values


def _values(node: BaseInvocation, datum: BatchDatum, limits: BatchLimits | None) -> list[_Value]:
    fields = node.model_dump()
    name = datum.field_name
    field_value = json.dumps({"node_path": datum.node_path, "field_name": name})[:-1] + ', "value": '
    # Keyed by the JSON: 1, 1.0 and True are equal as dict keys but not as field values.
    seen: dict[str, _Value] = {}
    values: list[_Value] = []
    for item in datum.items:
        key = item.model_dump_json() if isinstance(item, BaseModel) else json.dumps(item)
        if key not in seen:
            try:
                valid = type(node).model_validate({**fields, name: item})
            except ValidationError as error:
                problems = "; ".join(e["msg"] for e in error.errors())
                raise BatchValidationError(
                    f"Batch value {item!r} does not fit field '{name}' of node '{node.id}' "
                    f"({node.invocation_type}): {problems}"
                ) from error
            if limits is not None:
                valid.check_limits(limits)
            in_graph = json.dumps(valid.model_dump(mode="json", include={name})[name])
            seen[key] = (in_graph, f"{field_value}{key}}}")
        values.append(seen[key])
    return values
