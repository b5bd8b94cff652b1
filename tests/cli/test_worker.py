"""`nodeloom worker` processes and `nodeloom serve --no-processor`, as users run them, sharing one database: on
SQLite (the root's file) and on PostgreSQL.

The workers run a node pack of the root's nodes/ folder whose node records each run in a file of its process.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.app.api.socket_listeners import Listeners
from tests.database_engines import empty_postgres_schema
from tests.helpers import graph_json, wait_for
from tests.serve_process import QueueClient, ServeProcess, WorkerProcess

RECORD_PACK = """
import os
import time
from pathlib import Path

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import InputField
from nodeloom.app.invocations.primitives import IntegerOutput

RUNS = Path(__file__).resolve().parent.parent / "runs"


@invocation("record_run", use_cache=False)
class RecordRunInvocation(BaseInvocation):
    seconds: float = InputField(default=0.0)
    progress_steps: int = InputField(default=0)

    def invoke(self, context) -> IntegerOutput:
        RUNS.mkdir(exist_ok=True)
        with open(RUNS / f"{os.getpid()}.txt", "a") as runs:
            runs.write(context.data.session_id + "\\n")
        for step in range(self.progress_steps):
            context.util.signal_progress(f"step {step + 1}", (step + 1) / self.progress_steps)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not context.util.is_canceled():
            time.sleep(0.01)
        return IntegerOutput(value=os.getpid())
"""


def record_graph(**fields: Any) -> dict[str, Any]:
    return graph_json([{"id": "record", "type": "record_run", **fields}])


@pytest.fixture(params=["sqlite", "postgres"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A root with the node pack, and the settings that put every process on the engine's database."""
    root = tmp_path / "root"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "record_pack.py").write_text(RECORD_PACK)
    if request.param == "sqlite":
        return root, {}
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres_schema(url)
    return root, {"database_url": url}


class Cluster:
    """An API server that runs no session and the workers beside it; everything is killed at the end."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = settings
        self.api = ServeProcess(root, "--no-processor", **settings)
        self.workers: list[WorkerProcess] = []
        self.client = QueueClient(self.api.url)

    def start(self, workers: int, devices: str = "cpu", **settings: Any) -> Cluster:
        self.api.spawn()
        self.api.wait_healthy()
        for n in range(workers):
            self.workers.append(
                WorkerProcess(self.root, f"worker{n}", "--devices", devices, **self.settings, **settings)
            )
        processors = workers * len(devices.split(","))
        wait_for(lambda: len(self.client.alive_processors()) == processors, 60, f"{processors} processors to register")
        return self

    def status(self) -> dict[str, Any]:
        queue: dict[str, Any] = self.client.get("status").json()["queue"]
        return queue

    def runs(self) -> Counter[str]:
        """How many times each session's node started, over every worker."""
        return Counter(line for path in (self.root / "runs").glob("*.txt") for line in path.read_text().split())

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.api.close()
        self.client.close()


@pytest.fixture
def cluster(root: tuple[Path, dict[str, Any]]) -> Iterator[Cluster]:
    made = Cluster(*root)
    yield made
    made.close()


def items(cluster: Cluster, item_ids: list[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(item_ids), 500):  # at most MAX_ITEM_IDS a request
        response = cluster.client.post("items_by_ids", json={"item_ids": item_ids[start : start + 500]})
        assert response.status_code == 200, response.text
        found += response.json()
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eight_processors_in_four_workers_run_every_session_exactly_once(cluster: Cluster) -> None:
    cluster.start(workers=4, devices="cpu,cpu")
    item_ids = cluster.client.enqueue(record_graph(), runs=2000)

    wait_for(lambda: cluster.status()["completed"] == 2000, 600, "2,000 sessions to complete")

    status = cluster.status()
    assert (status["pending"], status["in_progress"], status["failed"], status["canceled"]) == (0, 0, 0, 0)
    ran = items(cluster, item_ids)
    runs = cluster.runs()
    assert sorted(runs) == sorted(item["session_id"] for item in ran)
    assert set(runs.values()) == {1}
    holders = Counter(item["processor_id"] for item in ran)
    assert len(holders) == 8  # every processor took part


def test_a_killed_workers_item_is_reclaimed_and_runs_again_on_the_other(cluster: Cluster) -> None:
    cluster.start(workers=2, requeue_interrupted=True, lease_s=2, heartbeat_interval_s=0.3)
    item_ids = cluster.client.enqueue(record_graph(seconds=0.5), runs=12)
    victim, survivor = cluster.workers

    def held_by_victim() -> int | None:
        for processor in cluster.client.alive_processors():
            if processor["pid"] == victim.pid and processor["items"]:
                held: int = processor["items"][0]["item_id"]
                return held
        return None

    killed_item = wait_for(held_by_victim, 30, "the first worker to run an item")
    session_id = cluster.client.get(f"i/{killed_item}").json()["session_id"]
    wait_for(lambda: cluster.runs()[session_id] == 1, 30, "its node to start")
    victim.kill()

    wait_for(lambda: cluster.status()["completed"] == 12, 120, "the rest of the queue to complete")
    ran = {item["item_id"]: item for item in items(cluster, item_ids)}
    assert ran[killed_item]["attempts"] == 1
    runs = cluster.runs()
    assert runs[session_id] == 2  # started on the killed worker, then again on the other
    assert {runs[item["session_id"]] for item_id, item in ran.items() if item_id != killed_item} == {1}
    assert [p["pid"] for p in cluster.client.alive_processors()] == [survivor.pid]


def test_a_pause_through_any_api_server_holds_every_worker_and_shows_on_every_server(cluster: Cluster) -> None:
    cluster.start(workers=2)
    other = ServeProcess(cluster.root, "--no-processor", **cluster.settings)
    other.spawn()
    try:
        other.wait_healthy()
        with QueueClient(other.url) as elsewhere:
            assert elsewhere.put("processor/pause").json()["is_processing"] is False
            item_ids = cluster.client.enqueue(record_graph(), runs=4)

            # Each worker is woken by the new batch, and reads the queue again at every poll.
            time.sleep(1.5)
            assert cluster.status()["pending"] == 4 and not cluster.runs()
            assert cluster.client.get("status").json()["processor"]["is_processing"] is False

            assert cluster.client.put("processor/resume").json()["is_processing"] is True
            wait_for(lambda: cluster.status()["completed"] == 4, 30, "the sessions to run")
            assert set(cluster.runs().values()) == {1} and len(items(cluster, item_ids)) == 4
            wait_for(lambda: elsewhere.get("status").json()["processor"]["is_processing"], 10, "the resume elsewhere")
    finally:
        other.close()


def test_a_client_of_the_api_sees_a_workers_session_and_its_cancel_stops_it(cluster: Cluster) -> None:
    cluster.start(workers=1)
    listeners = Listeners(cluster.api.url)
    try:
        (done,) = cluster.client.enqueue(record_graph(progress_steps=3))
        wait_for(
            lambda: any(
                name == "queue_item_status_changed" and data["status"] == "completed"
                for name, data in listeners.events[0]
            ),
            30,
            "the completion",
        )
        mine = [(name, data) for name, data in listeners.events[0] if data.get("item_id") == done]
        assert [name for name, _ in mine] == [
            "queue_item_status_changed",
            "invocation_started",
            *["invocation_progress"] * 3,
            "invocation_complete",
            "queue_item_status_changed",
        ]
        seqs = [data["seq"] for name, data in listeners.events[0] if "seq" in data]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        (long,) = cluster.client.enqueue(record_graph(seconds=60))
        wait_for(
            lambda: any(n == "invocation_started" and d["item_id"] == long for n, d in listeners.events[0]),
            30,
            "the long node to start",
        )
        canceled_at = time.monotonic()
        assert cluster.client.put(f"i/{long}/cancel").status_code == 200
        wait_for(lambda: not cluster.client.alive_processors()[0]["items"], 10, "the worker to let go of the item")
        assert time.monotonic() - canceled_at < 3
        assert cluster.client.get(f"i/{long}").json()["status"] == "canceled"
    finally:
        listeners.close()
