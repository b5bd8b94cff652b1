from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from tests.app.api.queue_api_helpers import ADD_GRAPH, enqueue, wait
from tests.conftest import LiveServer
from tests.helpers import graph_json, wait_for


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def test_health_and_metrics(client: httpx.Client, server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "processor_started": True, "detail": None}
    result = enqueue(client, ADD_GRAPH, runs=2)
    wait(client, result["batch"]["batch_id"])
    failing = enqueue(client, graph_json([{"id": "f", "type": "test_fail"}]))
    wait(client, failing["batch"]["batch_id"])

    def metrics_ready() -> str | None:
        text = httpx.get(f"{server.url}/metrics").text
        return text if 'nodeloom_sessions_total{status="failed"} 1' in text else None

    text = wait_for(metrics_ready, what="metrics to count the failed session")
    assert 'nodeloom_queue_items{queue_id="default",status="completed"} 2.0' in text
    assert 'nodeloom_sessions_total{status="completed"} 2.0' in text
    assert 'nodeloom_nodes_total{node_type="add"} 2.0' in text
    assert 'nodeloom_node_seconds_total{node_type="add"}' in text
    assert "nodeloom_cache_hits_total" in text and "nodeloom_processor_started 1.0" in text
    assert "nodeloom_processor_alive 1.0" in text and "nodeloom_processor_restarts_total 0.0" in text
    content_type = httpx.get(f"{server.url}/metrics").headers["content-type"]
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_processors_lists_each_processor_and_what_it_runs(client: httpx.Client, server: LiveServer) -> None:
    me = server.services.session_processor.get_status().processor_id
    result = enqueue(client, graph_json([{"id": "slow", "type": "test_wait", "seconds": 1.0}]))
    (item_id,) = result["item_ids"]
    wait_for(lambda: client.get(f"i/{item_id}").json()["status"] == "in_progress", what="the item to start")

    [listed] = client.get("processors").json()

    assert (listed["processor_id"], listed["pid"], listed["is_alive"]) == (me, os.getpid(), True)
    assert listed["devices"] == [server.services.config.device]
    [held] = listed["items"]
    session_id = client.get(f"i/{item_id}").json()["session_id"]
    assert (held["item_id"], held["queue_id"], held["session_id"]) == (item_id, "default", session_id)
    wait(client, result["batch"]["batch_id"])
    assert client.get("processors").json()[0]["items"] == []
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'nodeloom_processors_up{{host="{listed["host"]}",processor_id="{me}"}} 1.0' in metrics
