"""Math nodes on integers and floats, with InvokeAI's type strings, field names, defaults and results.

Operands that have no result (a division by zero, a complex power, ...) are refused when the node runs, not
when the graph is validated: an operand may arrive over an edge, and a graph InvokeAI accepts must be
accepted here too. So is an integer result beyond signed 64 bits: past about 4,300 digits no JSON parser reads
it back, and long before that it is no number a graph means.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import FieldDescriptions, InputField
from nodeloom.app.invocations.limits import check_int64
from nodeloom.app.invocations.primitives import FloatOutput, IntegerOutput

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext

INT32_MAX = 2**31 - 1
"""The default exclusive upper bound of the random integer nodes, as in InvokeAI."""

# Unseeded nodes draw from the OS: nothing to seed, and safe to share between threads.
_UNSEEDED = random.SystemRandom()


def truncating_div(a: int, b: int) -> int:
    """`a / b` rounded toward zero, as InvokeAI divides integers, but exact for integers of any size."""
    if b == 0:
        raise ValueError("b must not be 0: cannot divide by zero")
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


def _integer_output(value: int) -> IntegerOutput:
    """The output of an integer result, refused beyond signed 64 bits."""
    return IntegerOutput(value=check_int64("The result", value))


def random_integers(rng: random.Random, low: int, high: int, size: int) -> list[int]:
    """`size` integers drawn uniformly from `low` (included) up to `high` (excluded)."""
    if high <= low:
        raise ValueError(f"high ({high}) must be greater than low ({low})")
    if size < 0:
        raise ValueError(f"size ({size}) must not be negative")
    return [rng.randrange(low, high) for _ in range(size)]


@invocation("add", title="Add Integers", tags=["math", "add"], category="math", version="1.0.0")
class AddInvocation(BaseInvocation):
    """Adds two integers."""

    a: int = InputField(default=0, description=FieldDescriptions.num_1)
    b: int = InputField(default=0, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(self.a + self.b)


@invocation("sub", title="Subtract Integers", tags=["math", "subtract"], category="math", version="1.0.0")
class SubtractInvocation(BaseInvocation):
    """Subtracts b from a."""

    a: int = InputField(default=0, description=FieldDescriptions.num_1)
    b: int = InputField(default=0, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(self.a - self.b)


@invocation("mul", title="Multiply Integers", tags=["math", "multiply"], category="math", version="1.0.0")
class MultiplyInvocation(BaseInvocation):
    """Multiplies two integers."""

    a: int = InputField(default=0, description=FieldDescriptions.num_1)
    b: int = InputField(default=0, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(self.a * self.b)


@invocation("div", title="Divide Integers", tags=["math", "divide"], category="math", version="1.0.0")
class DivideInvocation(BaseInvocation):
    """Divides a by b, rounding the quotient toward zero."""

    a: int = InputField(default=0, description=FieldDescriptions.num_1)
    b: int = InputField(default=0, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(truncating_div(self.a, self.b))


@invocation(
    "rand_int",
    title="Random Integer",
    tags=["math", "random"],
    category="math",
    version="1.0.0",
    use_cache=False,
)
class RandomIntInvocation(BaseInvocation):
    """Draws one random integer."""

    low: int = InputField(default=0, description=FieldDescriptions.inclusive_low)
    high: int = InputField(default=INT32_MAX, description=FieldDescriptions.exclusive_high)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        (value,) = random_integers(_UNSEEDED, self.low, self.high, 1)
        return _integer_output(value)


@invocation(
    "rand_float",
    title="Random Float",
    tags=["math", "float", "random"],
    category="math",
    version="1.0.1",
    use_cache=False,
)
class RandomFloatInvocation(BaseInvocation):
    """Draws one random float, rounded to a number of decimal places."""

    low: float = InputField(default=0.0, description=FieldDescriptions.inclusive_low)
    high: float = InputField(default=1.0, description=FieldDescriptions.exclusive_high)
    decimals: int = InputField(default=2, description=FieldDescriptions.decimal_places)

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=round(_UNSEEDED.uniform(self.low, self.high), self.decimals))


RoundingMethod = Literal["Nearest", "Floor", "Ceiling", "Truncate"]

# "Nearest" is Python's round(): a tie goes to the even neighbour, as in InvokeAI.
_ROUNDINGS: dict[str, Callable[[float], int]] = {
    "Nearest": round,
    "Floor": math.floor,
    "Ceiling": math.ceil,
    "Truncate": math.trunc,
}


@invocation(
    "float_to_int",
    title="Float To Integer",
    tags=["math", "round", "integer", "float", "convert"],
    category="math",
    version="1.0.0",
)
class FloatToIntegerInvocation(BaseInvocation):
    """Rounds a float to an integer, or to a multiple of one."""

    value: float = InputField(default=0.0, description="The float to round")
    multiple: int = InputField(default=1, ge=1, title="Multiple of", description="The result is a multiple of this")
    method: RoundingMethod = InputField(default="Nearest", description="How to round")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(_ROUNDINGS[self.method](self.value / self.multiple) * self.multiple)


@invocation("round_float", title="Round Float", tags=["math", "round"], category="math", version="1.0.0")
class RoundInvocation(BaseInvocation):
    """Rounds a float to a number of decimal places (ties to even)."""

    value: float = InputField(default=0.0, description="The float to round")
    decimals: int = InputField(default=0, description=FieldDescriptions.decimal_places)

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=round(self.value, self.decimals))


def _integer_modulus(a: int, b: int) -> int:
    if b == 0:
        raise ValueError("b must not be 0: cannot take a modulus by zero")
    return a % b


def _integer_power(a: int, b: int) -> int:
    if b < 0:
        raise ValueError(f"b ({b}) must not be negative: the power would not be an integer")
    # Refused before it is computed: 10 ^ 10**9 would take minutes and gigabytes to be refused afterwards.
    if abs(a) > 1 and b >= 64:
        raise ValueError(
            f"a ^ b with b = {b} and a other than -1, 0 or 1 is beyond signed 64 bits, the limit of integer results"
        )
    return int(a**b)


IntegerOperation = Literal["ADD", "SUB", "MUL", "DIV", "EXP", "MOD", "ABS", "MIN", "MAX"]

_INTEGER_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "ADD": operator.add,
    "SUB": operator.sub,
    "MUL": operator.mul,
    "DIV": truncating_div,
    "EXP": _integer_power,
    "MOD": _integer_modulus,
    "ABS": lambda a, _b: abs(a),
    "MIN": min,
    "MAX": max,
}

_INTEGER_OPERATION_LABELS = {
    "ADD": "Add (A + B)",
    "SUB": "Subtract (A - B)",
    "MUL": "Multiply (A * B)",
    "DIV": "Divide (A / B, toward zero)",
    "EXP": "Power (A ^ B)",
    "MOD": "Modulus (A % B)",
    "ABS": "Absolute value of A",
    "MIN": "Smaller of A and B",
    "MAX": "Larger of A and B",
}


@invocation(
    "integer_math",
    title="Integer Math",
    tags=[
        "math",
        "integer",
        "add",
        "subtract",
        "multiply",
        "divide",
        "modulus",
        "power",
        "absolute value",
        "min",
        "max",
    ],
    category="math",
    version="1.0.0",
)
class IntegerMathInvocation(BaseInvocation):
    """Applies an arithmetic operation to two integers."""

    operation: IntegerOperation = InputField(
        default="ADD", description="The operation to apply", ui_choice_labels=_INTEGER_OPERATION_LABELS
    )
    a: int = InputField(default=1, description=FieldDescriptions.num_1)
    b: int = InputField(default=1, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return _integer_output(_INTEGER_OPERATIONS[self.operation](self.a, self.b))


def _float_division(a: float, b: float) -> float:
    if b == 0:
        raise ValueError("b must not be 0: cannot divide by zero")
    return a / b


def _float_power(a: float, b: float) -> float:
    if a == 0 and b < 0:
        raise ValueError(f"b ({b}) must not be negative when a is 0: zero has no negative powers")
    if a < 0 and math.isfinite(b) and not b.is_integer():
        raise ValueError(f"b ({b}) must be a whole number when a ({a}) is negative: the power would be complex")
    try:
        return float(a**b)
    except OverflowError:
        raise ValueError(f"{a} ^ {b} is too large for a float") from None


def _float_square_root(a: float, _b: float) -> float:
    if a < 0:
        raise ValueError(f"a ({a}) must not be negative: its square root would be complex")
    return math.sqrt(a)


FloatOperation = Literal["ADD", "SUB", "MUL", "DIV", "EXP", "ABS", "SQRT", "MIN", "MAX"]

_FLOAT_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "ADD": operator.add,
    "SUB": operator.sub,
    "MUL": operator.mul,
    "DIV": _float_division,
    "EXP": _float_power,
    "ABS": lambda a, _b: abs(a),
    "SQRT": _float_square_root,
    "MIN": min,
    "MAX": max,
}

_FLOAT_OPERATION_LABELS = {
    "ADD": "Add (A + B)",
    "SUB": "Subtract (A - B)",
    "MUL": "Multiply (A * B)",
    "DIV": "Divide (A / B)",
    "EXP": "Power (A ^ B)",
    "ABS": "Absolute value of A",
    "SQRT": "Square root of A",
    "MIN": "Smaller of A and B",
    "MAX": "Larger of A and B",
}


@invocation(
    "float_math",
    title="Float Math",
    tags=[
        "math",
        "float",
        "add",
        "subtract",
        "multiply",
        "divide",
        "power",
        "root",
        "absolute value",
        "min",
        "max",
    ],
    category="math",
    version="1.0.0",
)
class FloatMathInvocation(BaseInvocation):
    """Applies an arithmetic operation to two floats."""

    operation: FloatOperation = InputField(
        default="ADD", description="The operation to apply", ui_choice_labels=_FLOAT_OPERATION_LABELS
    )
    a: float = InputField(default=1.0, description=FieldDescriptions.num_1)
    b: float = InputField(default=1.0, description=FieldDescriptions.num_2)

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=_FLOAT_OPERATIONS[self.operation](self.a, self.b))
