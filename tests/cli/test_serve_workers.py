"""`nodeloom serve` as users run it: its processors are child worker processes, one per device, that it watches.

The root's node pack tells which process ran a node, and has nodes that hold the GIL, ignore their cancel, or kill
their own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from tests.database_engines import empty_postgres_schema
from tests.helpers import graph_json, wait_for
from tests.serve_process import QueueClient, ServeProcess

from nodeloom.app.services.config.config_default import load_config

PACK = """
import os
import re
import signal
import time

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import InputField
from nodeloom.app.invocations.primitives import IntegerOutput


@invocation("whose_pid", use_cache=True)
class WhosePidInvocation(BaseInvocation):
    tag: int = InputField(default=0)

    def invoke(self, context) -> IntegerOutput:
        return IntegerOutput(value=os.getpid())


@invocation("deaf_hog", use_cache=False)
class DeafHogInvocation(BaseInvocation):
    '''Backtracks in the regex engine, which holds the GIL, and never looks at its cancel.'''

    def invoke(self, context) -> IntegerOutput:
        while True:
            re.match(r"(a+)+$", "a" * 22 + "b")


@invocation("self_kill", use_cache=False)
class SelfKillInvocation(BaseInvocation):
    '''Dies as a segfault or the out-of-memory killer would end it.'''

    def invoke(self, context) -> IntegerOutput:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("not reached")
"""


STATUS_EVENTS = "SELECT payload FROM events WHERE event_name = 'queue_item_status_changed' ORDER BY event_id"


def node(node_type: str, **fields: Any) -> dict[str, Any]:
    return graph_json([{"id": "n", "type": node_type, **fields}])


class Server:
    """`nodeloom serve` on a root with the pack; killed at the end if still running."""

    def __init__(self, root: Path, *args: str, **settings: Any) -> None:
        (root / "nodes").mkdir(parents=True, exist_ok=True)
        (root / "nodes" / "pack.py").write_text(PACK)
        self.process = ServeProcess(root, *args, **settings)
        self.queue = QueueClient(self.process.url)

    def start(self, processors: int = 1) -> Server:
        self.process.spawn()
        self.process.wait_healthy()
        wait_for(lambda: len(self.queue.alive_processors()) == processors, 60, f"{processors} worker(s) to register")
        return self

    def item(self, item_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.queue.get(f"i/{item_id}").json()
        return found

    def finished(self, item_id: int) -> dict[str, Any] | None:
        found = self.item(item_id)
        return found if found["status"] in ("completed", "failed", "canceled") else None

    def pid_of_run(self, item_id: int) -> int:
        item = wait_for(lambda: self.finished(item_id), 60, f"item {item_id} to finish")
        assert item["status"] == "completed", item
        pid: int = item["session"]["results"][item["session"]["source_prepared_mapping"]["n"][0]]["value"]
        return pid

    def close(self) -> None:
        self.queue.close()
        self.process.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(*args: str, processors: int = 1, **settings: Any) -> Server:
        server = Server(tmp_path / f"root{len(servers)}", *args, **settings)
        servers.append(server)
        return server.start(processors)

    yield start
    for server in servers:
        server.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fresh_worker(server: Server, dead: dict[str, Any]) -> dict[str, Any]:
    """The worker that took the place of `dead`, once it has registered (the dead one may stay listed a moment)."""
    (fresh,) = wait_for(
        lambda: [p for p in server.queue.alive_processors() if p["pid"] != dead["pid"]], 60, "a fresh worker"
    )
    return fresh


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_sessions_run_in_a_child_worker_process_not_the_api_process(
    serve: Any, engine: str, request: pytest.FixtureRequest
) -> None:
    settings: dict[str, Any] = {}
    if engine == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        empty_postgres_schema(url)
        settings["database_url"] = url
    server = serve(**settings)
    (worker,) = server.queue.alive_processors()
    api_pid = server.process.process.pid

    (item_id,) = server.queue.enqueue(node("whose_pid"))

    assert server.pid_of_run(item_id) == worker["pid"] != api_pid
    # The API server's view of the worker's caches and of its sessions.
    (again,) = server.queue.enqueue(node("whose_pid"))
    server.pid_of_run(again)
    cache = httpx.get(f"{server.process.url}/api/v1/app/invocation_cache/status").json()
    assert (cache["hits"], cache["misses"], cache["size"]) == (1, 1, 1)
    metrics = httpx.get(f"{server.process.url}/metrics").text
    assert 'nodeloom_sessions_total{status="completed"} 2.0' in metrics


def test_one_worker_process_runs_on_each_device(serve: Any) -> None:
    server = serve("--devices", "cpu,cpu", processors=2)
    pids = {p["pid"] for p in server.queue.alive_processors()}
    assert len(pids) == 2 and server.process.process.pid not in pids
    assert all(p["devices"] == ["cpu"] for p in server.queue.alive_processors())

    item_ids = server.queue.enqueue(node("whose_pid", tag=0), runs=1) + server.queue.enqueue(
        node("whose_pid", tag=1), runs=1
    )

    assert {server.pid_of_run(item_id) for item_id in item_ids} <= pids


@pytest.mark.parametrize(
    ("method", "path", "left"),
    [("PUT", "i/{}/cancel", "canceled"), ("DELETE", "i/{}", None), ("PUT", "clear", None)],
    ids=["cancel", "delete", "clear"],
)
def test_a_node_that_ignores_its_cancel_costs_its_worker_process_and_a_fresh_one_takes_over(
    serve: Any, method: str, path: str, left: str | None
) -> None:
    server = serve(hard_cancel_after_s=1)
    (first,) = server.queue.alive_processors()
    (hog,) = server.queue.enqueue(node("deaf_hog"))
    wait_for(lambda: server.item(hog)["status"] == "in_progress", 30, "the node to start")

    assert server.queue.request(method, path.format(hog)).status_code == 200

    wait_for(lambda: not pid_alive(first["pid"]), 30, "the worker process to be ended")
    fresh = fresh_worker(server, first)
    assert fresh["pid"] != first["pid"]
    found = server.queue.get(f"i/{hog}")
    assert found.json()["status"] == left if left else found.status_code == 404
    (after,) = server.queue.enqueue(node("whose_pid"))
    assert server.pid_of_run(after) == fresh["pid"]
    status = server.queue.get("status").json()["processor"]
    assert status["restarts"] == 1 and status["is_alive"]
    # The ended worker could not tell its session's end: the server counted it.
    metrics = httpx.get(f"{server.process.url}/metrics").text
    assert f'nodeloom_sessions_total{{status="{left or "deleted"}"}} 1.0' in metrics


def test_an_item_enqueued_after_a_clear_is_not_stopped_by_it(serve: Any) -> None:
    server = serve(hard_cancel_after_s=1)
    (worker,) = server.queue.alive_processors()
    assert server.queue.put("clear").status_code == 200
    (hog,) = server.queue.enqueue(node("deaf_hog"))
    wait_for(lambda: server.item(hog)["status"] == "in_progress", 30, "the node to start")

    time.sleep(2)  # twice hard_cancel_after_s

    assert server.item(hog)["status"] == "in_progress"
    assert pid_alive(worker["pid"])


def test_a_node_that_ignores_its_timeout_costs_its_worker_process_and_its_item_fails_as_timed_out(serve: Any) -> None:
    server = serve(hard_cancel_after_s=1)
    (first,) = server.queue.alive_processors()
    (hog,) = server.queue.enqueue(node("deaf_hog"), timeout=1)

    wait_for(lambda: server.finished(hog), 30, "the item to time out")

    wait_for(lambda: not pid_alive(first["pid"]), 30, "the worker process to be ended")
    fresh = fresh_worker(server, first)
    (after,) = server.queue.enqueue(node("whose_pid"))
    assert server.pid_of_run(after) == fresh["pid"]
    # Once the dead worker's items were recovered, the item is failed as timed out still, not as interrupted.
    item = server.item(hog)
    assert (item["status"], item["error_type"]) == ("failed", "Timeout")
    assert item["error_message"].startswith(
        "The session ran longer than its timeout of 1.0 s and was stopped; its node"
    )
    changes = [json.loads(row["payload"]) for row in server.process.query(STATUS_EVENTS)]
    assert [change["status"] for change in changes if change["item_id"] == hog] == ["in_progress", "failed"]
    assert 'nodeloom_sessions_total{status="failed"} 1.0' in httpx.get(f"{server.process.url}/metrics").text


def test_a_worker_process_that_dies_is_replaced_and_its_item_failed_as_interrupted(serve: Any) -> None:
    server = serve()
    (first,) = server.queue.alive_processors()
    (doomed,) = server.queue.enqueue(node("self_kill"))

    item = wait_for(lambda: server.finished(doomed), 60, "the dead worker's item to be recovered")

    assert (item["status"], item["error_type"]) == ("failed", "Interrupted")
    assert not pid_alive(first["pid"])
    fresh = fresh_worker(server, first)
    (after,) = server.queue.enqueue(node("whose_pid"))
    assert server.pid_of_run(after) == fresh["pid"] != first["pid"]


def test_pause_and_resume_reach_the_worker_processes(serve: Any) -> None:
    server = serve()
    assert server.queue.put("processor/pause").json()["is_processing"] is False
    (item_id,) = server.queue.enqueue(node("whose_pid"))
    time.sleep(0.5)  # ten of the worker's polls

    assert server.item(item_id)["status"] == "pending"

    assert server.queue.put("processor/resume").json()["is_processing"] is True
    server.pid_of_run(item_id)


def test_stopping_the_server_stops_its_worker_processes(serve: Any) -> None:
    server = serve()
    (worker,) = server.queue.alive_processors()

    server.process.interrupt()

    assert not pid_alive(worker["pid"])


def test_a_wrong_device_is_named_before_anything_starts(tmp_path: Path) -> None:
    for command in ("serve", "worker"):
        done = subprocess.run(
            [sys.executable, "-m", "nodeloom", command, "--root", str(tmp_path), "--devices", "cuda:0,gpu1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "argument --devices: devices are auto, cpu, mps, cuda or cuda:N" in done.stderr
        assert "got 'gpu1'" in done.stderr
    with pytest.raises(ValidationError, match="devices"):
        load_config(tmp_path, devices=["cuda:one"])
