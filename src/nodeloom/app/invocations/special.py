"""`iterate` and `collect`: the two node types the graph engine expands and gathers itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import FieldDescriptions, Input, InputField, OutputField

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext

ITEM_FIELD = "item"
COLLECTION_FIELD = "collection"


@invocation_output("iterate_output")
class IterateInvocationOutput(BaseInvocationOutput):
    item: Any = OutputField(description="The item being iterated over")
    index: int = OutputField(description="The index of the item")
    total: int = OutputField(description="The total number of items")


@invocation("iterate", title="Iterate", tags=["collection"], category="collections", version="1.1.0")
class IterateInvocation(BaseInvocation):
    """Runs the nodes downstream of it once for each item of a collection."""

    collection: list[Any] = InputField(
        default=[], description="The list of items to iterate over", input=Input.Connection
    )
    index: int = InputField(default=0, description="The index, set by the engine", ui_hidden=True)

    def invoke(self, context: InvocationContext) -> IterateInvocationOutput:
        return iterate_output(self.collection, self.index)


def iterate_output(collection: list[Any], index: int) -> IterateInvocationOutput:
    """The output of the iteration at `index`; the engine calls this directly, without copying the collection."""
    return IterateInvocationOutput(item=collection[index], index=index, total=len(collection))


@invocation_output("collect_output")
class CollectInvocationOutput(BaseInvocationOutput):
    collection: list[Any] = OutputField(description="The collection of input items")


@invocation("collect", title="Collect", tags=["collection"], category="collections", version="1.0.0")
class CollectInvocation(BaseInvocation):
    """Gathers the items of the innermost iteration it sits in, in item order."""

    item: Any = InputField(default=None, description=FieldDescriptions.item, input=Input.Connection)
    collection: list[Any] = InputField(
        default=[], description="The collection, filled by the engine", input=Input.Direct, ui_hidden=True
    )

    def invoke(self, context: InvocationContext) -> CollectInvocationOutput:
        return CollectInvocationOutput(collection=list(self.collection))
