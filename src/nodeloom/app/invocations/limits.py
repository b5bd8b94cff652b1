"""The limits on the work one node may be asked for, and the error that names the limit a request went over.

A node checks its inputs against them twice: when its graph is enqueued (the values set in the graph or by
batch data; an input an edge fills is not known yet) and when it runs (every input, filled). The limits are
settings of the same names: the engine passes `NodeloomConfig` itself, a batch passes its `BatchLimits`.
"""

from __future__ import annotations

from typing import Protocol

from nodeloom.errors import NodeloomError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Integers are bounded to signed 64 bits, as the database and most JSON clients hold them."""


class LimitExceededError(NodeloomError):
    """A request asks for more than a configured limit allows."""


class NodeLimits(Protocol):
    """The settings a node's work is bounded by."""

    @property
    def max_string_length(self) -> int: ...

    @property
    def max_collection_size(self) -> int: ...

    @property
    def max_image_pixels(self) -> int: ...


def check_limit(what: str, amount: float, limit: float, setting: str) -> None:
    """Raises `LimitExceededError` when `amount` of `what` is over `limit`, naming the setting."""
    if amount > limit:
        raise LimitExceededError(f"{what} is {_amount(amount)}, over the limit of {_amount(limit)} (setting {setting})")


def _amount(value: float) -> str:
    # Python refuses to print an integer of more than 4,300 digits, and one of 40 says no more than its size.
    if isinstance(value, int):
        return f"{value:,}" if value.bit_length() <= 128 else f"a number of {value.bit_length()} bits"
    return f"{value:g}"


def check_int64(what: str, value: int) -> int:
    """`value` if it is a signed 64-bit integer; else raises `ValueError` (a 4,300-digit number cannot even be
    printed, so the message gives its size)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            f"{what} needs {value.bit_length() + 1} bits: integers are limited to signed 64 bits "
            f"({INT64_MIN} to {INT64_MAX})"
        )
    return value
