"""A node pack the e2e server loads from its root's nodes/ folder: the server process knows no test node types."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import InputField
from nodeloom.app.invocations.primitives import IntegerOutput

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation("e2e_wait", use_cache=False)
class WaitInvocation(BaseInvocation):
    """Runs for `seconds`, reporting progress ten times a second; a cancel stops it at the next report."""

    seconds: float = InputField(default=60.0)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < self.seconds:
            context.util.signal_progress(f"waited {elapsed:.0f} s of {self.seconds:.0f}", elapsed / self.seconds)
            time.sleep(0.1)
        return IntegerOutput(value=0)
