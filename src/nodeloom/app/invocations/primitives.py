"""Primitive nodes: a boolean, integer, float or string value, or a collection of them, fed into a graph.

The type strings, field names and defaults are InvokeAI's, so graphs move between the two unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import FieldDescriptions, InputField, OutputField

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation_output("boolean_output")
class BooleanOutput(BaseInvocationOutput):
    """One boolean."""

    value: bool = OutputField(description="The boolean")


@invocation_output("boolean_collection_output")
class BooleanCollectionOutput(BaseInvocationOutput):
    """A list of booleans."""

    collection: list[bool] = OutputField(description="The booleans")


@invocation(
    "boolean",
    title="Boolean Primitive",
    tags=["primitives", "boolean"],
    category="primitives",
    version="1.0.1",
)
class BooleanInvocation(BaseInvocation):
    """A boolean value."""

    value: bool = InputField(default=False, description=FieldDescriptions.value)

    def invoke(self, context: InvocationContext) -> BooleanOutput:
        return BooleanOutput(value=self.value)


@invocation(
    "boolean_collection",
    title="Boolean Collection Primitive",
    tags=["primitives", "boolean", "collection"],
    category="primitives",
    version="1.0.2",
)
class BooleanCollectionInvocation(BaseInvocation):
    """A list of boolean values."""

    collection: list[bool] = InputField(default_factory=list, description=FieldDescriptions.collection)

    def invoke(self, context: InvocationContext) -> BooleanCollectionOutput:
        return BooleanCollectionOutput(collection=self.collection)


@invocation_output("integer_output")
class IntegerOutput(BaseInvocationOutput):
    """One integer."""

    value: int = OutputField(description="The integer")


@invocation_output("integer_collection_output")
class IntegerCollectionOutput(BaseInvocationOutput):
    """A list of integers."""

    collection: list[int] = OutputField(description="The integers")


@invocation(
    "integer",
    title="Integer Primitive",
    tags=["primitives", "integer"],
    category="primitives",
    version="1.0.1",
)
class IntegerInvocation(BaseInvocation):
    """An integer value."""

    value: int = InputField(default=0, description=FieldDescriptions.value)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=self.value)


@invocation(
    "integer_collection",
    title="Integer Collection Primitive",
    tags=["primitives", "integer", "collection"],
    category="primitives",
    version="1.0.2",
)
class IntegerCollectionInvocation(BaseInvocation):
    """A list of integer values."""

    collection: list[int] = InputField(default_factory=list, description=FieldDescriptions.collection)

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        return IntegerCollectionOutput(collection=self.collection)


@invocation_output("float_output")
class FloatOutput(BaseInvocationOutput):
    """One float."""

    value: float = OutputField(description="The float")


@invocation_output("float_collection_output")
class FloatCollectionOutput(BaseInvocationOutput):
    """A list of floats."""

    collection: list[float] = OutputField(description="The floats")


@invocation("float", title="Float Primitive", tags=["primitives", "float"], category="primitives", version="1.0.1")
class FloatInvocation(BaseInvocation):
    """A float value."""

    value: float = InputField(default=0.0, description=FieldDescriptions.value)

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=self.value)


@invocation(
    "float_collection",
    title="Float Collection Primitive",
    tags=["primitives", "float", "collection"],
    category="primitives",
    version="1.0.2",
)
class FloatCollectionInvocation(BaseInvocation):
    """A list of float values."""

    collection: list[float] = InputField(default_factory=list, description=FieldDescriptions.collection)

    def invoke(self, context: InvocationContext) -> FloatCollectionOutput:
        return FloatCollectionOutput(collection=self.collection)


@invocation_output("string_output")
class StringOutput(BaseInvocationOutput):
    """One string."""

    value: str = OutputField(description="The string")


@invocation_output("string_collection_output")
class StringCollectionOutput(BaseInvocationOutput):
    """A list of strings."""

    collection: list[str] = OutputField(description="The strings")


@invocation("string", title="String Primitive", tags=["primitives", "string"], category="primitives", version="1.0.1")
class StringInvocation(BaseInvocation):
    """A string value."""

    value: str = InputField(default="", description=FieldDescriptions.value)

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=self.value)


@invocation(
    "string_collection",
    title="String Collection Primitive",
    tags=["primitives", "string", "collection"],
    category="primitives",
    version="1.0.2",
)
class StringCollectionInvocation(BaseInvocation):
    """A list of string values."""

    collection: list[str] = InputField(default_factory=list, description=FieldDescriptions.collection)

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
        return StringCollectionOutput(collection=self.collection)
