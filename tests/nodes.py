"""Node types that exist only for the tests, registered in the global registry under `test_` names."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import Input, InputField, OutputField

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation_output("test_any_output")
class AnyOutput(BaseInvocationOutput):
    value: Any = OutputField(description="Anything")


@invocation("test_any")
class AnyValueInvocation(BaseInvocation):
    """Outputs whatever it is given, typed as Any, to reach the engine's run-time input checks."""

    value: Any = InputField(default=None)

    def invoke(self, context: InvocationContext) -> AnyOutput:
        return AnyOutput(value=self.value)


@invocation_output("test_int_output")
class IntOutput(BaseInvocationOutput):
    value: int = OutputField()


@invocation("test_needs_input")
class NeedsInputInvocation(BaseInvocation):
    """Has a required connection-only input and a required input of either kind."""

    wired: int = InputField(input=Input.Connection)
    either: int = InputField()

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.wired + self.either)


@invocation("test_int_or_list")
class IntOrListInvocation(BaseInvocation):
    """A polymorphic input: one int or a list of them."""

    values: int | list[int] = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=sum(self.values) if isinstance(self.values, list) else self.values)


@invocation("test_fail", use_cache=False)
class FailInvocation(BaseInvocation):
    """Raises with its message."""

    message: str = InputField(default="boom")

    def invoke(self, context: InvocationContext) -> IntOutput:
        raise RuntimeError(self.message)


@invocation("test_exit", use_cache=False)
class ExitInvocation(BaseInvocation):
    """Calls `sys.exit` with its message, as a node that thinks it is a script does."""

    message: str = InputField(default="bye")

    def invoke(self, context: InvocationContext) -> IntOutput:
        sys.exit(self.message)


@invocation("test_stubborn", use_cache=False)
class StubbornInvocation(BaseInvocation):
    """Runs for `seconds` without ever checking for cancellation, as a badly written node does."""

    seconds: float = InputField(default=60.0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return IntOutput(value=0)


@invocation_output("test_int_collection_output")
class IntCollectionOutput(BaseInvocationOutput):
    collection: list[int] = OutputField()


@invocation("test_repeat")
class RepeatInvocation(BaseInvocation):
    """`times` copies of `value`: a collection whose size is decided upstream, possibly empty."""

    value: int = InputField(default=0)
    times: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntCollectionOutput:
        return IntCollectionOutput(collection=[self.value] * self.times)


@invocation("test_wait", use_cache=False)
class WaitInvocation(BaseInvocation):
    """Runs for `seconds`, checking for cancellation every `step` seconds like a long node should."""

    seconds: float = InputField(default=5.0)
    step: float = InputField(default=0.002)

    def invoke(self, context: InvocationContext) -> IntOutput:
        deadline = time.monotonic() + self.seconds
        steps = 0
        while time.monotonic() < deadline:
            if context.util.is_canceled():
                STOPPED_AT.append(time.monotonic())
                return IntOutput(value=steps)
            time.sleep(self.step)
            steps += 1
        return IntOutput(value=steps)


@invocation("test_progress", use_cache=False)
class ProgressInvocation(BaseInvocation):
    """Reports progress `steps` times; a cancel stops it through `signal_progress`."""

    steps: int = InputField(default=3)
    step_seconds: float = InputField(default=0.0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        for step in range(self.steps):
            context.util.signal_progress(f"step {step + 1} of {self.steps}", (step + 1) / self.steps)
            time.sleep(self.step_seconds)
        return IntOutput(value=self.steps)


INVOKED: list[str] = []
"""The source ids of `test_count` nodes, in the order they were invoked."""

STOPPED_AT: list[float] = []
"""When `test_wait` nodes saw a cancel (time.monotonic())."""


@invocation("test_count")
class CountInvocation(BaseInvocation):
    """Records each call in `INVOKED`, to tell a cache hit or a resumed session from a rerun."""

    value: int = InputField(default=0)
    label: str = InputField(default="")

    def invoke(self, context: InvocationContext) -> IntOutput:
        INVOKED.append(self.label)
        return IntOutput(value=self.value)


@invocation("test_huge_int", use_cache=False)
class HugeIntInvocation(BaseInvocation):
    """Outputs 10 ** `digits`, unchecked: past about 4,300 digits no JSON parser reads the number back."""

    digits: int = InputField(default=5000)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=10**self.digits)


@invocation("test_ctrl_c", use_cache=False)
class CtrlCInvocation(BaseInvocation):
    """Raises `KeyboardInterrupt`, as Ctrl-C does in whatever runs on the main thread."""

    def invoke(self, context: InvocationContext) -> IntOutput:
        raise KeyboardInterrupt
