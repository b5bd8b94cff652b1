"""Scale-out on PostgreSQL: worker processes sharing one queue. One JSON object per measurement, a summary last.

(a) 2,000 sessions of a node that sleeps 20 ms (standing in for GPU work), drained by 1, 2 and 4 `nodeloom worker`
processes: sessions/s for each and the ratio to one; (b) claim and complete every item of a 10,000-item queue in
this process, events stored as the server stores them: ms per item; (c) from a worker's node to a socket.io client
of an API server in another process (`nodeloom serve --no-processor`): the latency of 300 progress events, each
carrying the time it was sent (one machine, so one clock), p50 and p95.

The server is `$NODELOOM_BENCH_POSTGRES_URL` (default: postgresql://postgres@127.0.0.1:5432/postgres); each case
runs on a scratch database made there and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import socketio
from psycopg import sql

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.custom_nodes import load_custom_nodes
from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_postgres import PostgresDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

SERVER_URL = os.environ.get("NODELOOM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# The node pack the worker processes load from the root's nodes/ folder.
PACK = """
import time

from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import InputField
from nodeloom.app.invocations.primitives import IntegerOutput


@invocation("bench_sleep", use_cache=False)
class BenchSleepInvocation(BaseInvocation):
    seconds: float = InputField(default=0.02)

    def invoke(self, context) -> IntegerOutput:
        time.sleep(self.seconds)
        return IntegerOutput(value=0)


@invocation("bench_stamp", use_cache=False)
class BenchStampInvocation(BaseInvocation):
    def invoke(self, context) -> IntegerOutput:
        context.util.signal_progress(repr(time.time()))
        return IntegerOutput(value=0)
"""


def graph(node_type: str) -> dict[str, Any]:
    return {"nodes": {"n": {"id": "n", "type": node_type}}, "edges": []}


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"nodeloom_bench_{secrets.token_hex(6)}"
    with psycopg.connect(SERVER_URL, autocommit=True) as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as server:
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def root_with_pack() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        (root / "nodes").mkdir(parents=True)
        (root / "nodes" / "bench_pack.py").write_text(PACK)
        load_custom_nodes(root / "nodes")  # this process enqueues its graphs, which it validates
        yield root


@contextmanager
def processes(commands: list[list[str]], url: str, root: Path) -> Iterator[None]:
    env = {**os.environ, "NODELOOM_DATABASE_URL": url, "NODELOOM_LOG_LEVEL": "warning"}
    with open(root.parent / "processes.log", "ab") as log:
        started = [
            subprocess.Popen([sys.executable, "-m", "nodeloom", *command], stdout=log, stderr=log, env=env)
            for command in commands
        ]
    try:
        yield
    finally:
        for process in started:
            process.send_signal(signal.SIGINT)
        for process in started:
            process.wait(timeout=60)


def open_queue(url: str) -> tuple[PostgresDatabase, DatabaseEventService, SqlSessionQueue]:
    db = PostgresDatabase(url)
    Migrator(db, MIGRATIONS).run()
    events = DatabaseEventService(db)
    return db, events, SqlSessionQueue(db, events, max_queue_size=100_000)


def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def drain_rate(workers: int, sessions: int = 2_000) -> float:
    """(a) Sessions/s of `workers` worker processes draining `sessions` 20 ms sessions, enqueue to last completion."""
    with scratch_database() as url, root_with_pack() as root:
        db, _, queue = open_queue(url)
        try:
            with processes([["worker", "--root", str(root)] for _ in range(workers)], url, root):
                wait_until(lambda: len(queue.list_processors()) == workers, 60, "the workers to register")
                batch = Batch.model_validate({"graph": graph("bench_sleep"), "runs": sessions})
                started = time.perf_counter()
                queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False)
                wait_until(lambda: queue.get_queue_status(DEFAULT_QUEUE_ID).completed == sessions, 600, "the sessions")
                return sessions / (time.perf_counter() - started)
        finally:
            db.close()


def claim_complete_ms(queued: int = 10_000) -> float:
    """(b) Ms per item to claim and complete every item of a `queued`-item queue, events stored."""
    with scratch_database() as url:
        db, _, queue = open_queue(url)
        try:
            batch = Batch.model_validate({"graph": graph("integer"), "runs": queued})
            queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False)
            started = time.perf_counter()
            while (item := queue.dequeue("bench")) is not None:
                queue.complete_queue_item(item.item_id)
            return (time.perf_counter() - started) / queued * 1000
        finally:
            db.close()


async def listen(api_url: str, count: int, enqueue: Any) -> list[float]:
    latencies: list[float] = []
    done = asyncio.Event()
    client = socketio.AsyncClient()

    def on_progress(data: dict[str, Any]) -> None:
        latencies.append((time.time() - float(data["message"])) * 1000)
        if len(latencies) == count:
            done.set()

    client.on("invocation_progress", on_progress)
    await client.connect(api_url, socketio_path="/ws/socket.io", transports=["websocket"])
    await client.call("subscribe_queue", {"queue_id": DEFAULT_QUEUE_ID}, timeout=10)
    for _ in range(count):
        await asyncio.to_thread(enqueue)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(done.wait(), 120)
    await client.disconnect()
    return latencies


def event_latencies_ms(count: int = 300) -> list[float]:
    """(c) Ms from a worker's node to a socket.io client of an API server in another process."""
    with scratch_database() as url, root_with_pack() as root:
        port = 9400 + secrets.randbelow(500)
        api_url = f"http://127.0.0.1:{port}"
        commands = [
            ["serve", "--root", str(root), "--port", str(port), "--no-processor"],
            ["worker", "--root", str(root)],
        ]
        with processes(commands, url, root), httpx.Client(base_url=api_url, timeout=30) as http:

            def healthy() -> bool:
                try:
                    return http.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, 60, "the API server")

            def enqueue() -> None:
                body = {"batch": {"graph": graph("bench_stamp")}}
                http.post("/api/v1/queue/default/enqueue_batch", json=body).raise_for_status()

            return asyncio.run(listen(api_url, count, enqueue))


def emit(measurement: dict[str, Any]) -> None:
    print(json.dumps(measurement), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2_000, help="sessions drained in (a)")
    parser.add_argument("--queued", type=int, default=10_000, help="items claimed and completed in (b)")
    parser.add_argument("--events", type=int, default=300, help="events timed in (c)")
    args = parser.parse_args()
    load_builtin_nodes()
    summary: dict[str, Any] = {"case": "summary"}
    rates = {}
    for workers in (1, 2, 4):
        rates[workers] = drain_rate(workers, args.sessions)
        emit(
            {"case": "drain", "workers": workers, "sessions": args.sessions, "sessions_per_s": round(rates[workers], 1)}
        )
    summary["sessions_per_s"] = {str(n): round(rate, 1) for n, rate in rates.items()}
    summary["ratio_4_to_1"] = round(rates[4] / rates[1], 2)
    ms = claim_complete_ms(args.queued)
    emit({"case": "claim_complete", "queued": args.queued, "ms_per_item": round(ms, 3)})
    summary["claim_complete_ms"] = round(ms, 3)
    latencies = event_latencies_ms(args.events)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p95 = cuts[49], cuts[94]
    emit({"case": "event_latency", "events": len(latencies), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1)})
    summary["event_p95_ms"] = round(p95, 1)
    emit(summary)


if __name__ == "__main__":
    main()
