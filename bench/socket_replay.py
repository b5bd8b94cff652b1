"""Replay from the events table: a socket.io client that reconnects with `after: 0` to an API server that has none of
the queue's events in its memory (it started after they were stored) gets them all from the table. One JSON object
per engine: the replay's time to the last event and to the answer, events/s, and /health's latency (p50, p95, max),
polled without a pause while the replay runs, beside its latency before.

The events are stored by this process as a worker stores them; `nodeloom serve --no-processor` serves them. The
PostgreSQL case runs on a scratch database made on `$NODELOOM_BENCH_POSTGRES_URL` (default:
postgresql://postgres@127.0.0.1:5432/postgres) and dropped after; `--engines sqlite` leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import socketio

from bench_common import scratch_database
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import QueueItemsRetriedEvent
from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.invocation_services import open_database

QUEUE_ID = "default"


def store_events(root: Path, settings: dict[str, str], count: int) -> None:
    """Stores `count` events of the queue, each about the size of a status change, in writes of 500."""
    database = open_database(load_config(root, **settings))
    events = DatabaseEventService(database)
    try:
        for start in range(0, count, 500):
            for _ in range(min(500, count - start)):
                events.dispatch(QueueItemsRetriedEvent(queue_id=QUEUE_ID, retried_item_ids=list(range(100))))
            events.flush()
    finally:
        database.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(root: Path, settings: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **{f"NODELOOM_{name.upper()}": value for name, value in settings.items()}}
    command = [sys.executable, "-m", "nodeloom", "serve", "--no-processor", "--root", str(root), "--port", str(port)]
    with open(root / "server.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def health_latencies(url: str, stop: Any) -> list[float]:
    """The latency of each GET /health, one after the other, until `stop`."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
    return latencies


def poll_health(url: str, stop: Any, results: Any) -> None:
    results.send(health_latencies(url, stop))


def summary_ms(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


async def replay(url: str, count: int) -> dict[str, float]:
    """Subscribes with `after: 0`; the seconds to the answer and to the last of `count` events."""
    received = 0
    done = asyncio.Event()

    def on_event(name: str, data: dict[str, Any]) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    sio = socketio.AsyncClient()
    sio.on("*", on_event)
    await sio.connect(url, socketio_path="/ws/socket.io", transports=["websocket"])
    try:
        started = time.perf_counter()
        answer = await sio.call("subscribe_queue", {"queue_id": QUEUE_ID, "after": 0}, timeout=120)
        answered = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), timeout=120)
        finished = time.perf_counter() - started
    finally:
        await sio.disconnect()
    assert answer["last_seq"] == count, answer
    return {"answer_s": round(answered, 3), "last_event_s": round(finished, 3)}


def measure(engine: str, root: Path, settings: dict[str, str], count: int) -> dict[str, Any]:
    store_events(root, settings, count)
    with serve(root, settings) as url:
        quiet = threading.Event()
        threading.Timer(1.0, quiet.set).start()
        before = health_latencies(url, quiet)
        # Polled from a process of its own: in this one, the client's work on the events would hold the GIL.
        stop_polling = multiprocessing.Event()
        receiver, sender = multiprocessing.Pipe(duplex=False)
        poller = multiprocessing.Process(target=poll_health, args=(url, stop_polling, sender))
        poller.start()
        try:
            timing = asyncio.run(replay(url, count))
        finally:
            stop_polling.set()
            polled: list[float] = receiver.recv()
            poller.join()
    return {
        "case": "replay_from_table",
        "engine": engine,
        "events": count,
        **timing,
        "events_per_s": round(count / timing["last_event_s"]),
        "health_before": summary_ms(before),
        "health_during": summary_ms(polled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events stored and replayed")
    parser.add_argument("--engines", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    args = parser.parse_args()
    keep = {"events_keep": str(max(args.events, 10_000))}
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            if engine == "sqlite":
                print(json.dumps(measure(engine, root, keep, args.events)), flush=True)
            elif engine == "postgres":
                with scratch_database() as url:
                    print(json.dumps(measure(engine, root, {**keep, "database_url": url}, args.events)), flush=True)
            else:
                parser.error(f"--engines takes sqlite and postgres, not {engine!r}")


if __name__ == "__main__":
    main()
