from __future__ import annotations

import ast
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import websockets.sync.client
from tests.conftest import LiveServer
from tests.helpers import edge, graph_json, wait_for

import nodeloom.app.api.routers as routers_package

StartServer = Callable[..., LiveServer]

ADD_GRAPH = graph_json(
    [{"id": "a", "type": "integer", "value": 1}, {"id": "sum", "type": "add", "b": 100}],
    [edge("a", "value", "sum", "a")],
)
WAIT_GRAPH = graph_json([{"id": "wait", "type": "test_wait", "seconds": 30}])


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def enqueue(client: httpx.Client, graph: dict[str, Any], **batch: Any) -> dict[str, Any]:
    response = client.post("/enqueue_batch", json={"batch": {"graph": graph, **batch}})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait(client: httpx.Client, batch_id: str, timeout: float = 20) -> dict[str, Any]:
    response = client.get(f"/b/{batch_id}/wait", params={"timeout": timeout})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


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

    def test_unknown_api_path_is_a_json_404(self, server: LiveServer) -> None:
        response = httpx.get(f"{server.url}/api/v1/nothing/here")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")

    def test_malformed_body_is_422(self, client: httpx.Client) -> None:
        response = client.post("/enqueue_batch", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422


def test_async_routes_await() -> None:
    """An `async def` route that never awaits would block the event loop with its sync work."""
    offenders = []
    for path in Path(routers_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef) and not any(isinstance(n, ast.Await) for n in ast.walk(node)):
                offenders.append(f"{path.name}:{node.name}")
    assert offenders == []


def test_openapi_lists_every_node_type(server: LiveServer) -> None:
    from nodeloom.app.invocations.baseinvocation import registry

    schema = httpx.get(f"{server.url}/openapi.json").json()
    defs = schema["components"]["schemas"]
    titles = {d.get("properties", {}).get("type", {}).get("const") for d in defs.values()}
    missing = {cls.invocation_type for cls in registry.invocation_classes()} - titles
    assert missing == set()
    assert "a" in defs["AddInvocation"]["properties"]


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


def test_app_routes(server: LiveServer) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1/app") as c:
        assert c.get("/version").json()["version"]
        assert c.get("/config").json()["max_queue_size"] == 10_000
        assert c.put("/invocation_cache/disable").status_code == 200
        assert c.get("/invocation_cache/status").json()["enabled"] is False
        assert c.put("/invocation_cache/enable").status_code == 200
        assert c.delete("/invocation_cache").status_code == 200
        assert c.get("/invocation_cache/status").json()["size"] == 0


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    failures_left = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Hook.failures_left > 0:
            _Hook.failures_left -= 1
            self.send_response(503)
        else:
            _Hook.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_webhook_is_posted_for_each_item_with_retries(live_server: StartServer) -> None:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    _Hook.failures_left = 1
    thread = threading.Thread(target=hook.serve_forever, daemon=True)
    thread.start()
    server = live_server(webhook_allow_private=True)  # the receiver is on loopback
    try:
        url = f"http://127.0.0.1:{hook.server_address[1]}/done"
        with httpx.Client(base_url=f"{server.url}/api/v1/queue/default") as client:
            result = enqueue(client, ADD_GRAPH, runs=2, callback_url=url)
        wait_for(lambda: len(_Hook.received) == 2, timeout=20, what="two webhook calls")
        assert sorted(r["item_id"] for r in _Hook.received) == result["item_ids"]
        assert all(r["status"] == "completed" and r["outputs"]["sum"][0]["value"] == 101 for r in _Hook.received)
    finally:
        hook.shutdown()
        hook.server_close()


def test_socket_sees_cancel_of_running_item_and_replays_after_reconnect(
    client: httpx.Client, server: LiveServer
) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    sio = socketio.Client()

    @sio.on("*")
    def any_event(name: str, data: dict[str, Any]) -> None:
        received.append((name, data))

    sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        ack = sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        assert ack["queue_id"] == "default"
        result = enqueue(client, WAIT_GRAPH)
        item_id = result["item_ids"][0]
        wait_for(lambda: any(n == "invocation_started" for n, _ in received), what="invocation_started")
        client.put(f"/i/{item_id}/cancel")
        wait_for(
            lambda: any(n == "queue_item_status_changed" and d["status"] == "canceled" for n, d in received),
            what="the canceled status",
        )
        names = [n for n, _ in received]
        assert names.index("batch_enqueued") < names.index("invocation_started")
        seqs = [d["seq"] for _, d in received]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        last_seen = received[1][1]["seq"]
    finally:
        sio.disconnect()

    missed = list(received[2:])
    replayed: list[tuple[str, dict[str, Any]]] = []
    sio2 = socketio.Client()
    sio2.on("*", lambda name, data: replayed.append((name, data)))
    sio2.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        sio2.call("subscribe_queue", {"queue_id": "default", "after": last_seen}, timeout=10)
        wait_for(lambda: len(replayed) >= len(missed), what="the replay")
        assert [d["seq"] for _, d in replayed[: len(missed)]] == [d["seq"] for _, d in missed]
    finally:
        sio2.disconnect()


def test_a_subscriber_gets_every_event_of_many_sessions_in_order(client: httpx.Client, server: LiveServer) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    sio = socketio.Client()
    sio.on("*", lambda name, data: received.append((name, data)))
    sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        result = enqueue(client, ADD_GRAPH, runs=200)
        assert wait(client, result["batch"]["batch_id"])["finished"]
        # batch_enqueued, then per item: two status changes and two nodes started and completed.
        wait_for(lambda: len(received) >= 1 + 200 * 6, what="every event")
    finally:
        sio.disconnect()
    seqs = [data["seq"] for _, data in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    completed = [d["item_id"] for n, d in received if n == "queue_item_status_changed" and d["status"] == "completed"]
    assert completed == result["item_ids"]


def test_a_lone_event_goes_out_at_once_and_a_burst_is_gathered(client: httpx.Client, server: LiveServer) -> None:
    server.app.state.sockets._flush_interval_s = 1.0
    arrivals: list[float] = []
    sio = socketio.Client()
    sio.on("batch_enqueued", lambda data: arrivals.append(time.monotonic()))
    sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        client.put("/processor/pause")
        time.sleep(1.0)  # a quiet spell
        sent = time.monotonic()
        enqueue(client, ADD_GRAPH)
        wait_for(lambda: arrivals, what="the first batch_enqueued")
        enqueue(client, ADD_GRAPH)
        wait_for(lambda: len(arrivals) == 2, what="the second batch_enqueued")
    finally:
        sio.disconnect()
    assert arrivals[0] - sent < 0.5
    assert arrivals[1] - arrivals[0] > 0.7


def test_a_client_that_stops_reading_does_not_hold_up_the_processor(client: httpx.Client, server: LiveServer) -> None:
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    url = f"ws://127.0.0.1:{server.port}/ws/socket.io/?EIO=4&transport=websocket"
    # max_queue=1: once one frame waits unread, the client stops reading its socket.
    with websockets.sync.client.connect(url, sock=stalled, max_queue=1, compression=None, close_timeout=1) as ws:
        assert str(ws.recv(timeout=10)).startswith("0")
        ws.send("40")
        assert str(ws.recv(timeout=10)).startswith("40")
        ws.send('420["subscribe_queue",{"queue_id":"default"}]')
        assert str(ws.recv(timeout=10)).startswith("430")
        result = enqueue(client, ADD_GRAPH, runs=1000)
        waited = wait(client, result["batch"]["batch_id"], timeout=60)
    assert waited["finished"] and {item["status"] for item in waited["items"]} == {"completed"}


def test_replay_beyond_the_buffer_says_events_were_missed(server: LiveServer) -> None:
    server.app.state.sockets._sequence["default"] = 50  # as if 50 events had gone and rolled out of the buffer
    events: list[tuple[str, Any]] = []
    sio = socketio.Client()
    sio.on("*", lambda name, data: events.append((name, data)))
    sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        sio.call("subscribe_queue", {"queue_id": "default", "after": 3}, timeout=10)
        wait_for(lambda: events, what="events_missed")
        assert events[0][0] == "events_missed" and events[0][1]["after"] == 3
    finally:
        sio.disconnect()


def test_custom_node_packs_are_loaded_and_broken_ones_skipped(live_server: StartServer, tmp_path: Path) -> None:
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


def test_webhook_survives_a_restart_of_the_server(live_server: StartServer) -> None:
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    _Hook.failures_left = 0
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    first = live_server(webhook_allow_private=True)  # the receiver is on loopback
    try:
        with httpx.Client(base_url=f"{first.url}/api/v1/queue/default") as c:
            c.put("/processor/pause")
            url = f"http://127.0.0.1:{hook.server_address[1]}/done"
            (item_id,) = enqueue(c, ADD_GRAPH, callback_url=url)["item_ids"]
        first.stop()
        second = LiveServer(first.config.root, webhook_allow_private=True).start()
        try:
            wait_for(lambda: _Hook.received, timeout=20, what="the webhook call after the restart")
            assert _Hook.received[0]["item_id"] == item_id and _Hook.received[0]["status"] == "completed"
        finally:
            second.stop()
    finally:
        hook.shutdown()
        hook.server_close()
