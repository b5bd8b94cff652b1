from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput, registry
from nodeloom.app.invocations.primitives import (
    BooleanCollectionInvocation,
    BooleanInvocation,
    FloatCollectionInvocation,
    FloatInvocation,
    IntegerCollectionInvocation,
    IntegerInvocation,
    StringCollectionInvocation,
    StringInvocation,
)

if TYPE_CHECKING:
    from tests.app.invocations.conftest import CheckInvokeAINode, MakeContext

LIBRARY_MODULES = {f"nodeloom.app.invocations.{name}" for name in ("primitives", "math", "strings", "collections")}

LIBRARY_NODE_TYPES = {
    *("boolean", "integer", "float", "string"),
    *("boolean_collection", "integer_collection", "float_collection", "string_collection"),
    *("add", "sub", "mul", "div", "rand_int", "rand_float", "float_math", "integer_math"),
    *("round_float", "float_to_int"),
    *("string_join", "string_join_three", "string_split", "string_split_neg", "string_replace"),
    *("range", "range_of_size", "random_range"),
}

INVOKEAI_PRIMITIVES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("boolean", {"value": False}, "boolean_output", {"value"}),
    ("integer", {"value": 0}, "integer_output", {"value"}),
    ("float", {"value": 0.0}, "float_output", {"value"}),
    ("string", {"value": ""}, "string_output", {"value"}),
    ("boolean_collection", {"collection": []}, "boolean_collection_output", {"collection"}),
    ("integer_collection", {"collection": []}, "integer_collection_output", {"collection"}),
    ("float_collection", {"collection": []}, "float_collection_output", {"collection"}),
    ("string_collection", {"collection": []}, "string_collection_output", {"collection"}),
]


@pytest.mark.parametrize("spec", INVOKEAI_PRIMITIVES, ids=lambda spec: spec[0])
def test_primitive_matches_invokeai(
    spec: tuple[str, dict[str, Any], str, set[str]], check_invokeai_node: CheckInvokeAINode
) -> None:
    check_invokeai_node(*spec)


def test_every_library_node_type_resolves_its_output_class() -> None:
    library = [cls for cls in registry.invocation_classes() if cls.__module__ in LIBRARY_MODULES]
    assert {cls.invocation_type for cls in library} == LIBRARY_NODE_TYPES
    for cls in library:
        output = cls.output_class()
        assert registry.get_output(output.output_type) is output


PRIMITIVE_CASES: list[tuple[BaseInvocation, dict[str, Any]]] = [
    (BooleanInvocation(value=True), {"type": "boolean_output", "value": True}),
    (IntegerInvocation(value=-42), {"type": "integer_output", "value": -42}),
    (FloatInvocation(value=2.5), {"type": "float_output", "value": 2.5}),
    (StringInvocation(value="a cat"), {"type": "string_output", "value": "a cat"}),
    (
        BooleanCollectionInvocation(collection=[True, False, True]),
        {"type": "boolean_collection_output", "collection": [True, False, True]},
    ),
    (
        IntegerCollectionInvocation(collection=[3, 1, 2]),
        {"type": "integer_collection_output", "collection": [3, 1, 2]},
    ),
    (
        FloatCollectionInvocation(collection=[0.5, -1.25]),
        {"type": "float_collection_output", "collection": [0.5, -1.25]},
    ),
    (
        StringCollectionInvocation(collection=["a", "", "b"]),
        {"type": "string_collection_output", "collection": ["a", "", "b"]},
    ),
]


@pytest.mark.parametrize(("node", "expected"), PRIMITIVE_CASES, ids=[node.type for node, _ in PRIMITIVE_CASES])
def test_primitive_outputs_its_value(node: BaseInvocation, expected: dict[str, Any], make_context: MakeContext) -> None:
    output = node.invoke(make_context(node))
    assert isinstance(output, BaseInvocationOutput)
    assert output.model_dump() == expected
    assert registry.validate_output(output.model_dump()) == output


def test_float_primitive_takes_an_integer_as_a_float() -> None:
    node = registry.validate_invocation({"type": "float", "value": 3})
    assert isinstance(node, FloatInvocation)
    assert node.value == 3.0
    assert isinstance(node.value, float)


def test_collection_defaults_are_not_shared_between_nodes(make_context: MakeContext) -> None:
    first = IntegerCollectionInvocation()
    first.collection.append(1)
    second = IntegerCollectionInvocation()
    assert second.invoke(make_context(second)).collection == []


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("integer", "value", "many"),
        ("integer", "value", 1.5),
        ("boolean", "value", "perhaps"),
        ("integer_collection", "collection", [1, "two"]),
        ("string_collection", "collection", "not a list"),
    ],
)
def test_primitive_refuses_a_value_of_the_wrong_type(type_: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        registry.validate_invocation({"type": type_, field: value})
