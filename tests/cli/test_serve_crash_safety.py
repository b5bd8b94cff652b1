"""`nodeloom serve` killed with SIGKILL at random moments while clients enqueue and the processor saves images.

After every restart the database is whole, nothing the API acknowledged is lost, every item stands where the
`requeue_interrupted` setting says it should, and the images on disk match their records one for one: the
start-up cleanup removed what the dead process left, and a resumed session made no image twice.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.helpers import edge, graph_json, wait_for
from tests.serve_process import ServeProcess

SEED = 20261202
KILLS = 11
"""Per setting of `requeue_interrupted`: 22 kills in all."""
MAX_ATTEMPTS = 3

# A node pack in the root's nodes/ folder: slow nodes for the server process, which knows no test node types.
CRASH_PACK = """
import time

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import ImageField, InputField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.primitives import IntegerOutput


def _sleep(context, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not context.util.is_canceled():
        time.sleep(0.01)


@invocation("crash_sleep", use_cache=False)
class SleepInvocation(BaseInvocation):
    seconds: float = InputField(default=0.3)

    def invoke(self, context) -> IntegerOutput:
        _sleep(context, self.seconds)
        return IntegerOutput(value=0)


@invocation("crash_hold", use_cache=False)
class HoldInvocation(BaseInvocation):
    image: ImageField = InputField()
    seconds: float = InputField(default=0.25)

    def invoke(self, context) -> ImageOutput:
        _sleep(context, self.seconds)
        return ImageOutput.build(context.images.get_dto(self.image.image_name))
"""

IMAGE_NODES = ("first", "second", "third")
# Three images with slow nodes between them: the session is saved after each slow node (`save_state_after_s`),
# so a kill finds images both inside and outside the saved session. `save_image` reads the image before it, so
# a resumed session whose inputs had lost their image would fail. The images are large enough that writing
# them takes a good part of the time, so that kills also land between a file and its record.
GRAPHS = {
    "trivial": graph_json([{"id": "value", "type": "integer", "value": 7}]),
    "slow": graph_json([{"id": "sleep", "type": "crash_sleep"}]),
    "images": graph_json(
        [
            {"id": "first", "type": "blank_image", "width": 2048, "height": 2048, "use_cache": False},
            {"id": "hold1", "type": "crash_hold"},
            {"id": "second", "type": "save_image"},
            {"id": "hold2", "type": "crash_hold"},
            {"id": "third", "type": "save_image"},
        ],
        [
            edge("first", "image", "hold1", "image"),
            edge("hold1", "image", "second", "image"),
            edge("second", "image", "hold2", "image"),
            edge("hold2", "image", "third", "image"),
        ],
    ),
}
KINDS = list(GRAPHS)
KIND_WEIGHTS = [6, 2, 2]
# The images service's start-up log line, read back for the summary the test prints.
CLEANUP_LOG = re.compile(
    r"(\d+) temporary file\(s\) deleted, (\d+) image\(s\) of (\d+) interrupted item\(s\) deleted, (\d+)"
)


@dataclass
class Clients:
    """Threads that keep enqueueing while the server lives, dies and comes back."""

    url: str
    count: int = 2
    acknowledged: dict[int, str] = field(default_factory=dict)
    """Item id → the kind of graph, for every item an enqueue answered 200 for."""
    bad_responses: list[str] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._run, args=(random.Random(SEED + index),), daemon=True)
            thread.start()
            self._threads.append(thread)

    def acknowledged_ids(self) -> set[int]:
        with self._lock:
            return set(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, rng: random.Random) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
                batch = {"graph": GRAPHS[kind], "runs": rng.choice([1, 1, 2])}
                try:
                    response = client.post("/api/v1/queue/default/enqueue_batch", json={"batch": batch})
                except httpx.TransportError:
                    # The server is down or died during the request: nothing was acknowledged.
                    with self._lock:
                        self.refused += 1
                    self._stop.wait(0.05)
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.update(dict.fromkeys(response.json()["item_ids"], kind))
                    else:
                        self.bad_responses.append(f"{response.status_code}: {response.text[:300]}")
                self._stop.wait(rng.uniform(0.1, 0.6))


def check_database_after_kill(server: ServeProcess, acknowledged: set[int]) -> set[int]:
    """The database the kill left is whole, holds every acknowledged item and counts them right; the ids of
    the items it left in progress."""
    assert [tuple(row) for row in server.query("PRAGMA integrity_check")] == [("ok",)]
    items = {row["item_id"]: row["status"] for row in server.query("SELECT item_id, status FROM session_queue")}
    assert acknowledged <= items.keys(), f"acknowledged but lost: {sorted(acknowledged - items.keys())}"
    counts = {
        row["status"]: row["n"]
        for row in server.query("SELECT status, n FROM session_queue_counts WHERE batch_id = '' AND n != 0")
    }
    assert counts == dict(Counter(items.values()))
    return {item_id for item_id, status in items.items() if status == "in_progress"}


def check_recovered(server: ServeProcess, interrupted: set[int], requeue: bool) -> None:
    """The items the kill left in progress are failed as interrupted, or requeued (and maybe run again since)."""
    rows = server.query("SELECT item_id, status, error_type, attempts FROM session_queue")
    for row in (row for row in rows if row["item_id"] in interrupted):
        failed = (row["status"], row["error_type"]) == ("failed", "Interrupted")
        if not requeue:
            assert failed, dict(row)
        elif failed:
            assert row["attempts"] == MAX_ATTEMPTS - 1, dict(row)  # it had used up its attempts
        else:
            assert row["status"] in ("pending", "in_progress", "completed") and row["attempts"] >= 1, dict(row)


def check_quiet_server(server: ServeProcess) -> dict[str, int]:
    """With the processor paused and idle: every item stands where it may, and images, thumbnails and records
    match one for one, each image belonging to a node its item's session recorded as executed, once."""
    httpx.put(f"{server.url}/api/v1/queue/default/processor/pause").raise_for_status()

    def idle() -> bool:
        return not server.query("SELECT 1 FROM session_queue WHERE status = 'in_progress'")

    wait_for(idle, 30, "the processor to finish its item")
    # The processor may have been between its pause check and its dequeue: that item shows by now.
    time.sleep(0.2)
    wait_for(idle, 30, "the processor to finish its item")
    try:
        rows = server.query("SELECT item_id, session_id, status, error_type, session FROM session_queue")
        images = server.query("SELECT image_name, session_id, node_id FROM images")
        images_folder = server.root / "outputs" / "images"
        files = {path.name for path in images_folder.glob("*.png")}
        thumbnails = {f"{path.stem}.png" for path in (images_folder / "thumbnails").glob("*.webp")}
        leftovers = [path for path in (server.root / "outputs").rglob("*.tmp")]
    finally:
        httpx.put(f"{server.url}/api/v1/queue/default/processor/resume").raise_for_status()
    records = {row["image_name"] for row in images}
    assert files == records, f"files without records {files - records}, records without files {records - files}"
    assert thumbnails == records
    assert leftovers == []
    by_session: dict[str, list[str]] = {}
    for image in images:
        by_session.setdefault(image["session_id"], []).append(image["node_id"])
    statuses: Counter[str] = Counter()
    for row in rows:
        statuses[row["status"]] += 1
        assert row["status"] != "canceled"
        if row["status"] == "failed":
            assert row["error_type"] == "Interrupted", dict(row)
        session = json.loads(row["session"])
        made = sorted(by_session.pop(row["session_id"], []))
        if row["status"] == "failed":
            assert made == [], f"item {row['item_id']} failed but its images stayed"
            continue
        sources = session["prepared_source_mapping"]
        expected = sorted(node for node in session["executed"] if sources.get(node) in IMAGE_NODES)
        assert made == expected, f"item {row['item_id']} ({row['status']}): images of {made}, expected {expected}"
        if row["status"] == "completed" and '"crash_hold"' in row["session"]:
            assert len(made) == len(IMAGE_NODES)
    assert by_session == {}, "images of no item"
    return {"images": len(records), **statuses}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("requeue", [False, True], ids=["fail_interrupted", "requeue_interrupted"])
def test_kill_9_at_random_moments_loses_and_leaves_nothing(tmp_path: Path, requeue: bool) -> None:
    rng = random.Random(SEED + requeue)
    root = tmp_path / "root"
    (root / "nodes").mkdir(parents=True)
    (root / "nodes" / "crash_pack.py").write_text(CRASH_PACK)
    server = ServeProcess(root, save_state_after_s=0.2, requeue_interrupted=requeue, max_attempts=MAX_ATTEMPTS)
    clients = Clients(server.url)
    started = time.monotonic()
    interrupted: set[int] = set()
    try:
        server.spawn()
        server.wait_healthy()
        clients.start()
        for kill in range(KILLS):
            if kill % 4 == 3:
                # Within the start-up, recovery and cleanup included: they must survive a kill too.
                time.sleep(rng.uniform(0.0, 0.8))
            else:
                server.wait_healthy()
                check_recovered(server, interrupted, requeue)
                check_quiet_server(server)
                time.sleep(rng.uniform(0.3, 2.5))
            server.kill()
            interrupted = check_database_after_kill(server, clients.acknowledged_ids())
            server.spawn()
        server.wait_healthy()
        check_recovered(server, interrupted, requeue)
        clients.stop()
        acknowledged = clients.acknowledged_ids()

        def drained() -> bool:
            return not server.query("SELECT 1 FROM session_queue WHERE status IN ('pending', 'in_progress')")

        wait_for(drained, timeout=120, what="the queue to drain")
        final = check_quiet_server(server)
        server.interrupt()
    finally:
        clients.stop()
        server.close()
    assert check_database_after_kill(server, acknowledged) == set()
    assert clients.bad_responses == []
    log = server.log.read_text()
    assert "Traceback" not in log and "database is locked" not in log, log[-5000:]
    cleanups = [list(map(int, found)) for found in CLEANUP_LOG.findall(log)]
    print(
        f"requeue_interrupted={requeue}: {KILLS} kills in {time.monotonic() - started:.1f} s; "
        f"{len(acknowledged)} items acknowledged ({dict(Counter(clients.acknowledged.values()))}), "
        f"{clients.refused} enqueues refused while down; final {final}; start-up cleanups (temporary files, "
        f"images of interrupted items, items, quarantined): {cleanups}"
    )
