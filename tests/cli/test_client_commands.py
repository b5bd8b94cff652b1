"""`nodeloom enqueue`, `queue` and `stats`, run as subprocesses against a real server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from rich.progress import Progress
from tests.conftest import LiveServer
from tests.helpers import edge, free_port, graph_json

from nodeloom.cli.enqueue import BatchWatcher
from nodeloom.cli.queue import processor_line

ADD_GRAPH = graph_json(
    [{"id": "i", "type": "integer", "value": 3}, {"id": "a", "type": "add", "b": 4}],
    [edge("i", "value", "a", "a")],
)
DIV_BY_ZERO_GRAPH = graph_json(
    [
        {"id": "seven", "type": "integer", "value": 7},
        {"id": "zero", "type": "integer", "value": 0},
        {"id": "d", "type": "div"},
    ],
    [edge("seven", "value", "d", "a"), edge("zero", "value", "d", "b")],
)


class Server:
    """A real nodeloom server; `api` is an HTTP client on it for checking what the CLI did."""

    def __init__(self, url: str, api: httpx.Client) -> None:
        self.url = url
        self.api = api

    def cli(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return nodeloom(*args, "--url", self.url, timeout=timeout)

    def get(self, path: str) -> Any:
        response = self.api.get(f"/api/v1/queue/default{path}")
        response.raise_for_status()
        return response.json()


def nodeloom(
    *args: str | Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # stdin is not a terminal, as in CI: the interrupt path must not ask.
    return subprocess.run(
        [sys.executable, "-m", "nodeloom", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> Iterator[Server]:
    url = live_server().url
    with httpx.Client(base_url=url, timeout=10) as api:
        yield Server(url, api)


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def enqueued_ids(stdout: str) -> tuple[str, list[int]]:
    """The batch id and item ids from `enqueue`'s readable first line."""
    first = stdout.splitlines()[0]
    assert first.startswith("batch "), stdout
    batch_id = first.split()[1].rstrip(":")
    return batch_id, [int(i) for i in first.rpartition(": ")[2].split(", ")]


def test_enqueue_wait_prints_outputs(server: Server, tmp_path: Path) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait")
    assert result.returncode == 0, result.stderr
    batch_id, item_ids = enqueued_ids(result.stdout)
    assert len(item_ids) == 1
    assert f"item {item_ids[0]}: completed" in result.stdout
    assert "  a: value=7" in result.stdout
    assert "  i: value=3" in result.stdout
    assert server.get(f"/b/{batch_id}/status")["completed"] == 1


def test_enqueue_data_and_runs_expand(server: Server, tmp_path: Path) -> None:
    data = [[{"node_path": "i", "field_name": "value", "items": [1, 2, 3]}]]
    graph = write(tmp_path, "g.json", ADD_GRAPH)
    data_file = write(tmp_path, "data.json", data)

    result = server.cli("enqueue", graph, "--data", data_file, "--runs", "2", "--json")
    assert result.returncode == 0, result.stderr
    enqueued = json.loads(result.stdout)
    assert enqueued["enqueued"] == 6
    assert len(enqueued["item_ids"]) == 6

    result = server.cli("enqueue", graph, "--data", data_file, "--runs", "2", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    waited = json.loads(result.stdout)
    assert waited["finished"] is True
    assert sorted(item["outputs"]["a"][0]["value"] for item in waited["items"]) == [5, 5, 6, 6, 7, 7]


def test_enqueue_says_how_many_of_the_sessions_fit(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    live = live_server(max_queue_size=2)
    with httpx.Client(base_url=live.url, timeout=10) as api:
        server = Server(live.url, api)
        api.put("/api/v1/queue/default/processor/pause")
        graph = write(tmp_path, "g.json", ADD_GRAPH)

        refused = server.cli("enqueue", graph, "--runs", "3", "--all-or-nothing")
        assert refused.returncode == 1
        assert "room for 2 of the batch's 3 sessions" in refused.stderr
        part = server.cli("enqueue", graph, "--runs", "3")
        assert part.returncode == 0, part.stderr
        assert "enqueued 2 items of 3 requested" in part.stdout
        assert len(enqueued_ids(part.stdout)[1]) == 2
        full = server.cli("enqueue", graph)
        assert full.returncode == 1 and "is full" in full.stderr


def test_failing_graph_exits_1_and_shows_the_error(server: Server, tmp_path: Path) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", DIV_BY_ZERO_GRAPH), "--wait")
    assert result.returncode == 1
    _, [item_id] = enqueued_ids(result.stdout)
    assert f"item {item_id}: failed" in result.stdout
    assert f"item {item_id}: error: ValueError: b must not be 0: cannot divide by zero" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), ([1, 2], "must hold a graph object")],
)
def test_invalid_graph_file_exits_2(server: Server, tmp_path: Path, content: object, message: str) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", content))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert server.get("/list")["items"] == []


def test_missing_graph_or_bad_data_file_exits_2(server: Server, tmp_path: Path) -> None:
    missing = server.cli("enqueue", tmp_path / "nowhere.json")
    assert missing.returncode == 2
    assert "Cannot read" in missing.stderr

    graph = write(tmp_path, "g.json", ADD_GRAPH)
    bad_data = server.cli("enqueue", graph, "--data", write(tmp_path, "d.json", {"i": [1]}))
    assert bad_data.returncode == 2
    assert "must hold a list of lists" in bad_data.stderr

    bad_runs = server.cli("enqueue", graph, "--runs", "0")
    assert bad_runs.returncode == 2
    assert "must be above 0" in bad_runs.stderr


def test_invalid_graph_exits_1_with_the_servers_message(server: Server, tmp_path: Path) -> None:
    graph = graph_json(
        [{"id": "s", "type": "string", "value": "x"}, {"id": "a", "type": "add"}], [edge("s", "value", "a", "a")]
    )
    result = server.cli("enqueue", write(tmp_path, "g.json", graph), "--wait")
    assert result.returncode == 1
    assert "422" in result.stderr
    assert "input 'a' of node 'a'" in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_data_the_server_refuses_exits_1(server: Server, tmp_path: Path) -> None:
    data = [[{"node_path": "ghost", "field_name": "value", "items": [1]}]]
    result = server.cli("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--data", write(tmp_path, "d.json", data))
    assert result.returncode == 1
    assert "422" in result.stderr
    assert "node 'ghost'" in result.stderr


def test_queue_commands(server: Server, tmp_path: Path) -> None:
    graph = write(tmp_path, "g.json", ADD_GRAPH)
    paused = server.cli("queue", "pause")
    assert (paused.returncode, paused.stdout.strip()) == (0, "processor: paused")

    enqueued = server.cli("enqueue", graph, "--runs", "3")
    assert enqueued.returncode == 0, enqueued.stderr
    batch_id, (first, second, third) = enqueued_ids(enqueued.stdout)

    status = server.cli("queue", "status")
    assert status.returncode == 0, status.stderr
    assert "3 pending" in status.stdout
    assert "processor: paused" in status.stdout
    status_json = json.loads(server.cli("queue", "status", "--json").stdout)
    assert status_json["queue"]["pending"] == 3
    assert status_json["processor"]["is_processing"] is False

    listing = server.cli("queue", "list")
    assert listing.returncode == 0, listing.stderr
    assert batch_id in listing.stdout
    assert listing.stdout.count("pending") == 3
    limited = json.loads(server.cli("queue", "list", "--limit", "2", "--status", "pending", "--json").stdout)
    assert [item["item_id"] for item in limited["items"]] == [first, second]
    assert limited["has_more"] is True

    shown = server.cli("queue", "show", str(first))
    assert shown.returncode == 0, shown.stderr
    assert f"item {first}: pending" in shown.stdout
    assert f"batch: {batch_id}" in shown.stdout
    assert json.loads(server.cli("queue", "show", str(first), "--json").stdout)["session"]["graph"]["nodes"]["a"]

    canceled = server.cli("queue", "cancel", str(first))
    assert (canceled.returncode, canceled.stdout.strip()) == (0, f"item {first}: canceled")
    assert server.get(f"/i/{first}")["status"] == "canceled"

    canceled_batch = server.cli("queue", "cancel-batch", batch_id)
    assert canceled_batch.returncode == 0, canceled_batch.stderr
    assert canceled_batch.stdout.strip() == f"canceled 2 items of batch {batch_id}"
    assert {server.get(f"/i/{i}")["status"] for i in (second, third)} == {"canceled"}

    pruned = server.cli("queue", "prune")
    assert (pruned.returncode, pruned.stdout.strip()) == (0, "deleted 3 finished items from queue default")

    assert server.cli("enqueue", graph, "--runs", "2").returncode == 0
    cleared = server.cli("queue", "clear")
    assert (cleared.returncode, cleared.stdout.strip()) == (0, "deleted 2 items from queue default")
    assert server.get("/list")["items"] == []

    resumed = server.cli("queue", "resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["is_processing"] is True


def test_show_and_cancel_of_an_unknown_item_exit_1(server: Server) -> None:
    for action in ("show", "cancel"):
        result = server.cli("queue", action, "999")
        assert result.returncode == 1
        assert "404" in result.stderr
        assert "999" in result.stderr
        assert "Traceback" not in result.stderr


def test_show_prints_outputs_and_errors(server: Server, tmp_path: Path) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", DIV_BY_ZERO_GRAPH), "--wait")
    _, [item_id] = enqueued_ids(result.stdout)
    shown = server.cli("queue", "show", str(item_id))
    assert shown.returncode == 0, shown.stderr
    assert f"item {item_id}: failed" in shown.stdout
    assert "error: ValueError: b must not be 0" in shown.stdout
    assert "  seven: value=7" in shown.stdout


def test_stats_prints_the_table(server: Server, tmp_path: Path) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait")
    assert result.returncode == 0, result.stderr
    _, [item_id] = enqueued_ids(result.stdout)

    stats = server.cli("stats", str(item_id))
    assert stats.returncode == 0, stats.stderr
    rows = {line.split()[0]: line.split() for line in stats.stdout.splitlines() if line.strip()}
    assert rows["Node"][:2] == ["Node", "type"]
    assert rows["integer"][1] == rows["add"][1] == "1"
    assert rows["Total"][1] == "2"
    assert "Model cache:" in stats.stdout

    stats_json = json.loads(server.cli("stats", str(item_id), "--json").stdout)
    assert {node["node_type"] for node in stats_json["node_stats"]} == {"integer", "add"}


def test_stats_of_an_item_that_never_ran_exits_1(server: Server, tmp_path: Path) -> None:
    server.cli("queue", "pause")
    _, [item_id] = enqueued_ids(server.cli("enqueue", write(tmp_path, "g.json", ADD_GRAPH)).stdout)
    result = server.cli("stats", str(item_id))
    assert result.returncode == 1
    assert "no stats yet" in result.stderr


def test_unreachable_server_gives_a_clear_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("queue", "status"), ("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait"), ("stats", "1")):
        result = nodeloom(*args, "--url", url)
        assert result.returncode == 1, args
        assert f"cannot reach the nodeloom server at {url}" in result.stderr
        assert "is `nodeloom serve` running?" in result.stderr
        assert "Traceback" not in result.stderr


def test_interrupt_while_waiting_cancels_the_batch(server: Server, tmp_path: Path) -> None:
    assert server.cli("queue", "pause").returncode == 0
    graph = write(tmp_path, "g.json", ADD_GRAPH)
    process = subprocess.Popen(
        [sys.executable, "-m", "nodeloom", "enqueue", graph, "--runs", "50", "--wait", "--url", server.url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        batch_id, item_ids = enqueued_ids(process.stdout.readline())
        assert len(item_ids) == 50
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert f"Canceled 50 items of batch {batch_id}" in stderr
    assert "Traceback" not in stderr
    batch = server.get(f"/b/{batch_id}/status")
    assert (batch["canceled"], batch["total"]) == (50, 50)


def test_wait_follows_live_events(server: Server, tmp_path: Path) -> None:
    result = server.cli("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait")
    assert result.returncode == 0, result.stderr
    assert "No live progress" not in result.stderr
    assert "item 1: completed" in result.stderr  # the bar's final state
    assert "  a: value=7" in result.stdout


def test_wait_without_a_socket_polls_the_server(server: Server, tmp_path: Path) -> None:
    # socket.io's client goes without websockets when their package cannot be imported.
    write(tmp_path, "websocket.py", "raise ImportError('hidden by the test')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = nodeloom("enqueue", write(tmp_path, "g.json", ADD_GRAPH), "--wait", "--url", server.url, env=env)
    assert result.returncode == 0, result.stderr
    assert "No live progress" in result.stderr
    assert "item 1: completed" in result.stdout
    assert "  a: value=7" in result.stdout


def test_batch_watcher_follows_node_events() -> None:
    progress = Progress(console=Console(file=io.StringIO()))
    watcher = BatchWatcher(progress, "b1", node_count=2)
    watcher.add_items([1, 2])
    node = {"batch_id": "b1", "item_id": 1, "invocation_source_id": "den", "invocation": {"type": "denoise"}}
    first, second = progress.tasks

    watcher.on_event("invocation_started", node)
    assert (first.description, first.completed) == ("item 1: den (denoise)", 0)
    watcher.on_event("invocation_progress", {**node, "message": "step 3 of 4", "percentage": 0.75})
    assert (first.description, first.completed) == ("item 1: den (denoise) step 3 of 4", 0.75)
    watcher.on_event("invocation_complete", node)
    assert first.completed == 1
    watcher.on_event("invocation_started", {**node, "batch_id": "another batch"})
    assert first.completed == 1

    watcher.on_event("queue_item_status_changed", {"batch_id": "b1", "item_id": 1, "status": "failed"})
    assert (first.description, first.completed) == ("item 1: [red]failed[/]", 2)
    watcher.on_event("invocation_progress", {**node, "message": "late", "percentage": 0.1})
    watcher.on_status(1, "in_progress")
    assert (first.description, first.completed) == ("item 1: [red]failed[/]", 2)

    watcher.on_status(2, "canceled")
    assert (second.description, second.completed) == ("item 2: [yellow]canceled[/]", 2)


def test_building_the_parser_imports_no_client_library() -> None:
    code = (
        "import sys; from nodeloom.cli.main import build_parser; build_parser(); "
        "print(sorted({'httpx', 'socketio', 'rich'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_processor_whose_thread_died_is_shown_as_down() -> None:
    status = {"is_started": True, "is_processing": True, "is_alive": False, "error": "RuntimeError: boom"}
    assert processor_line(status) == "processor: down, restarting (RuntimeError: boom)"
    assert processor_line({**status, "is_alive": True, "current_item_id": 7}) == "processor: processing item 7"
