from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from nodeloom.app.invocations.strings import (
    StringJoinInvocation,
    StringJoinThreeInvocation,
    StringReplaceInvocation,
    StringSplitInvocation,
    StringSplitNegInvocation,
)
from nodeloom.app.services.config.config_default import load_config

if TYPE_CHECKING:
    from tests.app.invocations.conftest import CheckInvokeAINode, MakeContext

INVOKEAI_STRING_NODES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("string_join", {"string_left": "", "string_right": ""}, "string_output", {"value"}),
    (
        "string_join_three",
        {"string_left": "", "string_middle": "", "string_right": ""},
        "string_output",
        {"value"},
    ),
    ("string_split", {"string": "", "delimiter": ""}, "string_2_output", {"string_1", "string_2"}),
    ("string_split_neg", {"string": ""}, "string_pos_neg_output", {"positive_string", "negative_string"}),
    (
        "string_replace",
        {"string": "", "search_string": "", "replace_string": "", "use_regex": False},
        "string_output",
        {"value"},
    ),
]


@pytest.mark.parametrize("spec", INVOKEAI_STRING_NODES, ids=lambda spec: spec[0])
def test_string_node_matches_invokeai(
    spec: tuple[str, dict[str, Any], str, set[str]], check_invokeai_node: CheckInvokeAINode
) -> None:
    check_invokeai_node(*spec)


def test_string_join(make_context: MakeContext) -> None:
    node = StringJoinInvocation(string_left="sunny ", string_right="beach")
    assert node.invoke(make_context(node)).model_dump() == {"type": "string_output", "value": "sunny beach"}


def test_string_join_three(make_context: MakeContext) -> None:
    node = StringJoinThreeInvocation(string_left="a", string_middle=", ", string_right="b")
    assert node.invoke(make_context(node)).value == "a, b"


@pytest.mark.parametrize(
    ("string", "delimiter", "first", "second"),
    [
        ("a,b,c", ",", "a", "b,c"),
        ("a, b", ", ", "a", "b"),
        (",x", ",", "", "x"),
        ("x,", ",", "x", ""),
        ("abc", ",", "abc", ""),
        ("", ",", "", ""),
        # A blank delimiter splits at the first run of whitespace.
        ("hello big  world", "", "hello", "big  world"),
        ("hello \t world", "", "hello", "world"),
        ("  leading", "", "leading", ""),
        ("", "", "", ""),
    ],
)
def test_string_split(string: str, delimiter: str, first: str, second: str, make_context: MakeContext) -> None:
    node = StringSplitInvocation(string=string, delimiter=delimiter)
    output = node.invoke(make_context(node))
    assert output.model_dump() == {"type": "string_2_output", "string_1": first, "string_2": second}


@pytest.mark.parametrize(
    ("string", "positive", "negative"),
    [
        ("a [b] c", "a  c", " b"),
        ("photo [blurry], sharp [low quality]", "photo , sharp ", " blurry low quality"),
        ("no brackets", "no brackets", ""),
        ("a [b [c] d] e", "a  e", " b  c d"),
        # A backslash escapes a bracket and is kept.
        (r"a \[b\] c", r"a \[b\] c", ""),
        (r"\\[x]", "\\\\", " x"),
        # An unmatched ']' makes the depth negative, as in InvokeAI.
        ("a]b[c]d", "abcd", " "),
        ("[only negative]", "", " only negative"),
    ],
)
def test_string_split_neg(string: str, positive: str, negative: str, make_context: MakeContext) -> None:
    node = StringSplitNegInvocation(string=string)
    output = node.invoke(make_context(node))
    assert output.model_dump() == {
        "type": "string_pos_neg_output",
        "positive_string": positive,
        "negative_string": negative,
    }


@pytest.mark.parametrize(
    ("string", "search", "replace", "use_regex", "expected"),
    [
        # Plain text is matched in any case and inserted as is.
        ("The cat and the Cat", "cat", "dog", False, "The dog and the dog"),
        ("a.b.c", ".", "-", False, "a-b-c"),
        ("dir/file", "/", "\\", False, "dir\\file"),
        ("x", "x", r"\1", False, r"\1"),
        ("unchanged", "", "anything", False, "unchanged"),
        # A regular expression is case-sensitive and may refer to its groups.
        ("a1b22c333", r"\d+", "#", True, "a#b#c#"),
        ("Cat cat", "cat", "dog", True, "Cat dog"),
        ("John Smith", r"(\w+) (\w+)", r"\2, \1", True, "Smith, John"),
        ("unchanged", "", "anything", True, "unchanged"),
    ],
)
def test_string_replace(
    string: str, search: str, replace: str, use_regex: bool, expected: str, make_context: MakeContext
) -> None:
    node = StringReplaceInvocation(string=string, search_string=search, replace_string=replace, use_regex=use_regex)
    assert node.invoke(make_context(node)).value == expected


@pytest.mark.parametrize(
    ("search", "replace", "message"),
    [
        ("(", "x", "search_string is not a valid regular expression"),
        ("(a)", r"\3", "replace_string is not a valid replacement"),
    ],
)
def test_string_replace_refuses_a_bad_regular_expression(
    search: str, replace: str, message: str, make_context: MakeContext
) -> None:
    node = StringReplaceInvocation(string="abc", search_string=search, replace_string=replace, use_regex=True)
    with pytest.raises(ValueError, match=message):
        node.invoke(make_context(node))


def test_a_regular_expression_that_backtracks_without_end_fails_within_its_time_budget(
    make_context: MakeContext, tmp_path: Path
) -> None:
    # Some 2**40 steps to fail to match: hours, without the budget.
    node = StringReplaceInvocation(string="a" * 40 + "b", search_string="(a|a)+$", replace_string="", use_regex=True)
    context = dataclasses.replace(make_context(node), config=load_config(tmp_path, regex_timeout_s=0.2))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"regex_timeout_s \(0.2 s\)"):
        node.invoke(context)
    assert time.monotonic() - started < 5
