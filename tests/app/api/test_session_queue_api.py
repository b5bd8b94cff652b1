from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.app.api.queue_api_helpers import ADD_GRAPH, WAIT_GRAPH, enqueue, wait
from tests.conftest import LiveServer
from tests.helpers import edge, graph_json, wait_for

StartServer = Callable[..., LiveServer]


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def test_enqueue_and_wait_returns_outputs(client: httpx.Client) -> None:
    result = enqueue(client, ADD_GRAPH, data=[[{"node_path": "a", "field_name": "value", "items": [1, 2, 3]}]])
    assert result["enqueued"] == result["requested"] == 3
    waited = wait(client, result["batch"]["batch_id"])
    assert waited["finished"] and not waited["timed_out"]
    assert [item["status"] for item in waited["items"]] == ["completed"] * 3
    assert [item["outputs"]["sum"][0]["value"] for item in waited["items"]] == [101, 102, 103]
    assert waited["items"][0]["outputs"]["sum"][0]["type"] == "integer_output"


def test_wait_times_out_saying_so(client: httpx.Client) -> None:
    result = enqueue(client, WAIT_GRAPH)
    started = time.monotonic()
    waited = wait(client, result["batch"]["batch_id"], timeout=0.3)
    assert time.monotonic() - started < 5
    assert not waited["finished"] and waited["timed_out"]
    assert waited["items"][0]["status"] in ("pending", "in_progress")


def test_wait_for_unknown_batch_is_404(client: httpx.Client) -> None:
    response = client.get("/b/no-such-batch/wait", params={"timeout": 1})
    assert response.status_code == 404
    assert "no-such-batch" in response.json()["detail"]


def test_queue_routes(client: httpx.Client) -> None:
    assert client.put("/processor/pause").json()["is_processing"] is False
    first = enqueue(client, ADD_GRAPH, runs=3)
    second = enqueue(client, ADD_GRAPH, runs=2)
    prepended = client.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH}, "prepend": True}).json()

    page = client.get("/list", params={"limit": 2}).json()
    assert [i["item_id"] for i in page["items"]] == [prepended["item_ids"][0], first["item_ids"][0]]
    assert page["has_more"] is True
    last = page["items"][-1]
    page2 = client.get("/list", params={"limit": 10, "cursor": last["item_id"], "priority": last["priority"]}).json()
    assert [i["item_id"] for i in page2["items"]] == first["item_ids"][1:] + second["item_ids"]
    assert page2["has_more"] is False
    assert client.get("/list", params={"destination": "elsewhere"}).json()["items"] == []

    assert len(client.get("/list_all").json()) == 6
    ids = client.get("/item_ids").json()
    assert ids["total_count"] == 6 and ids["item_ids"] == sorted(ids["item_ids"], reverse=True)
    some = [second["item_ids"][1], 999_999, first["item_ids"][0]]
    fetched = client.post("/items_by_ids", json={"item_ids": some}).json()
    assert [i["item_id"] for i in fetched] == [second["item_ids"][1], first["item_ids"][0]]

    assert client.get("/next").json()["item_id"] == prepended["item_ids"][0]
    assert client.get("/current").json() is None
    status = client.get("/status").json()
    assert status["queue"]["pending"] == 6 and status["processor"]["is_processing"] is False
    assert client.get(f"/b/{first['batch']['batch_id']}/status").json()["pending"] == 3

    canceled = client.put(f"/i/{first['item_ids'][0]}/cancel").json()
    assert canceled["status"] == "canceled"
    assert client.put("/cancel_by_batch_ids", json={"batch_ids": [second["batch"]["batch_id"]]}).json()["canceled"] == 2
    retried = client.put("/retry_items_by_id", json=[first["item_ids"][0]]).json()
    assert retried["retried_item_ids"] == [first["item_ids"][0]]
    [retry_item] = [item for item in client.get("/list_all").json() if item["retried_from_item_id"] is not None]
    assert retry_item["retried_from_item_id"] == first["item_ids"][0]
    assert retry_item["status"] == "pending" and retry_item["batch_id"] == first["batch"]["batch_id"]

    assert client.delete(f"/i/{first['item_ids'][1]}").status_code == 200
    assert client.get(f"/i/{first['item_ids'][1]}").status_code == 404
    assert client.put("/cancel_all_except_current").json()["canceled"] == 3
    assert client.put("/prune").json()["deleted"] == 6
    assert client.get("/status").json()["queue"]["total"] == 0

    assert client.put("/processor/resume").json()["is_processing"] is True
    done = enqueue(client, ADD_GRAPH)
    assert wait(client, done["batch"]["batch_id"])["items"][0]["status"] == "completed"
    assert client.put("/clear").json()["deleted"] == 1


def test_item_stats(client: httpx.Client) -> None:
    result = enqueue(client, ADD_GRAPH)
    wait(client, result["batch"]["batch_id"])
    item_id = result["item_ids"][0]
    stats = wait_for(
        lambda: (
            client.get(f"/i/{item_id}/stats").json() if client.get(f"/i/{item_id}/stats").status_code == 200 else None
        )
    )
    assert {n["node_type"] for n in stats["node_stats"]} == {"integer", "add"}
    assert client.get("/i/424242/stats").status_code == 404


def test_stats_survive_a_restart(live_server: StartServer, tmp_path: Path) -> None:
    first = live_server()
    with httpx.Client(base_url=f"{first.url}/api/v1/queue/default") as c:
        result = enqueue(c, ADD_GRAPH)
        wait(c, result["batch"]["batch_id"])
        item_id = result["item_ids"][0]
        wait_for(lambda: c.get(f"/i/{item_id}/stats").status_code == 200)
    first.stop()
    second = LiveServer(first.config.root).start()
    try:
        with httpx.Client(base_url=f"{second.url}/api/v1/queue/default") as c:
            stats = c.get(f"/i/{item_id}/stats")
            assert stats.status_code == 200
            assert {n["node_type"] for n in stats.json()["node_stats"]} == {"integer", "add"}
    finally:
        second.stop()


class TestErrors:
    def test_invalid_graph_is_422_naming_node_and_field(self, client: httpx.Client) -> None:
        graph = graph_json(
            [{"id": "s", "type": "string", "value": "x"}, {"id": "a", "type": "add"}], [edge("s", "value", "a", "a")]
        )
        response = client.post("/enqueue_batch", json={"batch": {"graph": graph}})
        assert response.status_code == 422
        assert "input 'a' of node 'a'" in json.dumps(response.json())

    def test_unknown_node_type_is_422(self, client: httpx.Client) -> None:
        response = client.post("/enqueue_batch", json={"batch": {"graph": graph_json([{"id": "x", "type": "nope"}])}})
        assert response.status_code == 422
        assert "Unknown node type 'nope'" in json.dumps(response.json())

    def test_bad_batch_data_is_422(self, client: httpx.Client) -> None:
        data = [[{"node_path": "ghost", "field_name": "value", "items": [1]}]]
        response = client.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH, "data": data}})
        assert response.status_code == 422
        assert "ghost" in json.dumps(response.json())

    def test_wrong_value_type_in_batch_data_is_422(self, client: httpx.Client) -> None:
        data = [[{"node_path": "a", "field_name": "value", "items": ["not a number"]}]]
        response = client.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH, "data": data}})
        assert response.status_code == 422
        assert "'a'" in response.json()["detail"] and "value" in response.json()["detail"]

    def test_unknown_item_and_batch_are_404(self, client: httpx.Client) -> None:
        assert client.get("/i/123456").status_code == 404
        assert client.put("/i/123456/cancel").status_code == 404
        assert client.delete("/i/123456").status_code == 404
        assert client.get("/b/nope/status").status_code == 404

    def test_a_batch_that_does_not_fit_enqueues_its_first_sessions_or_is_409(self, live_server: StartServer) -> None:
        server = live_server(max_queue_size=3)
        with httpx.Client(base_url=f"{server.url}/api/v1/queue/default") as c:
            c.put("/processor/pause")
            whole = {"batch": {"graph": ADD_GRAPH, "runs": 2}, "all_or_nothing": True}
            assert c.post("/enqueue_batch", json=whole).json()["enqueued"] == 2

            refused = c.post("/enqueue_batch", json=whole)
            assert refused.status_code == 409
            assert "room for 1 of the batch's 2 sessions" in refused.json()["detail"]
            part = c.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH, "runs": 2}}).json()
            assert (part["requested"], part["enqueued"], len(part["item_ids"])) == (2, 1, 1)
            full = c.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH}})
            assert full.status_code == 409 and "is full" in full.json()["detail"]
            assert c.get("/status").json()["queue"]["total"] == 3

    def test_a_batch_id_the_queue_holds_is_409(self, client: httpx.Client) -> None:
        client.put("/processor/pause")
        batch = {"batch": {"graph": ADD_GRAPH, "batch_id": "mine"}}
        assert client.post("/enqueue_batch", json=batch).status_code == 200
        again = client.post("/enqueue_batch", json=batch)
        assert again.status_code == 409 and "'mine'" in again.json()["detail"]

    @pytest.mark.parametrize(
        ("url", "problem"),
        [("http://user:secret@example.com/hook", "credentials"), ("ftp://example.com/hook", "scheme")],
    )
    def test_a_callback_url_with_credentials_or_another_scheme_is_422(
        self, client: httpx.Client, url: str, problem: str
    ) -> None:
        response = client.post("/enqueue_batch", json={"batch": {"graph": ADD_GRAPH, "callback_url": url}})
        assert response.status_code == 422
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "batch", "callback_url"] and problem in error["msg"]

    def test_malformed_body_is_422(self, client: httpx.Client) -> None:
        response = client.post("/enqueue_batch", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422


def test_deleting_an_item_whose_webhook_is_due_is_409_and_keeps_it(client: httpx.Client) -> None:
    assert client.put("/processor/pause").json()["is_processing"] is False
    batch = {"graph": ADD_GRAPH, "callback_url": "http://example.com/hook"}
    [item_id] = client.post("/enqueue_batch", json={"batch": batch}).json()["item_ids"]

    response = client.delete(f"/i/{item_id}")

    assert response.status_code == 409
    assert f"Queue item {item_id} was canceled" in response.json()["detail"]
    assert "webhook" in response.json()["detail"]
    assert client.get(f"/i/{item_id}").json()["status"] == "canceled"
