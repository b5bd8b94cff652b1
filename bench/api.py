"""The HTTP API against a real `nodeloom serve` started by this script; one JSON object per measurement.

(a) enqueue 1,000 one-session batches one after another (processor paused): p50 and p99 latency;
(b) GET /list page latency with 100,000 items queued: p50;
(c) a batch of 1,000 trivial sessions runs with no socket.io client, with a minimal one subscribed and with
    python-socketio's, nine times each, in turn: the medians of sessions/s, and of the events/s each client
    received while they ran, and the API process's CPU time per session (all of it, and its event loop's; the
    sessions run in its worker process).
"""

from __future__ import annotations

import asyncio
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
from typing import Any, NamedTuple

import httpx
import psutil
import socketio
from websockets.asyncio.client import ClientConnection, connect

from bench_common import TRIVIAL_GRAPH


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
        response = client.post("/enqueue_batch", json={"batch": {"graph": TRIVIAL_GRAPH}})
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
        batch = {"batch": {"graph": TRIVIAL_GRAPH, "runs": 10_000}}
        client.post("/enqueue_batch", json=batch, timeout=120).raise_for_status()
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


def enqueue_sessions(client: httpx.Client, count: int) -> str:
    """Queues a batch of `count` sessions with the processor paused; returns its id."""
    client.put("/processor/pause")
    response = client.post("/enqueue_batch", json={"batch": {"graph": TRIVIAL_GRAPH, "runs": count}})
    response.raise_for_status()
    return str(response.json()["batch"]["batch_id"])


class Run(NamedTuple):
    sessions_per_s: float
    server_cpu_ms_per_session: float
    event_loop_cpu_ms_per_session: float


def cpu_seconds(server: psutil.Process) -> tuple[float, float]:
    """The server's CPU time, all threads and its event loop's (the main thread, whose id is the process id)."""
    loop = next(thread for thread in server.threads() if thread.id == server.pid)
    return sum(server.cpu_times()[:2]), loop.user_time + loop.system_time


def run_sessions(client: httpx.Client, server: psutil.Process, count: int, batch_id: str) -> Run:
    """Runs the queued batch, timed from resuming the processor to the last completion."""
    cpu_before, started = cpu_seconds(server), time.perf_counter()
    client.put("/processor/resume")
    # Polled, not waited on with /wait: its answer carries every item's outputs, and reading them would be timed.
    while client.get(f"/b/{batch_id}/status").json()["completed"] < count:
        time.sleep(0.02)
    elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(server)
    client.put("/prune")
    process_cpu, loop_cpu = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    return Run(count / elapsed, process_cpu * 1000 / count, loop_cpu * 1000 / count)


class SocketioSubscriber:
    """python-socketio's threaded client, counting the queue's events."""

    def __init__(self, url: str) -> None:
        self.received = 0
        self.last_event_at = 0.0
        self._url = url
        self._sio = socketio.Client()
        self._sio.on("*", self._on_event)

    def _on_event(self, name: str, data: Any) -> None:
        self.received += 1
        self.last_event_at = time.perf_counter()

    def connect(self) -> None:
        self._sio.connect(self._url, socketio_path="/ws/socket.io", transports=["websocket"])
        self._sio.call("subscribe_queue", {"queue_id": "default"})
        self.received = 0

    def disconnect(self) -> None:
        self._sio.disconnect()


class MinimalSubscriber:
    """A socket.io client cut down to subscribing: engine.io 4 and socket.io 5 over a websocket, each event decoded.

    python-socketio's client spends about 0.3 ms of CPU on each event: on a 2-core machine it takes a core from the
    server it measures, and it falls behind. This one keeps up with the server using a fraction of that.
    """

    def __init__(self, port: int) -> None:
        self.received = 0
        self.last_event_at = 0.0
        self._url = f"ws://127.0.0.1:{port}/ws/socket.io/?EIO=4&transport=websocket"
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: ClientConnection | None = None

    def connect(self) -> None:
        self._subscribed.clear()
        self._thread = threading.Thread(target=asyncio.run, args=(self._listen(),), daemon=True)
        self._thread.start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the minimal client could not subscribe")
        self.received = 0

    async def _listen(self) -> None:
        async with connect(self._url, max_size=None) as ws:
            self._loop, self._ws = asyncio.get_running_loop(), ws
            if not str(await ws.recv()).startswith("0"):
                raise RuntimeError("no engine.io open packet")
            await ws.send("40")
            if not str(await ws.recv()).startswith("40"):
                raise RuntimeError("socket.io did not accept the connection")
            await ws.send('420["subscribe_queue",{"queue_id":"default"}]')
            async for message in ws:
                text = str(message)
                if text == "2":  # engine.io ping
                    await ws.send("3")
                elif text.startswith("42"):
                    json.loads(text[2:])
                    self.received += 1
                    self.last_event_at = time.perf_counter()
                elif text.startswith("430"):
                    self._subscribed.set()

    def disconnect(self) -> None:
        assert self._loop is not None and self._ws is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)


def sessions_with_subscribers(
    url: str, port: int, client: httpx.Client, server: psutil.Process, count: int, rounds: int
) -> dict[str, Any]:
    """Runs with no client and with each client, in an order that turns each round, so drift hits them all alike.

    The server's CPU time per session shows the work a client adds; on this VM it is less noisy than the rates.
    """
    subscribers: dict[str, SocketioSubscriber | MinimalSubscriber | None] = {
        "no_client": None,
        "minimal_client": MinimalSubscriber(port),
        "python_socketio_client": SocketioSubscriber(url),
    }
    names = list(subscribers)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    events: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(rounds):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            subscriber = subscribers[name]
            if subscriber is None:
                runs[name].append(run_sessions(client, server, count, enqueue_sessions(client, count)))
                continue
            subscriber.connect()
            batch_id = enqueue_sessions(client, count)
            before, started = subscriber.received, time.perf_counter()
            runs[name].append(run_sessions(client, server, count, batch_id))
            # Each session sends 8 events while it runs: two status changes, and each of its nodes starts and ends.
            while subscriber.received < before + 8 * count and time.perf_counter() - started < 60:
                time.sleep(0.05)
            events[name].append((subscriber.received - before) / (subscriber.last_event_at - started))
            subscriber.disconnect()

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs[name])

    result: dict[str, Any] = {"measure": "sessions_with_socket_client", "sessions": count, "rounds": rounds}
    for name in names:
        result[f"sessions_per_s_{name}"] = round(median(name, "sessions_per_s"), 1)
        result[f"server_cpu_ms_per_session_{name}"] = round(median(name, "server_cpu_ms_per_session"), 3)
        result[f"event_loop_cpu_ms_per_session_{name}"] = round(median(name, "event_loop_cpu_ms_per_session"), 3)
    for name in names[1:]:
        result[f"ratio_{name}"] = round(median(name, "sessions_per_s") / median("no_client", "sessions_per_s"), 3)
        result[f"events_per_s_{name}"] = round(statistics.median(events[name]), 1)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(Path(root), port)
        try:
            with httpx.Client(base_url=f"{url}/api/v1/queue/default", timeout=60) as client:
                print(json.dumps(enqueue_latency(client, 1_000)), flush=True)
                print(json.dumps(list_latency(client, 100_000, 100)), flush=True)
                sessions = sessions_with_subscribers(url, port, client, psutil.Process(server.pid), 1_000, rounds=9)
                print(json.dumps(sessions), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
