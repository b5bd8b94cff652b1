from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
from tests.app.api.queue_api_helpers import ADD_GRAPH, enqueue
from tests.conftest import LiveServer
from tests.helpers import wait_for

StartServer = Callable[..., LiveServer]


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
            httpx.put(f"{second.url}/api/v1/queue/default/processor/resume").raise_for_status()  # the pause is kept
            wait_for(lambda: _Hook.received, timeout=20, what="the webhook call after the restart")
            assert _Hook.received[0]["item_id"] == item_id and _Hook.received[0]["status"] == "completed"
        finally:
            second.stop()
    finally:
        hook.shutdown()
        hook.server_close()
