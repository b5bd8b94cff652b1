from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.app.api.queue_api_helpers import enqueue, wait
from tests.conftest import LiveServer
from tests.helpers import graph_json

StartServer = Callable[..., LiveServer]


def test_custom_node_packs_are_loaded_and_broken_ones_skipped(
    live_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes_dir = tmp_path / "root0" / "nodes"
    (nodes_dir / "greeting_pack").mkdir(parents=True)
    (nodes_dir / "greeting_pack" / "__init__.py").write_text("from .nodes import GreetInvocation\n")
    (nodes_dir / "greeting_pack" / "nodes.py").write_text(
        "from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation\n"
        "from nodeloom.app.invocations.fields import InputField\n"
        "from nodeloom.app.invocations.primitives import StringOutput\n\n"
        "@invocation('test_pack_greet', title='Greet')\n"
        "class GreetInvocation(BaseInvocation):\n"
        "    name: str = InputField(default='world')\n\n"
        "    def invoke(self, context) -> StringOutput:\n"
        "        return StringOutput(value=f'hello {self.name}')\n"
    )
    (nodes_dir / "broken.py").write_text("raise RuntimeError('this pack is broken')\n")
    server = live_server()
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default") as c:
        result = enqueue(c, graph_json([{"id": "g", "type": "test_pack_greet", "name": "loom"}]))
        assert wait(c, result["batch"]["batch_id"])["items"][0]["outputs"]["g"][0]["value"] == "hello loom"
    assert "test_pack_greet" in httpx.get(f"{server.url}/openapi.json").text
    [skipped] = [record for record in caplog.records if "broken.py" in record.getMessage()]
    assert skipped.levelname == "ERROR" and skipped.exc_text and "this pack is broken" in skipped.exc_text
