from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from nodeloom.app.invocations.baseinvocation import BaseInvocation, registry
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData

MakeContext = Callable[[BaseInvocation], InvocationContext]
CheckInvokeAINode = Callable[[str, dict[str, Any], str, set[str]], None]


@pytest.fixture
def make_context() -> MakeContext:
    """Builds the context the engine would hand `node.invoke`, for calling a node directly."""

    def build(node: BaseInvocation) -> InvocationContext:
        data = InvocationContextData(invocation=node, source_invocation_id=node.id, session_id="test-session")
        return InvocationContext(data=data)

    return build


@pytest.fixture
def check_invokeai_node() -> CheckInvokeAINode:
    """Checks a node type against InvokeAI's: its inputs and their defaults, its output type and fields.

    Also validates the node as it appears in an InvokeAI graph (every field spelled out) and round-trips it
    through JSON.
    """

    def check(type_: str, defaults: dict[str, Any], output_type: str, output_fields: set[str]) -> None:
        cls = registry.get_invocation(type_)
        assert set(cls.inputs()) == set(defaults)

        bare = registry.validate_invocation({"id": "bare", "type": type_})
        assert {name: getattr(bare, name) for name in defaults} == defaults

        shaped = {"id": f"{type_}-1", "type": type_, "is_intermediate": True, "use_cache": False, **defaults}
        node = registry.validate_invocation(shaped)
        assert type(node) is cls
        assert node.model_dump() == shaped
        assert registry.validate_invocation(json.loads(node.model_dump_json())) == node

        output = cls.output_class()
        assert output.output_type == output_type
        assert registry.get_output(output_type) is output
        assert set(output.output_fields()) == output_fields

    return check
