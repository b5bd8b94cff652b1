"""Edges and the errors of graphs and sessions, shared by the graph, its validation and its scheduler."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from nodeloom.errors import NodeloomError

_ids = random.Random()
"""Private, so that a node or library calling `random.seed()` cannot make ids repeat; seeded from the OS."""
os.register_at_fork(after_in_child=_ids.seed)  # a forked child must not repeat its parent's ids


def uuid_string() -> str:
    """A random version-4 UUID string, made without a system call: prepared node ids are made by the thousand."""
    x = f"{_ids.getrandbits(128):032x}"
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:]}"


class GraphError(NodeloomError):
    """The graph is not valid."""

    def __init__(self, message: str | None = None, node_id: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.field = field


class DuplicateNodeIdError(GraphError):
    """Two nodes share an id."""


class NodeNotFoundError(GraphError):
    """A node the graph refers to does not exist."""


class NodeFieldNotFoundError(GraphError):
    """A node has no such input or output field."""


class InvalidEdgeError(GraphError):
    """An edge cannot connect these fields."""


class IncompatibleTypesError(InvalidEdgeError):
    """An edge connects an output to an input of another type."""


class DuplicateInputEdgeError(InvalidEdgeError):
    """Two edges lead into one input that is not a collect's item."""


class CyclicalGraphError(GraphError):
    """The graph has a cycle."""


class IterateCollectError(GraphError):
    """An iterate or collect node is wired wrongly."""


class MissingGraphInputError(GraphError):
    """A required input has neither a value nor an edge."""


class NodeInputError(GraphError):
    """An upstream output did not fit a node's input when the node was about to run."""

    def __init__(self, message: str, node_id: str, field: str, prepared_id: str) -> None:
        super().__init__(message, node_id=node_id, field=field)
        self.prepared_id = prepared_id  # the prepared copy whose input it was; `node_id` is its source node


# Plain dataclasses rather than pydantic models: the engine makes one per prepared edge, and pydantic still
# validates and serialises them wherever they sit inside a model.
@dataclass(slots=True)
class EdgeConnection:
    node_id: str
    field: str


@dataclass(slots=True)
class Edge:
    source: EdgeConnection
    destination: EdgeConnection
