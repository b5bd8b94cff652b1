from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import socketio
import websockets.sync.client
from tests.app.api.queue_api_helpers import ADD_GRAPH, WAIT_GRAPH, enqueue, wait
from tests.app.api.socket_listeners import Listeners
from tests.conftest import LiveServer
from tests.helpers import wait_for


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1/queue/default", timeout=30) as c:
        yield c


def test_socket_sees_cancel_of_running_item_and_replays_after_reconnect(
    client: httpx.Client, server: LiveServer
) -> None:
    listener = Listeners(server.url)
    received = listener.events[0]
    try:
        assert listener.acks[0]["queue_id"] == "default"
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
        listener.close()

    missed = list(received[2:])
    reconnected = Listeners(server.url, subscription={"queue_id": "default", "after": last_seen})
    replayed = reconnected.events[0]
    try:
        wait_for(lambda: len(replayed) >= len(missed), what="the replay")
        assert [d["seq"] for _, d in replayed[: len(missed)]] == [d["seq"] for _, d in missed]
    finally:
        reconnected.close()


def test_a_subscriber_gets_every_event_of_many_sessions_in_order(client: httpx.Client, server: LiveServer) -> None:
    listener = Listeners(server.url)
    received = listener.events[0]
    try:
        result = enqueue(client, ADD_GRAPH, runs=200)
        assert wait(client, result["batch"]["batch_id"])["finished"]
        # batch_enqueued, then per item: two status changes and two nodes started and completed.
        wait_for(lambda: len(received) >= 1 + 200 * 6, what="every event")
    finally:
        listener.close()
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
