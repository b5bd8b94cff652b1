"""The HTTP API against a real `nodeloom serve` started by this script; one JSON object per measurement.

(a) enqueue 1,000 one-session batches one after another (processor paused): p50 and p99 latency;
(b) GET /list page latency with 100,000 items queued: p50;
(c) 1,000 trivial sessions run with no socket.io client, then with one subscribed, three times each, alternating:
    the medians of sessions/s and the events/s that client received (9 events a session).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import socketio

GRAPH: dict[str, Any] = {
    "nodes": {
        "a": {"id": "a", "type": "integer", "value": 1},
        "b": {"id": "b", "type": "integer", "value": 2},
        "sum": {"id": "sum", "type": "add", "use_cache": False},
    },
    "edges": [
        {"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "sum", "field": "a"}},
        {"source": {"node_id": "b", "field": "value"}, "destination": {"node_id": "sum", "field": "b"}},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NODELOOM_MAX_QUEUE_SIZE": "200000", "NODELOOM_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def enqueue_latency(client: httpx.Client, count: int) -> dict[str, Any]:
    client.put("/processor/pause")
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post("/enqueue_batch", json={"batch": {"graph": GRAPH}})
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    client.put("/clear")
    return {
        "measure": "enqueue_one_session_batch",
        "count": count,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


def list_latency(client: httpx.Client, queued: int, pages: int) -> dict[str, Any]:
    client.put("/processor/pause")
    for _ in range(queued // 10_000):
        client.post("/enqueue_batch", json={"batch": {"graph": GRAPH, "runs": 10_000}}, timeout=120).raise_for_status()
    total = client.get("/status").json()["queue"]["total"]
    latencies = []
    cursor: dict[str, Any] = {}
    for _ in range(pages):
        started = time.perf_counter()
        page = client.get("/list", params={"limit": 50, **cursor}).json()
        latencies.append((time.perf_counter() - started) * 1000)
        last = page["items"][-1]
        cursor = {"cursor": last["item_id"], "priority": last["priority"]}
    client.put("/clear", timeout=120)
    return {"measure": "list_page", "queued": total, "pages": pages, "p50_ms": round(percentile(latencies, 50), 2)}


def run_sessions(client: httpx.Client, count: int) -> float:
    """Sessions per second through the processor, from the first enqueue to the last completion."""
    client.put("/processor/pause")
    batch_ids = [
        client.post("/enqueue_batch", json={"batch": {"graph": GRAPH}}).json()["batch"]["batch_id"]
        for _ in range(count)
    ]
    started = time.perf_counter()
    client.put("/processor/resume")
    client.get(f"/b/{batch_ids[-1]}/wait", params={"timeout": 300}, timeout=310)
    while client.get("/status").json()["queue"]["completed"] < count:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    client.put("/prune")
    return count / elapsed


def sessions_with_a_subscriber(url: str, client: httpx.Client, count: int, rounds: int = 3) -> dict[str, Any]:
    """Runs without and with a subscribed client, alternating, so drift of the machine hits both alike."""
    received = 0
    lock = threading.Lock()
    sio = socketio.Client()

    @sio.on("*")
    def on_event(name: str, data: Any) -> None:
        nonlocal received
        with lock:
            received += 1

    alone, subscribed, rates = [], [], []
    for _ in range(rounds):
        alone.append(run_sessions(client, count))
        sio.connect(url, socketio_path="/ws/socket.io", transports=["websocket"])
        sio.call("subscribe_queue", {"queue_id": "default"})
        with lock:
            received = 0
        started = time.perf_counter()
        subscribed.append(run_sessions(client, count))
        while received < 9 * count and time.perf_counter() - started < 60:
            time.sleep(0.05)  # every event of the run reaches the client before it disconnects
        rates.append(received / (time.perf_counter() - started))
        sio.disconnect()
    no_client, one_client = statistics.median(alone), statistics.median(subscribed)
    return {
        "measure": "sessions_with_socket_client",
        "sessions": count,
        "rounds": rounds,
        "sessions_per_s_no_client": round(no_client, 1),
        "sessions_per_s_one_client": round(one_client, 1),
        "ratio": round(one_client / no_client, 3),
        "events_per_s": round(statistics.median(rates), 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(root), port)
        try:
            with httpx.Client(base_url=f"{url}/api/v1/queue/default", timeout=60) as client:
                print(json.dumps(enqueue_latency(client, 1_000)), flush=True)
                print(json.dumps(list_latency(client, 100_000, 100)), flush=True)
                print(json.dumps(sessions_with_a_subscriber(url, client, 1_000)), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
