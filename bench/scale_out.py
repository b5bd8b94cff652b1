"""Scale-out on PostgreSQL: worker processes sharing one queue. One JSON object per measurement, a summary last.

(a) 2,000 sessions of a node that sleeps 20 ms (standing in for GPU work), drained by 1, 2 and 4 `nodeloom worker`
processes: sessions/s for each and the ratio to one; (b) claim and complete every item of a 10,000-item queue as a
worker's processor does (holding each by its id), events stored as the server stores them, by one process and by four
side by side: ms per item (the time of one item, then the queue's time per item with four processors), the median of
three runs taken in turn; (c) from a worker's node to a socket.io client of an API server in another process
(`nodeloom serve --no-processor`): the latency of 300 progress events, each carrying the time it was sent (one
machine, so one clock), p50 and p95; (d) 2,000 trivial sessions (three nodes each) enqueued over HTTP and drained by
`nodeloom serve`, with its worker process and with its processor in the API process, on SQLite and on PostgreSQL:
enqueue seconds and sessions/s, rounds taken in turn; (e) while a node holds the GIL for about 5 s in one call, the
latency of `/health` and `GET .../status` polled every 20 ms, p50 and p99, with the node in a worker process and in
the API process.

The server is `$NODELOOM_BENCH_POSTGRES_URL` (default: postgresql://postgres@127.0.0.1:5432/postgres); each case
runs on a scratch database made there and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import re
import secrets
import signal
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
import psycopg
import socketio

from bench_common import TRIVIAL_GRAPH, scratch_database
from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.custom_nodes import load_custom_nodes
from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_postgres import PostgresDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

# The node pack the worker processes load from the root's nodes/ folder.
PACK = """
import re
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


@invocation("bench_hold_gil", use_cache=False)
class BenchHoldGilInvocation(BaseInvocation):
    '''One regex call that backtracks for seconds: the regex engine holds the GIL throughout.'''

    length: int = InputField(default=22)

    def invoke(self, context) -> IntegerOutput:
        re.match(r"(a+)+$", "a" * self.length + "b")
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


def claim_complete_ms(queued: int, processors: int) -> float:
    """(b) Ms per item to claim and complete every item of a `queued`-item queue, events stored, by `processors`
    processes claiming side by side (each one a worker's processor): their time over the items."""
    context = multiprocessing.get_context("spawn")
    with scratch_database() as url:
        db, _, queue = open_queue(url)
        try:
            batch = Batch.model_validate({"graph": graph("integer"), "runs": queued})
            queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False)
        finally:
            db.close()
        ready = context.Barrier(processors + 1)
        claimers = [context.Process(target=claim_until_empty, args=(url, ready)) for _ in range(processors)]
        for claimer in claimers:
            claimer.start()
        ready.wait()
        started = time.perf_counter()
        for claimer in claimers:
            claimer.join()
        return (time.perf_counter() - started) / queued * 1000


def claim_until_empty(url: str, ready: Any) -> None:
    """One processor's part of (b): once all are ready, claims and completes items until none is left."""
    load_builtin_nodes()
    db, _, queue = open_queue(url)
    try:
        ready.wait()
        processor_id = f"bench-{os.getpid()}"
        while (item := queue.dequeue(processor_id)) is not None:
            queue.complete_queue_item(item.item_id, processor_id=processor_id)
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


@contextmanager
def server(root: Path, database_url: str, worker_processes: bool) -> Iterator[httpx.Client]:
    """`nodeloom serve` on `root`, its processor in a worker process or in itself; a client of its queue routes."""
    port = 9400 + secrets.randbelow(500)
    env = {
        **os.environ,
        "NODELOOM_DATABASE_URL": database_url,
        "NODELOOM_LOG_LEVEL": "warning",
        "NODELOOM_MAX_QUEUE_SIZE": "100000",
        "NODELOOM_WORKER_PROCESSES": str(worker_processes).lower(),
    }
    command = [sys.executable, "-m", "nodeloom", "serve", "--root", str(root), "--port", str(port)]
    with open(root.parent / "serve.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

            def ready() -> bool:
                try:
                    status = http.get("/api/v1/queue/default/processors")
                except httpx.TransportError:
                    return False
                return status.status_code == 200 and any(p["is_alive"] for p in status.json())

            wait_until(ready, 120, "the server and its processor")
            yield http
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def trivial_round(http: httpx.Client, sessions: int) -> tuple[float, float]:
    """Enqueues `sessions` trivial sessions with the processor paused, then runs them: enqueue seconds and
    sessions/s from resuming to the last completion (the status polled every 20 ms)."""
    queue = "/api/v1/queue/default"
    http.put(f"{queue}/processor/pause").raise_for_status()
    started = time.perf_counter()
    response = http.post(f"{queue}/enqueue_batch", json={"batch": {"graph": TRIVIAL_GRAPH, "runs": sessions}})
    response.raise_for_status()
    enqueue_s = time.perf_counter() - started
    batch_id = response.json()["batch"]["batch_id"]
    started = time.perf_counter()
    http.put(f"{queue}/processor/resume").raise_for_status()
    while http.get(f"{queue}/b/{batch_id}/status").json()["completed"] < sessions:
        time.sleep(0.02)
    rate = sessions / (time.perf_counter() - started)
    http.put(f"{queue}/prune").raise_for_status()
    return enqueue_s, rate


def trivial_sessions(engine: str, sessions: int, rounds: int) -> dict[str, Any]:
    """(d) The median enqueue seconds and sessions/s of `rounds` rounds with a worker process and in-process."""
    modes = {"worker_process": True, "in_process": False}
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_database()) if engine == "postgres" else ""
        for round_number in range(rounds):
            # Taken in turn, so that the machine's drift touches both alike.
            for mode in sorted(modes, reverse=round_number % 2 == 1):
                with root_with_pack() as root, server(root, url, modes[mode]) as http:
                    results[mode].append(trivial_round(http, sessions))
                if url:
                    with psycopg.connect(url, autocommit=True) as db:
                        db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    medians = {
        mode: {
            "enqueue_s": round(statistics.median(e for e, _ in runs), 3),
            "sessions_per_s": round(statistics.median(r for _, r in runs), 1),
        }
        for mode, runs in results.items()
    }
    worker, inline = medians["worker_process"]["sessions_per_s"], medians["in_process"]["sessions_per_s"]
    return {
        "case": "trivial_sessions",
        "engine": engine,
        "sessions": sessions,
        "rounds": rounds,
        **medians,
        "ratio": round(worker / inline, 3),
        "ms_per_session_added": round(1000 / worker - 1000 / inline, 3),
    }


def gil_hold_length(seconds: float) -> int:
    """The regex length whose one call takes about `seconds` here: each added character doubles it. It is timed at
    the first length that takes a tenth of a second, as a call of a few milliseconds is too noisy to double from."""
    length = 20
    while True:
        started = time.perf_counter()
        re.match(r"(a+)+$", "a" * length + "b")
        took = time.perf_counter() - started
        if took >= 0.1:
            return length + max(0, round(math.log2(seconds / took)))
        length += 1


def latencies_while_gil_held(worker_processes: bool, length: int) -> dict[str, Any]:
    """(e) `/health` and status latencies, polled every 20 ms from the enqueue of a node that holds the GIL in one
    call until its item finishes."""
    timings: dict[str, list[float]] = {"health": [], "status": []}
    with root_with_pack() as root, server(root, "", worker_processes) as http:
        queue = "/api/v1/queue/default"
        hold = {"nodes": {"n": {"id": "n", "type": "bench_hold_gil", "length": length}}, "edges": []}
        started = time.perf_counter()

        def poll() -> None:
            with httpx.Client(base_url=http.base_url, timeout=60) as poller:
                completed = 0
                while not completed:
                    for name, path in (("health", "/health"), ("status", f"{queue}/status")):
                        sent = time.perf_counter()
                        response = poller.get(path)
                        timings[name].append((time.perf_counter() - sent) * 1000)
                        response.raise_for_status()
                    completed = response.json()["queue"]["completed"]
                    time.sleep(0.02)

        # Polled from before the enqueue, on a thread of its own: a server whose own thread holds the GIL answers
        # nothing, the enqueue included, until the node is done.
        polling = threading.Thread(target=poll)
        polling.start()
        time.sleep(0.2)
        http.post(f"{queue}/enqueue_batch", json={"batch": {"graph": hold}}).raise_for_status()
        polling.join()
        held_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "case": "latency_while_gil_held",
        "node_in": "worker_process" if worker_processes else "api_process",
        "polled_s": round(held_s, 1),
    }
    for name, values in timings.items():
        result[f"{name}_requests"] = len(values)
        result[f"{name}_p50_ms"] = round(nearest_rank(values, 50), 1)
        result[f"{name}_p99_ms"] = round(nearest_rank(values, 99), 1)
        result[f"{name}_max_ms"] = round(max(values), 1)
    return result


def nearest_rank(values: list[float], percent: float) -> float:
    """The `percent` percentile by nearest rank: defined for a single value too (a server that answered once in the
    whole hold)."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(percent / 100 * len(ranked)) - 1)]


def emit(measurement: dict[str, Any]) -> None:
    print(json.dumps(measurement), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2_000, help="sessions drained in (a)")
    parser.add_argument("--queued", type=int, default=10_000, help="items claimed and completed in (b)")
    parser.add_argument("--claim-runs", type=int, default=3, help="runs of (b), of which the summary takes the median")
    parser.add_argument("--events", type=int, default=300, help="events timed in (c)")
    parser.add_argument("--trivial", type=int, default=2_000, help="trivial sessions a round in (d)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way in (d)")
    parser.add_argument(
        "--only", choices=["drain", "claim", "events", "trivial", "gil"], action="append", help="run these parts only"
    )
    args = parser.parse_args()
    parts = set(args.only or ["drain", "claim", "events", "trivial", "gil"])
    load_builtin_nodes()
    summary: dict[str, Any] = {"case": "summary"}
    if "drain" in parts:
        rates = {}
        for workers in (1, 2, 4):
            rates[workers] = drain_rate(workers, args.sessions)
            emit(
                {
                    "case": "drain",
                    "workers": workers,
                    "sessions": args.sessions,
                    "sessions_per_s": round(rates[workers], 1),
                }
            )
        summary["sessions_per_s"] = {str(n): round(rate, 1) for n, rate in rates.items()}
        summary["ratio_4_to_1"] = round(rates[4] / rates[1], 2)
    if "claim" in parts:
        times: dict[int, list[float]] = {1: [], 4: []}
        for run in range(args.claim_runs):
            for processors, runs in times.items():
                runs.append(claim_complete_ms(args.queued, processors))
                emit(
                    {
                        "case": "claim_complete",
                        "run": run + 1,
                        "queued": args.queued,
                        "processors": processors,
                        "ms_per_item": round(runs[-1], 3),
                    }
                )
        for processors, runs in times.items():
            summary[f"claim_complete_ms_{processors}_processors"] = round(statistics.median(runs), 3)
    if "events" in parts:
        latencies = event_latencies_ms(args.events)
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p95 = cuts[49], cuts[94]
        emit({"case": "event_latency", "events": len(latencies), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1)})
        summary["event_p95_ms"] = round(p95, 1)
    if "trivial" in parts:
        for engine in ("sqlite", "postgres"):
            trivial = trivial_sessions(engine, args.trivial, args.rounds)
            emit(trivial)
            summary[f"trivial_sessions_per_s_{engine}"] = {
                mode: trivial[mode]["sessions_per_s"] for mode in ("worker_process", "in_process")
            }
    if "gil" in parts:
        length = gil_hold_length(5.0)
        for worker_processes in (True, False):
            held = latencies_while_gil_held(worker_processes, length)
            emit(held)
            summary[f"health_p99_ms_node_in_{held['node_in']}"] = held["health_p99_ms"]
    emit(summary)


if __name__ == "__main__":
    main()
