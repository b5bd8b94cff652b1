"""The limits on a node's work (`check_limits`), the 64-bit bound of integer results, and the output check."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from tests.app.invocations.conftest import MakeContext
from tests.nodes import HugeIntInvocation

from nodeloom.app.invocations.baseinvocation import UnstorableOutputError, registry
from nodeloom.app.invocations.collections import RangeInvocation
from nodeloom.app.invocations.limits import INT64_MAX, INT64_MIN, LimitExceededError
from nodeloom.app.invocations.math import IntegerMathInvocation
from nodeloom.app.invocations.strings import StringReplaceInvocation
from nodeloom.app.services.config.config_default import NodeloomConfig
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData


@dataclass(frozen=True)
class Limits:
    max_string_length: int = 10
    max_collection_size: int = 5
    max_image_pixels: int = 100


def node(type_: str, **fields: Any) -> Any:
    return registry.validate_invocation({"id": "n", "type": type_, **fields})


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        ("string", {"value": "x" * 10}),
        ("string_collection", {"collection": ["x" * 10] * 5}),
        ("range", {"start": 0, "stop": 10, "step": 2}),
        ("range", {"start": 10, "stop": -100, "step": -30}),
        ("range", {"start": 0, "stop": 10**30, "step": 10**29 * 2}),
        ("range_of_size", {"size": 5}),
        ("random_range", {"size": 5}),
        ("blank_image", {"width": 10, "height": 10}),
        ("img_resize", {"width": 100, "height": 1}),
        ("img_crop", {"width": 1, "height": 100}),
        ("noise", {"width": 8, "height": 8}),
    ],
)
def test_what_is_within_the_limits_passes(type_: str, fields: dict[str, Any]) -> None:
    node(type_, **fields).check_limits(Limits())


@pytest.mark.parametrize(
    ("type_", "fields", "setting"),
    [
        ("string", {"value": "x" * 11}, "max_string_length"),
        ("string_collection", {"collection": ["x", "x" * 11]}, "max_string_length"),
        ("string_collection", {"collection": ["x"] * 6}, "max_collection_size"),
        ("range", {"start": 0, "stop": 11, "step": 2}, "max_collection_size"),
        ("range", {"start": 10, "stop": -200, "step": -30}, "max_collection_size"),
        ("range_of_size", {"size": 6}, "max_collection_size"),
        ("random_range", {"size": 6}, "max_collection_size"),
        ("blank_image", {"width": 101, "height": 1}, "max_image_pixels"),
        ("img_crop", {"width": 11, "height": 10}, "max_image_pixels"),
        ("img_resize", {"width": 1, "height": 101}, "max_image_pixels"),
        ("noise", {"width": 16, "height": 8}, "max_image_pixels"),
    ],
)
def test_what_is_over_a_limit_is_refused_naming_its_setting(type_: str, fields: dict[str, Any], setting: str) -> None:
    with pytest.raises(LimitExceededError, match=rf"'n' \({type_}\).*over the limit of .*\(setting {setting}\)"):
        node(type_, **fields).check_limits(Limits())


def test_a_range_is_measured_without_being_made() -> None:
    limits = Limits(max_collection_size=10**6)
    for start, stop, step in itertools.product(range(-9, 10, 3), range(-9, 10, 4), (-4, -1, 1, 3)):
        length = len(range(start, stop, step))
        RangeInvocation(id="n", start=start, stop=stop, step=step).check_limits(Limits(max_collection_size=length))
        if length:
            with pytest.raises(LimitExceededError):
                RangeInvocation(id="n", start=start, stop=stop, step=step).check_limits(
                    Limits(max_collection_size=length - 1)
                )
    with pytest.raises(LimitExceededError, match="a number of"):
        RangeInvocation(id="n", start=0, stop=10**5000 // 10**800, step=1).check_limits(limits)


def context(node: Any, config: NodeloomConfig | None) -> InvocationContext:
    data = InvocationContextData(invocation=node, source_invocation_id=node.id, session_id="s")
    return InvocationContext(data=data, config=config)


def test_the_engine_checks_the_limits_of_the_servers_settings(tmp_path: Any) -> None:
    config = NodeloomConfig(root=tmp_path, max_collection_size=3)
    over = RangeInvocation(id="n", start=0, stop=4)
    with pytest.raises(LimitExceededError, match="max_collection_size"):
        over.invoke_internal(context(over, config))
    # `nodeloom run` has no server, and no settings to bound a script by.
    assert over.invoke_internal(context(over, None)).model_dump()["collection"] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("a", "b", "result"),
    [(2, 62, 2**62), (-2, 63, INT64_MIN), (1, 10**18, 1), (-1, 10**18 + 1, -1), (0, 10**18, 0), (3, 0, 1)],
)
def test_a_power_within_64_bits(a: int, b: int, result: int, make_context: MakeContext) -> None:
    power = IntegerMathInvocation(operation="EXP", a=a, b=b)
    assert power.invoke(make_context(power)).model_dump()["value"] == result


@pytest.mark.parametrize(
    ("operation", "a", "b"),
    [
        ("EXP", 2, 63),
        ("EXP", -2, 64),
        ("EXP", 10, 10**18),
        ("ADD", INT64_MAX, 1),
        ("SUB", INT64_MIN, 1),
        ("ABS", INT64_MIN, 0),
        ("DIV", INT64_MIN, -1),
    ],
)
def test_an_integer_result_beyond_64_bits_is_refused(operation: str, a: int, b: int, make_context: MakeContext) -> None:
    node = IntegerMathInvocation(operation=operation, a=a, b=b)
    with pytest.raises(ValueError, match="signed 64 bits"):
        node.invoke(make_context(node))


def test_an_output_that_does_not_read_back_from_json_fails_its_node(make_context: MakeContext) -> None:
    fine, huge = HugeIntInvocation(id="fine", digits=4000), HugeIntInvocation(id="huge", digits=5000)
    assert fine.invoke_internal(make_context(fine)).model_dump()["value"] == 10**4000
    with pytest.raises(UnstorableOutputError, match=r"Node 'huge' \(test_huge_int\).*number out of range"):
        huge.invoke_internal(make_context(huge))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"search_string": "a", "replace_string": "XY"}, "XYbXY"),
        ({"search_string": "(a)", "replace_string": r"<\1\n>", "use_regex": True}, "<a\n>b<a\n>"),
        ({"search_string": "(?P<x>b)", "replace_string": r"\g<x>\g<x>", "use_regex": True}, "abba"),
    ],
)
def test_string_replace_within_the_limit_is_unchanged(fields: dict[str, Any], expected: str, tmp_path: Any) -> None:
    replace = StringReplaceInvocation(id="n", string="aba", **fields)
    config = NodeloomConfig(root=tmp_path, max_string_length=9)
    assert replace.invoke(context(replace, config)).model_dump()["value"] == expected


def test_string_replace_stops_once_its_text_is_over_the_limit(tmp_path: Any) -> None:
    replace = StringReplaceInvocation(id="n", string="a" * 100, search_string="a", replace_string="bb")
    with pytest.raises(LimitExceededError, match=r"text node 'n' \(string_replace\) makes is 101,.*max_string_length"):
        replace.invoke(context(replace, NodeloomConfig(root=tmp_path, max_string_length=100)))
