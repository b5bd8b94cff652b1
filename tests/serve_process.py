"""`nodeloom serve` in a child process, as a user runs it, for the proofs that kill it or load it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from tests.helpers import free_port, wait_for


class QueueClient(httpx.Client):
    """A server's default queue over HTTP, with the two calls the process proofs make most."""

    def __init__(self, server_url: str) -> None:
        super().__init__(base_url=f"{server_url}/api/v1/queue/default", timeout=60)

    def alive_processors(self) -> list[dict[str, Any]]:
        return [p for p in self.get("processors").json() if p["is_alive"]]

    def enqueue(self, graph: dict[str, Any], runs: int = 1, **batch: Any) -> list[int]:
        response = self.post("enqueue_batch", json={"batch": {"graph": graph, "runs": runs, **batch}})
        assert response.status_code == 200, response.text
        item_ids: list[int] = response.json()["item_ids"]
        return item_ids


class ServeProcess:
    """The server on one root and port, started again after each kill; its output appended to `log`.

    `settings` become `NODELOOM_*` variables of the child; `args` are added to its command line.
    """

    def __init__(self, root: Path, *args: str, **settings: object) -> None:
        self.root = root
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / f"{root.name}-server.log"
        self.env = {
            **os.environ,
            "NODELOOM_PROCESSOR_POLL_INTERVAL_S": "0.05",
            **{f"NODELOOM_{name.upper()}": str(value).lower() for name, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        # The output goes to a file: a pipe nobody reads would fill and block the server.
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "nodeloom", "serve", "--root", str(self.root), "--port", str(self.port)),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.url}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, what="the server to answer")

    def kill(self) -> None:
        """SIGKILL: the process dies at once, in whatever it was doing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def interrupt(self) -> None:
        """Ctrl-C: the server stops cleanly."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=30) == 0, self.log.read_text()[-3000:]
        self.process = None

    def close(self) -> None:
        """Kills the server if it still runs; for a `finally`."""
        if self.process is not None:
            self.kill()

    def query(self, sql: str) -> list[sqlite3.Row]:
        """Rows of the server's database, read beside it (or after it died)."""
        db = sqlite3.connect(self.root / "databases" / "nodeloom.db")
        try:
            db.row_factory = sqlite3.Row
            return db.execute(sql).fetchall()
        finally:
            db.close()


class WorkerProcess:
    """`nodeloom worker` on a root, with `args` on its command line; its output in `log`."""

    def __init__(self, root: Path, name: str, *args: str, **settings: object) -> None:
        self.log = root.parent / f"{root.name}-{name}.log"
        env = {
            **os.environ,
            "NODELOOM_PROCESSOR_POLL_INTERVAL_S": "0.05",
            **{f"NODELOOM_{key.upper()}": str(value).lower() for key, value in settings.items()},
        }
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nodeloom", "worker", "--root", str(root), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: the process dies at once, in whatever it was doing."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def interrupt(self) -> None:
        """Ctrl-C: the worker stops cleanly."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=30) == 0, self.log.read_text()[-3000:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
