"""`nodeloom serve` as a user runs it: a real process, stopped with Ctrl-C while a session runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.helpers import free_port, graph_json, wait_for

# A node pack in the root's nodes/ folder: the server process knows no test node types otherwise.
SLOW_PACK = """
import time

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.primitives import IntegerOutput


@invocation("pack_slow", use_cache=False)
class SlowInvocation(BaseInvocation):
    def invoke(self, context) -> IntegerOutput:
        while not context.util.is_canceled():
            time.sleep(0.01)
        return IntegerOutput(value=0)
"""


def test_ctrl_c_stops_cleanly_and_leaves_nothing_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "slow.py").write_text(SLOW_PACK)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NODELOOM_PROCESSOR_POLL_INTERVAL_S": "0.05"},
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, what="the server to answer")
        queue = f"{url}/api/v1/queue/default"
        batch = {"batch": {"graph": graph_json([{"id": "slow", "type": "pack_slow"}])}}
        (item_id,) = httpx.post(f"{queue}/enqueue_batch", json=batch).json()["item_ids"]
        wait_for(lambda: httpx.get(f"{queue}/i/{item_id}").json()["status"] == "in_progress", what="the run")
        started = time.monotonic()
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
        assert server.returncode == 0, output
        assert time.monotonic() - started < 15
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    with sqlite3.connect(root / "databases" / "nodeloom.db") as db:
        statuses = db.execute("SELECT status, error_type FROM session_queue").fetchall()
    db.close()
    assert statuses == [("failed", "Interrupted")]


def serve_output(tmp_path: Path, host: str, env: dict[str, str]) -> str:
    """What `nodeloom serve --host HOST` prints until it answers, and as it stops on Ctrl-C."""
    port = free_port()
    root = tmp_path / "root"
    server = subprocess.Popen(
        [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, what="the server to answer")
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return output


def test_binding_beyond_this_machine_without_tokens_warns(tmp_path: Path) -> None:
    output = serve_output(tmp_path, "0.0.0.0", {})
    assert "nodeloom is bound to 0.0.0.0, reachable from other machines, without tokens" in output
    assert "nodeloom tokens create NAME" in output
    with_token = serve_output(tmp_path, "0.0.0.0", {"NODELOOM_AUTH_TOKENS": '["a-token-for-the-tests-0123456789"]'})
    assert "without tokens" not in with_token and "serving root" in with_token
    on_loopback = serve_output(tmp_path, "127.0.0.1", {})
    assert "without tokens" not in on_loopback and "serving root" in on_loopback
