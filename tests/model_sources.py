"""Real HTTP servers on 127.0.0.1 that model installs download from: one serving files, and one standing in for
the Hugging Face hub (the endpoints huggingface_hub and the downloads call), and a helper that waits for a job."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"completed", "error", "cancelled"}
REPO_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/([\w.-]+/[\w.-]+)/resolve/[^/]+/(.+)$")
_MODEL_INFO = re.compile(r"^/api/models/([\w.-]+/[\w.-]+)(?:/revision/[^/]+)?$")


@dataclass
class Served:
    """What the servers are told to do, and what they were asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    """Bytes by URL path."""
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """A repo's files by repo id, then by path in the repo."""
    listed_sizes: dict[str, int] = field(default_factory=dict)
    """Sizes the hub's listing gives instead of the true ones, by path in the repo."""
    cut_once: set[str] = field(default_factory=set)
    """URL paths whose first answer stops halfway through the body."""
    seconds_per_chunk: float = 0.0
    """How long to wait after each 4 KiB sent: a slow server, for cancelling and pausing."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """Each GET's path and Range header, in order."""


class _Handler(BaseHTTPRequestHandler):
    served: Served
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.served.requests.append((path, self.headers.get("Range")))
        if info := _MODEL_INFO.match(path):
            self._model_info(info.group(1))
        elif (resolve := _RESOLVE.match(path)) and resolve.group(1) in self.served.repos:
            repo = self.served.repos[resolve.group(1)]
            self._file(path, repo.get(resolve.group(2)), {"ETag": '"etag"', "X-Repo-Commit": REPO_COMMIT})
        else:
            self._file(path, self.served.files.get(path), {})

    def _model_info(self, repo_id: str) -> None:
        repo = self.served.repos.get(repo_id)
        if repo is None:
            body = json.dumps({"error": "Repository not found"}).encode()
            self._answer(404, body, {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"})
            return
        siblings = [
            {"rfilename": name, "size": self.served.listed_sizes.get(name, len(data))} for name, data in repo.items()
        ]
        body = json.dumps({"id": repo_id, "sha": REPO_COMMIT, "siblings": siblings}).encode()
        self._answer(200, body, {"Content-Type": "application/json"})

    def _file(self, path: str, data: bytes | None, headers: dict[str, str]) -> None:
        if data is None:
            self._answer(404, b"no such file", {})
            return
        start = 0
        status = 200
        if match := re.match(r"^bytes=(\d+)-$", self.headers.get("Range", "")):
            start = int(match.group(1))
            if start >= len(data):
                self._answer(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        cut = path in self.served.cut_once
        self.served.cut_once.discard(path)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body)), "Accept-Ranges": "bytes"}.items():
            self.send_header(name, value)
        self.end_headers()
        sent = body[: len(body) // 2] if cut else body
        for offset in range(0, len(sent), 4096):
            self.wfile.write(sent[offset : offset + 4096])
            self.wfile.flush()
            if self.served.seconds_per_chunk:
                time.sleep(self.served.seconds_per_chunk)
        if cut:
            self.close_connection = True

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(served: Served) -> Iterator[str]:
    """Serves `served` on 127.0.0.1 until the block ends; its base URL."""
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its path relative to it, as a repo holds them."""
    return {file.relative_to(folder).as_posix(): file.read_bytes() for file in folder.rglob("*") if file.is_file()}


def wait_for_job(client: httpx.Client, job: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
    """The install job once it has ended, read with `GET .../install/{id}` (`client` is based at /api/v2/models)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current: dict[str, Any] = client.get(f"/install/{job['id']}").json()
        if current["status"] in TERMINAL:
            return current
        assert time.monotonic() < deadline, f"install job {job['id']} did not end: {current}"
        time.sleep(0.05)


def install_and_wait(
    client: httpx.Client, source: str | Path, inplace: bool = True, **overrides: Any
) -> dict[str, Any]:
    """Installs `source` as the API does, and returns its ended job."""
    response = client.post("/install", params={"source": str(source), "inplace": inplace}, json=overrides or None)
    assert response.status_code == 201, response.text
    return wait_for_job(client, response.json())
