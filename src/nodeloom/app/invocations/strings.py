"""String nodes: join, split and replace, with InvokeAI's type strings, field names and results."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import regex

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    describe_node,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import InputField, OutputField
from nodeloom.app.invocations.limits import check_limit
from nodeloom.app.invocations.primitives import StringOutput
from nodeloom.app.services.config.config_default import NodeloomConfig

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation_output("string_2_output")
class String2Output(BaseInvocationOutput):
    """Two strings."""

    string_1: str = OutputField(description="The first string")
    string_2: str = OutputField(description="The second string")


@invocation_output("string_pos_neg_output")
class StringPosNegOutput(BaseInvocationOutput):
    """A positive and a negative prompt."""

    positive_string: str = OutputField(description="The text outside square brackets")
    negative_string: str = OutputField(description="The text inside square brackets")


@invocation("string_join", title="String Join", tags=["string", "join"], category="string", version="1.0.0")
class StringJoinInvocation(BaseInvocation):
    """Appends the right string to the left one."""

    string_left: str = InputField(default="", description="The string that comes first")
    string_right: str = InputField(default="", description="The string that comes last")

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=self.string_left + self.string_right)


@invocation(
    "string_join_three",
    title="String Join Three",
    tags=["string", "join"],
    category="string",
    version="1.0.0",
)
class StringJoinThreeInvocation(BaseInvocation):
    """Joins three strings: left, middle, right."""

    string_left: str = InputField(default="", description="The string that comes first")
    string_middle: str = InputField(default="", description="The string that comes second")
    string_right: str = InputField(default="", description="The string that comes last")

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=self.string_left + self.string_middle + self.string_right)


@invocation("string_split", title="String Split", tags=["string", "split"], category="string", version="1.0.0")
class StringSplitInvocation(BaseInvocation):
    """Splits a string in two at its first delimiter, which is dropped; with none, the second is empty."""

    string: str = InputField(default="", description="The string to split")
    delimiter: str = InputField(
        default="",
        description="Where to split; left blank, the first run of whitespace (leading whitespace dropped)",
    )

    def invoke(self, context: InvocationContext) -> String2Output:
        # None rather than "": str.split refuses an empty separator, and None splits on whitespace.
        parts = self.string.split(self.delimiter or None, 1)
        first, second = (*parts, "", "")[:2]
        return String2Output(string_1=first, string_2=second)


def split_negative(text: str) -> tuple[str, str]:
    """The text outside `[...]` and the text inside, as InvokeAI's `string_split_neg` splits them.

    Each unescaped `[` adds a space to the negative text and each unescaped `]` is dropped; a backslash
    escapes the character after it and is itself kept. An unmatched `]` makes the depth negative, so the next
    `[` only brings it back to zero: InvokeAI counts this way, and a prompt must split the same in both.
    """
    positive: list[str] = []
    negative: list[str] = []
    depth = 0
    escaped = False
    for char in text:
        if escaped or char not in "[]":
            (negative if depth > 0 else positive).append(char)
        elif char == "[":
            depth += 1
            negative.append(" ")
        else:
            depth -= 1
        escaped = char == "\\" and not escaped
    return "".join(positive), "".join(negative)


@invocation(
    "string_split_neg",
    title="String Split Negative",
    tags=["string", "split", "negative"],
    category="string",
    version="1.0.0",
)
class StringSplitNegInvocation(BaseInvocation):
    """Splits a prompt into the text outside square brackets (positive) and the text inside (negative)."""

    string: str = InputField(default="", description="The prompt to split; `\\[` and `\\]` are literal brackets")

    def invoke(self, context: InvocationContext) -> StringPosNegOutput:
        positive, negative = split_negative(self.string)
        return StringPosNegOutput(positive_string=positive, negative_string=negative)


def regex_timeout_s(context: InvocationContext) -> float:
    """The `regex_timeout_s` setting, or its default for a graph run without services (`nodeloom run`)."""
    if context.config is not None:
        return context.config.regex_timeout_s
    default: float = NodeloomConfig.model_fields["regex_timeout_s"].default
    return default


@invocation(
    "string_replace",
    title="String Replace",
    tags=["string", "replace", "regex"],
    category="string",
    version="1.0.0",
)
class StringReplaceInvocation(BaseInvocation):
    """Replaces every occurrence of a search string, or of a regular expression's matches."""

    string: str = InputField(default="", description="The string to search")
    search_string: str = InputField(default="", description="What to search for; left blank, nothing is replaced")
    replace_string: str = InputField(default="", description="What to put in place of each match")
    use_regex: bool = InputField(
        default=False,
        description="Whether search_string is a regular expression (case-sensitive; replace_string may hold "
        "\\1 or \\g<name>); if not, it is plain text matched in any case",
    )

    def invoke(self, context: InvocationContext) -> StringOutput:
        if not self.search_string:
            return StringOutput(value=self.string)
        replacement: Callable[[regex.Match[str]], str]
        if not self.use_regex:
            pattern = regex.compile(regex.escape(self.search_string), regex.IGNORECASE)
            # A function replacement is inserted as is, so a backslash in plain text stays a backslash.
            replacement = lambda _match: self.replace_string  # noqa: E731
        else:
            try:
                pattern = regex.compile(self.search_string)
            except regex.error as e:
                raise ValueError(f"search_string is not a valid regular expression: {e}") from e
            replacement = lambda match: match.expand(self.replace_string)  # noqa: E731
        if context.config is not None:
            replacement = self._bounded(replacement, context.config.max_string_length)
        # `regex`, not `re`: it takes a time budget and lets go of the GIL while it matches a str. Under `re` a
        # pattern that backtracks without end, such as `(a|a)+$` on "aaaa…b", held the GIL, and so the server.
        timeout = regex_timeout_s(context)
        try:
            return StringOutput(value=pattern.sub(replacement, self.string, timeout=timeout))
        except (regex.error, IndexError) as e:
            raise ValueError(f"replace_string is not a valid replacement for this regular expression: {e}") from e
        except TimeoutError as e:
            raise TimeoutError(
                f"search_string ran longer than regex_timeout_s ({timeout} s) on this string: it backtracks too "
                "much; make its repeated parts unambiguous"
            ) from e

    def _bounded(self, replacement: Callable[[regex.Match[str]], str], limit: int) -> Callable[[regex.Match[str]], str]:
        """`replacement`, refusing to go on once the text made so far is longer than `limit`: each match may
        grow the text by a whole `replace_string`, so 100,000 matches of a 100,000-character one would make 10
        billion characters."""
        length = len(self.string)

        def bounded(match: regex.Match[str]) -> str:
            nonlocal length
            text = replacement(match)
            length += len(text) - (match.end() - match.start())
            check_limit(f"The length of the text node {describe_node(self)} makes", length, limit, "max_string_length")
            return text

        return bounded
