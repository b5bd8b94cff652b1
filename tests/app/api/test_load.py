"""Load on a real `nodeloom serve`: many HTTP clients enqueue while the processor runs and socket.io clients listen.

Nothing answers 5xx or reports a locked database, every item is accounted for, and each listener gets every event
of the queue in `seq` order without a gap.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from tests.app.api.socket_listeners import Listeners
from tests.helpers import graph_json, wait_for
from tests.serve_process import ServeProcess

HTTP_CLIENTS = 8
BATCHES = 2_000
LISTENERS = 2
TRIVIAL = graph_json([{"id": "value", "type": "integer", "value": 7}])


def enqueue_batches(url: str, count: int, item_ids: list[int], responses: Counter[str], lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(count):
            response = client.post("/api/v1/queue/default/enqueue_batch", json={"batch": {"graph": TRIVIAL}})
            with lock:
                responses[f"{response.status_code}"] += 1
                if "database is locked" in response.text:
                    responses["database is locked"] += 1
                if response.status_code == 200:
                    item_ids.extend(response.json()["item_ids"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_concurrent_enqueues_with_listeners_lose_nothing(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "root")
    started = time.monotonic()
    try:
        server.spawn()
        server.wait_healthy()
        listeners = Listeners(server.url, LISTENERS)
        try:
            assert listeners.acks == [{"queue_id": "default", "last_seq": 0}] * LISTENERS
            item_ids: list[int] = []
            responses: Counter[str] = Counter()
            lock = threading.Lock()
            clients = [
                threading.Thread(
                    target=enqueue_batches, args=(server.url, BATCHES // HTTP_CLIENTS, item_ids, responses, lock)
                )
                for _ in range(HTTP_CLIENTS)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            enqueued = time.monotonic()
            assert responses == {"200": BATCHES}, responses
            assert len(set(item_ids)) == BATCHES

            def all_completed() -> bool:
                status = httpx.get(f"{server.url}/api/v1/queue/default/status").json()["queue"]
                return bool(status["completed"] == BATCHES)

            wait_for(all_completed, timeout=240, what="every item to complete")
            completed = time.monotonic()
            # Per item: two status changes, a node started and completed; per batch: batch_enqueued.
            expected_events = BATCHES * 5
            wait_for(lambda: all(len(events) >= expected_events for events in listeners.events), 60, "every event")
        finally:
            listeners.close()
        server.interrupt()
    finally:
        server.close()
    rows = server.query("SELECT item_id, status FROM session_queue")
    assert {row["item_id"]: row["status"] for row in rows} == dict.fromkeys(item_ids, "completed")
    for events in listeners.events:
        assert [data["seq"] for _, data in events] == list(range(1, expected_events + 1))
        assert Counter(name for name, _ in events) == {
            "batch_enqueued": BATCHES,
            "queue_item_status_changed": 2 * BATCHES,
            "invocation_started": BATCHES,
            "invocation_complete": BATCHES,
        }
        completed_ids = [
            data["item_id"]
            for name, data in events
            if name == "queue_item_status_changed" and data["status"] == "completed"
        ]
        assert sorted(completed_ids) == sorted(item_ids)
    log = server.log.read_text()
    assert "database is locked" not in log and "Traceback" not in log and " 500 " not in log, log[-5000:]
    print(
        f"{BATCHES} batches from {HTTP_CLIENTS} clients enqueued in {enqueued - started:.1f} s, all completed after "
        f"{completed - started:.1f} s; {expected_events} events to each of {LISTENERS} listeners, in order"
    )
