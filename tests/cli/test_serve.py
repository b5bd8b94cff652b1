"""`nodeloom serve` as a user runs it: a real process, stopped with Ctrl-C or SIGTERM while a session runs."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import tests.nodes
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

STUBBORN_GRAPH = graph_json([{"id": "stubborn", "type": "test_stubborn", "seconds": 600}])
ADD_GRAPH = graph_json([{"id": "sum", "type": "add", "a": 1, "b": 2}])


class Served:
    """A `nodeloom serve` process on a root, its output gathered line by line as it comes."""

    def __init__(self, root: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.queue = f"{self.url}/api/v1/queue/default"
        env = {f"NODELOOM_{name.upper()}": value for name, value in settings.items()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NODELOOM_PROCESSOR_POLL_INTERVAL_S": "0.05", **env},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited: {self.output()}")
        try:
            return httpx.get(f"{self.url}/health").status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return "".join(self.lines)

    def enqueue_running(self, graph: dict[str, Any]) -> tuple[str, int]:
        """Enqueues `graph` and waits until it runs; its batch id and item id."""
        result = httpx.post(f"{self.queue}/enqueue_batch", json={"batch": {"graph": graph}}).json()
        (item_id,) = result["item_ids"]
        wait_for(lambda: httpx.get(f"{self.queue}/i/{item_id}").json()["status"] == "in_progress", what="the run")
        return result["batch"]["batch_id"], item_id

    def wait_exit(self, timeout: float) -> int:
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait_exit(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def serving(root: Path, **settings: str) -> Iterator[Served]:
    served = Served(root, **settings)
    try:
        wait_for(served.healthy, timeout=30, what="the server to answer")
        yield served
    finally:
        served.close()


def make_root(tmp_path: Path) -> Path:
    """A root whose nodes/ folder holds the SLOW_PACK and, as a node pack, the tests' own node types."""
    root = tmp_path / "root"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "slow.py").write_text(SLOW_PACK)
    shutil.copy(tests.nodes.__file__, root / "nodes" / "test_nodes.py")
    return root


def statuses(root: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(root / "databases" / "nodeloom.db") as db:
        rows = db.execute("SELECT status, error_type FROM session_queue ORDER BY item_id").fetchall()
    db.close()
    return rows


def test_ctrl_c_stops_cleanly_and_leaves_nothing_in_progress(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with serving(root) as served:
        served.enqueue_running(graph_json([{"id": "slow", "type": "pack_slow"}]))
        started = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        assert served.wait_exit(timeout=30) == 0, served.output()
        assert time.monotonic() - started < 15
    assert statuses(root) == [("failed", "Interrupted")]


def test_sigterm_ends_within_the_shutdown_timeout_whatever_clients_and_nodes_do(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    shutdown_timeout_s = 4.0
    with serving(root, shutdown_timeout_s=str(shutdown_timeout_s)) as served:
        batch_id, item_id = served.enqueue_running(STUBBORN_GRAPH)
        answers: list[tuple[float, httpx.Response]] = []
        sent = threading.Event()

        def long_poll() -> None:
            with httpx.Client(event_hooks={"request": [lambda request: sent.set()]}) as client:
                response = client.get(f"{served.queue}/b/{batch_id}/wait", params={"timeout": 600}, timeout=600)
                answers.append((time.monotonic(), response))

        waiter = threading.Thread(target=long_poll)
        waiter.start()
        sent.wait(10)
        time.sleep(0.5)  # for the request to reach the server: nothing outside it can tell when it has
        signaled = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        # uvicorn raises the signal again once it has shut down, so the process ends as SIGTERM's.
        assert served.wait_exit(timeout=shutdown_timeout_s + 10) == -signal.SIGTERM, served.output()
        exited = time.monotonic()
        waiter.join(timeout=5)
        assert exited - signaled < shutdown_timeout_s + 2, served.output()
        [(answered, answer)] = answers
        assert answer.status_code == 503 and "shutting down" in answer.json()["detail"]
        assert answered - signaled < shutdown_timeout_s / 2  # at once, not after the processor gave up
        assert "did not stop within" in served.output()
    # The node never stopped: its item was left in progress, as after kill -9, and recovery ends it.
    assert statuses(root) == [("in_progress", None)]
    with serving(root) as served:
        item = httpx.get(f"{served.queue}/i/{item_id}").json()
        assert (item["status"], item["error_type"]) == ("failed", "Interrupted")
        served.process.send_signal(signal.SIGINT)
        assert served.wait_exit(timeout=30) == 0, served.output()


def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    with serving(root, shutdown_timeout_s="600") as served:
        served.enqueue_running(STUBBORN_GRAPH)
        served.process.send_signal(signal.SIGINT)
        wait_for(lambda: "Waiting for the node running item" in served.output(), what="the shutdown to wait on it")
        again = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        assert served.wait_exit(timeout=30) == 128 + signal.SIGINT, served.output()
        assert time.monotonic() - again < 5
        assert "A second SIGINT: exiting at once" in served.output()
    assert statuses(root) == [("in_progress", None)]


def test_binding_beyond_this_machine_without_tokens_warns(tmp_path: Path) -> None:
    def output_of(**settings: str) -> str:
        with serving(tmp_path / "root", **settings) as served:
            served.process.send_signal(signal.SIGINT)
            served.wait_exit(timeout=30)
            return served.output()

    output = output_of(host="0.0.0.0")
    assert "nodeloom is bound to 0.0.0.0, reachable from other machines, without tokens" in output
    assert "nodeloom tokens create NAME" in output
    with_token = output_of(host="0.0.0.0", auth_tokens='["a-token-for-the-tests-0123456789"]')
    assert "without tokens" not in with_token and "serving root" in with_token
    on_loopback = output_of(host="127.0.0.1")
    assert "without tokens" not in on_loopback and "serving root" in on_loopback


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://someone:secret@db/nodeloom", "database_url must be empty (the SQLite file in the root) or a"),
        ("host=db password=secret", "database_url must be empty (the SQLite file in the root) or a"),
        ("postgresql://postgres@127.0.0.1:1/nodeloom", "Cannot connect to PostgreSQL at 127.0.0.1:1/nodeloom"),
    ],
)
def test_a_wrong_database_url_is_one_line_and_a_failed_start(tmp_path: Path, url: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nodeloom", "serve", "--root", str(tmp_path), "--port", str(free_port()), "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.startswith(f"nodeloom serve: {says}") and done.stderr.count("\n") == 1, done.stderr
    assert "secret" not in done.stderr


def test_a_root_on_postgresql_runs_its_sessions_there(tmp_path: Path, postgres_url: str) -> None:
    root = make_root(tmp_path)
    with serving(root, database_url=postgres_url) as served:
        result = httpx.post(f"{served.queue}/enqueue_batch", json={"batch": {"graph": ADD_GRAPH}}).json()
        (item_id,) = result["item_ids"]
        wait_for(lambda: httpx.get(f"{served.queue}/i/{item_id}").json()["status"] == "completed", what="the run")
    assert not (root / "databases").exists()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT status FROM session_queue WHERE item_id = %s", (item_id,)).fetchall() == [
            ("completed",)
        ]
