from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, get_args

import pytest
from pydantic import ValidationError

from nodeloom.app.invocations.baseinvocation import registry
from nodeloom.app.invocations.math import (
    AddInvocation,
    DivideInvocation,
    FloatMathInvocation,
    FloatOperation,
    FloatToIntegerInvocation,
    IntegerMathInvocation,
    IntegerOperation,
    MultiplyInvocation,
    RandomFloatInvocation,
    RandomIntInvocation,
    RoundInvocation,
    SubtractInvocation,
)

if TYPE_CHECKING:
    from tests.app.invocations.conftest import CheckInvokeAINode, MakeContext

INT32_MAX = 2147483647

INVOKEAI_MATH_NODES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("add", {"a": 0, "b": 0}, "integer_output", {"value"}),
    ("sub", {"a": 0, "b": 0}, "integer_output", {"value"}),
    ("mul", {"a": 0, "b": 0}, "integer_output", {"value"}),
    ("div", {"a": 0, "b": 0}, "integer_output", {"value"}),
    ("rand_int", {"low": 0, "high": INT32_MAX}, "integer_output", {"value"}),
    ("rand_float", {"low": 0.0, "high": 1.0, "decimals": 2}, "float_output", {"value"}),
    ("float_to_int", {"value": 0.0, "multiple": 1, "method": "Nearest"}, "integer_output", {"value"}),
    ("round_float", {"value": 0.0, "decimals": 0}, "float_output", {"value"}),
    ("integer_math", {"operation": "ADD", "a": 1, "b": 1}, "integer_output", {"value"}),
    ("float_math", {"operation": "ADD", "a": 1.0, "b": 1.0}, "float_output", {"value"}),
]


@pytest.mark.parametrize("spec", INVOKEAI_MATH_NODES, ids=lambda spec: spec[0])
def test_math_node_matches_invokeai(
    spec: tuple[str, dict[str, Any], str, set[str]], check_invokeai_node: CheckInvokeAINode
) -> None:
    check_invokeai_node(*spec)


def test_operation_names_are_invokeais() -> None:
    assert get_args(IntegerOperation) == ("ADD", "SUB", "MUL", "DIV", "EXP", "MOD", "ABS", "MIN", "MAX")
    assert get_args(FloatOperation) == ("ADD", "SUB", "MUL", "DIV", "EXP", "ABS", "SQRT", "MIN", "MAX")
    for cls, operations in ((IntegerMathInvocation, IntegerOperation), (FloatMathInvocation, FloatOperation)):
        extra = cls.model_fields["operation"].json_schema_extra
        assert isinstance(extra, dict)
        labels = extra["ui_choice_labels"]
        assert isinstance(labels, dict)
        assert set(labels) == set(get_args(operations))


@pytest.mark.parametrize("type_", ["rand_int", "rand_float"])
def test_random_nodes_are_never_cached_by_default(type_: str) -> None:
    assert registry.validate_invocation({"type": type_}).use_cache is False


def test_add_sub_mul(make_context: MakeContext) -> None:
    add = AddInvocation(a=2, b=3)
    sub = SubtractInvocation(a=2, b=5)
    mul = MultiplyInvocation(a=-4, b=6)
    assert add.invoke(make_context(add)).value == 5
    assert sub.invoke(make_context(sub)).value == -3
    assert mul.invoke(make_context(mul)).value == -24


@pytest.mark.parametrize(
    ("a", "b", "quotient"),
    [
        (7, 2, 3),
        (-7, 2, -3),
        (7, -2, -3),
        (-7, -2, 3),
        (6, 3, 2),
        (0, 5, 0),
        (1, 2, 0),
        (-1, 2, 0),
        # A float quotient would lose the last digits of numbers this large.
        (2**62 + 1, 1, 2**62 + 1),
        (-(2**62) - 7, 10, -((2**62 + 7) // 10)),
    ],
)
def test_div_truncates_toward_zero(a: int, b: int, quotient: int, make_context: MakeContext) -> None:
    node = DivideInvocation(a=a, b=b)
    assert node.invoke(make_context(node)).value == quotient


def test_div_by_zero_names_the_divisor(make_context: MakeContext) -> None:
    # The default divisor is 0 and may be replaced by an edge, so only running the node refuses it.
    node = DivideInvocation(a=1)
    with pytest.raises(ValueError, match="b must not be 0"):
        node.invoke(make_context(node))


def test_rand_int_stays_within_its_bounds(make_context: MakeContext) -> None:
    node = RandomIntInvocation(low=0, high=10)
    values = {node.invoke(make_context(node)).value for _ in range(300)}
    # 300 draws miss one of ten values with a probability of about 2e-13.
    assert values == set(range(10))


def test_rand_int_with_one_possible_value(make_context: MakeContext) -> None:
    node = RandomIntInvocation(low=-5, high=-4)
    assert node.invoke(make_context(node)).value == -5


@pytest.mark.parametrize(("low", "high"), [(5, 5), (6, 5)])
def test_rand_int_refuses_an_empty_range(low: int, high: int, make_context: MakeContext) -> None:
    node = RandomIntInvocation(low=low, high=high)
    with pytest.raises(ValueError, match=r"high \(5\) must be greater than low"):
        node.invoke(make_context(node))


def test_rand_float_is_rounded_and_within_its_bounds(make_context: MakeContext) -> None:
    node = RandomFloatInvocation(low=1.0, high=2.0, decimals=2)
    for _ in range(100):
        value = node.invoke(make_context(node)).value
        assert 1.0 <= value <= 2.0
        assert round(value, 2) == value


def test_rand_float_with_no_decimals_gives_a_whole_number(make_context: MakeContext) -> None:
    node = RandomFloatInvocation(low=1.0, high=2.0, decimals=0)
    assert {node.invoke(make_context(node)).value for _ in range(50)} <= {1.0, 2.0}


@pytest.mark.parametrize(
    ("value", "multiple", "method", "expected"),
    [
        # Nearest is Python's round(): a tie goes to the even neighbour.
        (2.5, 1, "Nearest", 2),
        (3.5, 1, "Nearest", 4),
        (-2.5, 1, "Nearest", -2),
        (2.6, 1, "Nearest", 3),
        (7.4, 5, "Nearest", 5),
        (7.6, 5, "Nearest", 10),
        (12.5, 5, "Nearest", 10),
        (-1.5, 1, "Floor", -2),
        (7.6, 5, "Floor", 5),
        (-7.6, 5, "Floor", -10),
        (-1.5, 1, "Ceiling", -1),
        (7.1, 5, "Ceiling", 10),
        (-7.6, 5, "Ceiling", -5),
        (-1.5, 1, "Truncate", -1),
        (7.6, 5, "Truncate", 5),
        (-7.6, 5, "Truncate", -5),
        (64.0, 8, "Floor", 64),
    ],
)
def test_float_to_int(value: float, multiple: int, method: str, expected: int, make_context: MakeContext) -> None:
    node = registry.validate_invocation(
        {"type": "float_to_int", "value": value, "multiple": multiple, "method": method}
    )
    output = node.invoke(make_context(node))
    assert output.model_dump() == {"type": "integer_output", "value": expected}
    assert type(output.model_dump()["value"]) is int


@pytest.mark.parametrize(("field", "value"), [("multiple", 0), ("multiple", -8), ("method", "round")])
def test_float_to_int_refuses_a_bad_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        registry.validate_invocation({"type": "float_to_int", field: value})


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_float_to_int_refuses_a_non_finite_value(value: float) -> None:
    # No node takes one: JSON has no infinity, so a graph holding one could not be stored and read back.
    with pytest.raises(ValidationError, match="finite number"):
        FloatToIntegerInvocation(value=value)


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (3.14159, 2, 3.14),
        (2.5, 0, 2.0),
        (3.5, 0, 4.0),
        (1234.5, -2, 1200.0),
        (0.125, 2, 0.12),
        (-0.126, 2, -0.13),
    ],
)
def test_round_float(value: float, decimals: int, expected: float, make_context: MakeContext) -> None:
    node = RoundInvocation(value=value, decimals=decimals)
    assert node.invoke(make_context(node)).value == expected


@pytest.mark.parametrize(
    ("operation", "a", "b", "expected"),
    [
        ("ADD", 7, 3, 10),
        ("SUB", 7, 3, 4),
        ("MUL", 7, -3, -21),
        ("DIV", 7, 3, 2),
        ("DIV", -7, 3, -2),
        ("EXP", 2, 10, 1024),
        ("EXP", -3, 3, -27),
        ("EXP", 5, 0, 1),
        ("MOD", 7, 3, 1),
        ("MOD", -7, 3, 2),
        ("MOD", 7, -3, -2),
        ("ABS", -7, 3, 7),
        ("MIN", 7, 3, 3),
        ("MAX", 7, 3, 7),
    ],
)
def test_integer_math(operation: str, a: int, b: int, expected: int, make_context: MakeContext) -> None:
    node = registry.validate_invocation({"type": "integer_math", "operation": operation, "a": a, "b": b})
    assert node.invoke(make_context(node)).model_dump() == {"type": "integer_output", "value": expected}


def test_integer_math_defaults_add_one_and_one(make_context: MakeContext) -> None:
    node = IntegerMathInvocation()
    assert node.invoke(make_context(node)).value == 2


@pytest.mark.parametrize(
    ("operation", "b", "message"),
    [
        ("DIV", 0, "b must not be 0"),
        ("MOD", 0, "b must not be 0"),
        ("EXP", -1, r"b \(-1\) must not be negative"),
    ],
)
def test_integer_math_refuses_an_operand_with_no_integer_result(
    operation: str, b: int, message: str, make_context: MakeContext
) -> None:
    node = registry.validate_invocation({"type": "integer_math", "operation": operation, "a": 4, "b": b})
    with pytest.raises(ValueError, match=message):
        node.invoke(make_context(node))


def test_integer_math_refuses_an_unknown_operation() -> None:
    with pytest.raises(ValidationError, match="operation"):
        registry.validate_invocation({"type": "integer_math", "operation": "Add A+B"})


@pytest.mark.parametrize(
    ("operation", "a", "b", "expected"),
    [
        ("ADD", 1.5, 2.25, 3.75),
        ("SUB", 1.5, 2.25, -0.75),
        ("MUL", 1.5, 2.25, 3.375),
        ("DIV", 1.5, -0.5, -3.0),
        ("EXP", 2.0, 0.5, math.sqrt(2.0)),
        ("EXP", -2.0, 3.0, -8.0),
        ("EXP", 4.0, -0.5, 0.5),
        ("EXP", 0.0, 0.0, 1.0),
        ("ABS", -2.5, 9.0, 2.5),
        ("SQRT", 2.25, 9.0, 1.5),
        ("SQRT", 0.0, 9.0, 0.0),
        ("MIN", 1.5, -2.25, -2.25),
        ("MAX", 1.5, -2.25, 1.5),
    ],
)
def test_float_math(operation: str, a: float, b: float, expected: float, make_context: MakeContext) -> None:
    node = FloatMathInvocation(operation=operation, a=a, b=b)
    assert node.invoke(make_context(node)).value == expected


def test_float_math_defaults_add_one_and_one(make_context: MakeContext) -> None:
    node = registry.validate_invocation({"type": "float_math"})
    assert node.invoke(make_context(node)).model_dump() == {"type": "float_output", "value": 2.0}


@pytest.mark.parametrize(
    ("operation", "a", "b", "message"),
    [
        ("DIV", 1.0, 0.0, "b must not be 0"),
        ("EXP", 0.0, -1.0, r"b \(-1.0\) must not be negative when a is 0"),
        ("EXP", -8.0, 1 / 3, r"b \(0.333.*\) must be a whole number when a \(-8.0\) is negative"),
        ("EXP", 10.0, 400.0, "too large for a float"),
        ("SQRT", -4.0, 1.0, r"a \(-4.0\) must not be negative"),
    ],
)
def test_float_math_refuses_an_operand_with_no_real_result(
    operation: str, a: float, b: float, message: str, make_context: MakeContext
) -> None:
    node = FloatMathInvocation(operation=operation, a=a, b=b)
    with pytest.raises(ValueError, match=message):
        node.invoke(make_context(node))
