"""Nodes that make collections of integers, with InvokeAI's type strings, field names and defaults.

Checks that involve more than one input run when the node runs, not when the graph is validated: an input
may arrive over an edge, and a graph InvokeAI accepts must be accepted here too. The size of the collection a
node would make is checked against `max_collection_size` before it is made, at enqueue where the inputs are
set in the graph, else when the node runs.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from nodeloom.app.invocations.baseinvocation import BaseInvocation, describe_node, invocation
from nodeloom.app.invocations.fields import FieldDescriptions, InputField
from nodeloom.app.invocations.limits import NodeLimits, check_limit
from nodeloom.app.invocations.math import INT32_MAX, random_integers
from nodeloom.app.invocations.primitives import IntegerCollectionOutput

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext

SEED_MAX = 2**32 - 1
"""The largest seed: seeds are unsigned 32-bit integers, as in InvokeAI."""


def _stepped_range(start: int, stop: int, step: int) -> list[int]:
    if step == 0:
        raise ValueError("step must not be 0")
    return list(range(start, stop, step))


def _check_size(node: BaseInvocation, size: int, limits: NodeLimits) -> None:
    what = f"The size of the collection node {describe_node(node)} makes"
    check_limit(what, size, limits.max_collection_size, "max_collection_size")


def _range_length(start: int, stop: int, step: int) -> int:
    """How many values `range(start, stop, step)` holds, counted without making it."""
    if step == 0:
        return 0  # refused when the node runs
    return max(0, (stop - start + step - (1 if step > 0 else -1)) // step)


@invocation(
    "range",
    title="Integer Range",
    tags=["collection", "integer", "range"],
    category="collections",
    version="1.0.0",
)
class RangeInvocation(BaseInvocation):
    """The integers from start up to stop (excluded), counting by step."""

    start: int = InputField(default=0, description="The first value")
    stop: int = InputField(default=10, description="The end of the range, excluded; must be greater than start")
    step: int = InputField(default=1, description="The difference between one value and the next")

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        _check_size(self, _range_length(self.start, self.stop, self.step), limits)

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be greater than start ({self.start})")
        return IntegerCollectionOutput(collection=_stepped_range(self.start, self.stop, self.step))


@invocation(
    "range_of_size",
    title="Integer Range of Size",
    tags=["collection", "integer", "size", "range"],
    category="collections",
    version="1.0.0",
)
class RangeOfSizeInvocation(BaseInvocation):
    """`size` integers from start, counting by step."""

    start: int = InputField(default=0, description="The first value")
    size: int = InputField(default=1, gt=0, description="How many values")
    step: int = InputField(default=1, description="The difference between one value and the next")

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        _check_size(self, self.size, limits)

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        stop = self.start + self.step * self.size
        return IntegerCollectionOutput(collection=_stepped_range(self.start, stop, self.step))


@invocation(
    "random_range",
    title="Random Range",
    tags=["range", "integer", "random", "collection"],
    category="collections",
    version="1.0.1",
    use_cache=False,
)
class RandomRangeInvocation(BaseInvocation):
    """`size` random integers, the same ones for the same seed."""

    low: int = InputField(default=0, description=FieldDescriptions.inclusive_low)
    high: int = InputField(default=INT32_MAX, description=FieldDescriptions.exclusive_high)
    size: int = InputField(default=1, description="How many values")
    seed: int = InputField(default=0, ge=0, le=SEED_MAX, description=FieldDescriptions.seed)

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        _check_size(self, self.size, limits)

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        values = random_integers(random.Random(self.seed), self.low, self.high, self.size)
        return IntegerCollectionOutput(collection=values)
