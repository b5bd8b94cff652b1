"""The rules for which output types may feed which input types along an edge."""

from __future__ import annotations

import types
import typing
from typing import Any


def _strip(t: Any) -> Any:
    """Drops `Annotated` metadata."""
    while typing.get_origin(t) is typing.Annotated:
        t = typing.get_args(t)[0]
    return t


def _union_members(t: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return tuple(_strip(m) for m in typing.get_args(t) if m is not type(None))
    return None


def list_item_type(t: Any) -> Any | None:
    """`T` for `list[T]`, `Any` for a bare list or `Any`, None for anything that is not a list."""
    t = _strip(t)
    if t is Any or t is list:
        return Any
    members = _union_members(t)
    if members is not None and len(members) == 1:
        return list_item_type(members[0])
    if typing.get_origin(t) is list:
        args = typing.get_args(t)
        return _strip(args[0]) if args else Any
    return None


def are_types_compatible(source: Any, destination: Any) -> bool:
    """True when a value of type `source` may be connected to an input of type `destination`.

    `Any` matches everything; an `int` may feed a `float`; a union destination accepts whatever one of its
    members accepts (which is how polymorphic single-or-list inputs work); a union source needs every member
    accepted; lists are compared by item type; classes by subclassing; `None` in a union is ignored (an
    optional output feeds a required input, and the engine checks the value at run time).
    """
    source, destination = _strip(source), _strip(destination)
    if source is Any or destination is Any or source == destination:
        return True
    dest_members = _union_members(destination)
    if dest_members is not None:
        return any(are_types_compatible(source, m) for m in dest_members)
    source_members = _union_members(source)
    if source_members is not None:
        return all(are_types_compatible(m, destination) for m in source_members)
    if typing.get_origin(source) is typing.Literal:
        return isinstance(destination, type) and all(isinstance(v, destination) for v in typing.get_args(source))
    source_item, dest_item = list_item_type(source), list_item_type(destination)
    if source_item is not None and dest_item is not None:
        return are_types_compatible(source_item, dest_item)
    if source_item is not None or dest_item is not None:
        return False
    if source is int and destination is float:
        return True
    if isinstance(source, type) and isinstance(destination, type):
        return issubclass(source, destination)
    return False
