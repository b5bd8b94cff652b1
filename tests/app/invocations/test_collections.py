from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from nodeloom.app.invocations.baseinvocation import registry
from nodeloom.app.invocations.collections import (
    RandomRangeInvocation,
    RangeInvocation,
    RangeOfSizeInvocation,
)

if TYPE_CHECKING:
    from tests.app.invocations.conftest import CheckInvokeAINode, MakeContext

INT32_MAX = 2147483647
SEED_MAX = 4294967295

INVOKEAI_COLLECTION_NODES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("range", {"start": 0, "stop": 10, "step": 1}, "integer_collection_output", {"collection"}),
    ("range_of_size", {"start": 0, "size": 1, "step": 1}, "integer_collection_output", {"collection"}),
    (
        "random_range",
        {"low": 0, "high": INT32_MAX, "size": 1, "seed": 0},
        "integer_collection_output",
        {"collection"},
    ),
]


@pytest.mark.parametrize("spec", INVOKEAI_COLLECTION_NODES, ids=lambda spec: spec[0])
def test_collection_node_matches_invokeai(
    spec: tuple[str, dict[str, Any], str, set[str]], check_invokeai_node: CheckInvokeAINode
) -> None:
    check_invokeai_node(*spec)


@pytest.mark.parametrize(
    ("start", "stop", "step", "expected"),
    [
        (0, 10, 1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        (2, 11, 3, [2, 5, 8]),
        (-3, 3, 2, [-3, -1, 1]),
        (5, 6, 10, [5]),
        # stop must exceed start, so a negative step counts nothing, as in InvokeAI.
        (0, 5, -1, []),
    ],
)
def test_range(start: int, stop: int, step: int, expected: list[int], make_context: MakeContext) -> None:
    node = RangeInvocation(start=start, stop=stop, step=step)
    output = node.invoke(make_context(node))
    assert output.model_dump() == {"type": "integer_collection_output", "collection": expected}


@pytest.mark.parametrize(("start", "stop"), [(5, 5), (6, 5)])
def test_range_refuses_a_stop_not_above_start(start: int, stop: int, make_context: MakeContext) -> None:
    # Checked when the node runs: start or stop may arrive over an edge.
    node = RangeInvocation(start=start, stop=stop)
    with pytest.raises(ValueError, match=r"stop \(5\) must be greater than start"):
        node.invoke(make_context(node))


def test_range_refuses_a_zero_step(make_context: MakeContext) -> None:
    node = RangeInvocation(step=0)
    with pytest.raises(ValueError, match="step must not be 0"):
        node.invoke(make_context(node))


@pytest.mark.parametrize(
    ("start", "size", "step", "expected"),
    [
        (0, 1, 1, [0]),
        (5, 4, 3, [5, 8, 11, 14]),
        (10, 3, -2, [10, 8, 6]),
        (-1, 3, 1, [-1, 0, 1]),
    ],
)
def test_range_of_size(start: int, size: int, step: int, expected: list[int], make_context: MakeContext) -> None:
    node = RangeOfSizeInvocation(start=start, size=size, step=step)
    assert node.invoke(make_context(node)).collection == expected


@pytest.mark.parametrize("size", [0, -3])
def test_range_of_size_refuses_a_size_below_one(size: int) -> None:
    with pytest.raises(ValidationError, match="size"):
        registry.validate_invocation({"type": "range_of_size", "size": size})


def test_range_of_size_refuses_a_zero_step(make_context: MakeContext) -> None:
    node = RangeOfSizeInvocation(size=3, step=0)
    with pytest.raises(ValueError, match="step must not be 0"):
        node.invoke(make_context(node))


def test_random_range_is_never_cached_by_default() -> None:
    assert RandomRangeInvocation().use_cache is False


def test_random_range_draws_size_values_within_bounds(make_context: MakeContext) -> None:
    node = RandomRangeInvocation(low=-3, high=4, size=500, seed=7)
    values = node.invoke(make_context(node)).collection
    assert len(values) == 500
    # 500 draws miss one of seven values with a probability of about 1e-32.
    assert set(values) == set(range(-3, 4))


def test_random_range_repeats_for_the_same_seed(make_context: MakeContext) -> None:
    first = RandomRangeInvocation(size=20, seed=1234)
    second = RandomRangeInvocation(size=20, seed=1234)
    other = RandomRangeInvocation(size=20, seed=1235)
    values = first.invoke(make_context(first)).collection
    assert second.invoke(make_context(second)).collection == values
    assert other.invoke(make_context(other)).collection != values
    assert all(0 <= value < INT32_MAX for value in values)


def test_random_range_of_size_zero_is_empty(make_context: MakeContext) -> None:
    node = RandomRangeInvocation(size=0)
    assert node.invoke(make_context(node)).collection == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"low": 5, "high": 5}, r"high \(5\) must be greater than low \(5\)"),
        ({"low": 5, "high": 1}, r"high \(1\) must be greater than low \(5\)"),
        ({"size": -1}, r"size \(-1\) must not be negative"),
    ],
)
def test_random_range_refuses_bad_bounds(fields: dict[str, int], message: str, make_context: MakeContext) -> None:
    node = RandomRangeInvocation(**fields)
    with pytest.raises(ValueError, match=message):
        node.invoke(make_context(node))


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1])
def test_random_range_refuses_a_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ValidationError, match="seed"):
        registry.validate_invocation({"type": "random_range", "seed": seed})


def test_random_range_takes_the_largest_seed(make_context: MakeContext) -> None:
    node = registry.validate_invocation({"type": "random_range", "seed": SEED_MAX, "low": 0, "high": 2, "size": 4})
    assert set(node.invoke(make_context(node)).model_dump()["collection"]) <= {0, 1}
