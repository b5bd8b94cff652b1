"""`nodeloom enqueue GRAPH.json`: send a batch to a running server; with `--wait`, follow it and print its outputs.

Exit codes: 0 when the batch was enqueued (with `--wait`: when every item completed), 1 when the server refused
it or (with `--wait`) an item did not complete, 2 when the graph, the data file or the command line is invalid,
130 when interrupted while waiting.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeloom.app.services.session_queue.session_queue_common import FINISHED_STATUSES
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.cli.client import (
    STATUS_STYLES,
    JSONObject,
    ServerClient,
    add_server_arguments,
    call_server,
    count,
    print_json,
)
from nodeloom.cli.run_graph import UsageError, print_outputs, read_graph_json, read_json_file
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

WAIT_POLL_S = 5.0
"""The longest one wait request lasts: it returns at once when the batch finishes, so this only bounds how long
the bars can lag behind the queue when the socket missed an event (or there is no socket)."""

SOCKET_TIMEOUT_S = 2.0


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", type=Path, help="a graph JSON file: {nodes: {id: node}, edges: [...]}")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="a JSON file holding the batch's data: a list of zipped lists of {node_path, field_name, items}",
    )
    parser.add_argument(
        "--runs", type=_positive(int), default=1, metavar="N", help="run every combination N times (default 1)"
    )
    parser.add_argument("--prepend", action="store_true", help="run the batch before everything pending")
    parser.add_argument(
        "--all-or-nothing",
        action="store_true",
        help="enqueue nothing if the queue has no room for every session (else its first sessions that fit)",
    )
    parser.add_argument(
        "--timeout", type=_positive(float), metavar="S", help="fail a session that runs longer than S seconds"
    )
    parser.add_argument("--wait", action="store_true", help="show each item's progress, then print its outputs")
    add_server_arguments(parser)


def read_data(path: Path) -> list[list[Any]]:
    """The `data` list in `path`; the server checks the entries themselves against the graph."""
    data = read_json_file(path)
    if not isinstance(data, list) or not all(isinstance(zipped, list) for zipped in data):
        raise UsageError(f"{path} must hold a list of lists of {{node_path, field_name, items}} objects")
    return data


def build_batch(args: argparse.Namespace) -> JSONObject:
    """The batch to send; its id is made here so that the events of its items are known before it is enqueued.

    The graph is validated by the server, which may know node types (from its node packs) that this side does not.
    """
    return {
        "batch_id": uuid_string(),
        "graph": read_graph_json(args.graph, []),
        "data": None if args.data is None else read_data(args.data),
        "runs": args.runs,
        "timeout": args.timeout,
    }


def run(args: argparse.Namespace) -> int:
    try:
        batch = build_batch(args)
    except NodeloomError as e:
        print(f"nodeloom enqueue: invalid input: {e}", file=sys.stderr)
        return 2
    action = _enqueue_and_wait if args.wait else _enqueue
    return call_server(args, lambda client: action(client, args, batch))


def _enqueue(client: ServerClient, args: argparse.Namespace, batch: JSONObject) -> int:
    result = client.enqueue_batch(args.queue, batch, args.prepend, args.all_or_nothing)
    if args.json:
        print_json(result)
    else:
        _print_enqueued(result)
    return 0


def _print_enqueued(result: JSONObject) -> None:
    ids = ", ".join(str(item_id) for item_id in result["item_ids"])
    shortfall = "" if result["enqueued"] == result["requested"] else f" of {result['requested']} requested"
    enqueued = count(result["enqueued"], "item")
    # Flushed at once: whoever reads a piped stdout learns the batch id before the wait ends.
    print(f"batch {result['batch']['batch_id']}: enqueued {enqueued}{shortfall}: {ids}", flush=True)


def _enqueue_and_wait(client: ServerClient, args: argparse.Namespace, batch: JSONObject) -> int:
    # rich is imported here, not at the top: `nodeloom --help` imports every subcommand module.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    batch_id: str = batch["batch_id"]
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=console,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    watcher = BatchWatcher(progress, batch_id, node_count=len(batch["graph"]["nodes"]))
    try:
        with _live_events(args.url, args.token, args.queue, watcher.on_event, console):
            result = client.enqueue_batch(args.queue, batch, args.prepend, args.all_or_nothing)
            if not args.json:
                _print_enqueued(result)
            watcher.add_items(result["item_ids"])
            with progress:
                final = _wait_until_finished(client, args.queue, batch_id, watcher)
    except KeyboardInterrupt:
        return _cancel_on_interrupt(client, args.queue, batch_id, console)
    if args.json:
        print_json(final)
    else:
        for item in final["items"]:
            print(f"item {item['item_id']}: {item['status']}")
            print_outputs(item["outputs"], indent="  ")
            if item["status"] == "failed":
                print(f"item {item['item_id']}: error: {item['error_type']}: {item['error_message']}", file=sys.stderr)
    return 0 if all(item["status"] == "completed" for item in final["items"]) else 1


def _wait_until_finished(client: ServerClient, queue_id: str, batch_id: str, watcher: BatchWatcher) -> JSONObject:
    """The wait route's answer once every item has finished; its statuses are the truth the bars end on."""
    while True:
        result = client.wait_for_batch(queue_id, batch_id, WAIT_POLL_S)
        for item in result["items"]:
            watcher.on_status(item["item_id"], item["status"])
        if result["finished"]:
            return result


def _cancel_on_interrupt(client: ServerClient, queue_id: str, batch_id: str, console: Console) -> int:
    """Cancels the batch when the user says so; without a terminal to ask on, interrupting means cancel."""
    if sys.stdin.isatty() and not _confirm_cancel(console):
        console.print(f"Batch {batch_id} stays in the queue.")
        return 130
    result = client.cancel_by_batch_ids(queue_id, [batch_id])
    console.print(f"Canceled {count(result['canceled'], 'item')} of batch {batch_id}.")
    return 130


def _confirm_cancel(console: Console) -> bool:
    from rich.prompt import Confirm

    try:
        return Confirm.ask(
            "Cancel the batch? \\[y/N]", default=False, show_choices=False, show_default=False, console=console
        )
    except (KeyboardInterrupt, EOFError):
        # A second Ctrl-C or a closed stdin is no "yes": canceling is the step that needs one.
        return False


@contextmanager
def _live_events(
    url: str, token: str | None, queue_id: str, on_event: Callable[[str, Any], None], console: Console
) -> Iterator[None]:
    """Feeds `on_event` the queue's socket.io events while open; if no socket can be had, the wait polls go on alone."""
    # socketio is imported here, not at the top: `nodeloom --help` imports every subcommand module.
    import socketio
    from rich.markup import escape

    from nodeloom.app.api.sockets import SOCKET_PATH

    sio = socketio.Client(reconnection=False)
    sio.on("*", on_event)
    try:
        try:
            sio.connect(
                url,
                socketio_path=SOCKET_PATH,
                transports=["websocket"],
                auth=None if token is None else {"token": token},
                wait_timeout=SOCKET_TIMEOUT_S,
            )
            sio.call("subscribe_queue", {"queue_id": queue_id}, timeout=SOCKET_TIMEOUT_S)
        except socketio.exceptions.SocketIOError as e:
            reason = escape(str(e) or type(e).__name__)
            console.print(f"[dim]No live progress (socket.io: {reason}); waiting on the server's answers alone.[/]")
        yield
    finally:
        sio.disconnect()


class BatchWatcher:
    """One progress bar per item of a batch, fed by socket events (on the socket's thread) and by wait answers.

    A bar counts the source nodes that completed, plus the running node's reported fraction.
    """

    def __init__(self, progress: Progress, batch_id: str, node_count: int) -> None:
        self._progress = progress
        self._batch_id = batch_id
        self._node_count = max(node_count, 1)
        self._lock = threading.Lock()
        self._tasks: dict[int, TaskID] = {}
        self._statuses: dict[int, str] = {}
        self._done_nodes: dict[int, set[str]] = {}

    def add_items(self, item_ids: list[int]) -> None:
        with self._lock:
            for item_id in item_ids:
                self._task(item_id)

    def on_status(self, item_id: int, status: str) -> None:
        with self._lock:
            self._set_status(item_id, status)

    def on_event(self, name: str, payload: Any) -> None:
        if not isinstance(payload, dict) or payload.get("batch_id") != self._batch_id:
            return
        item_id = payload.get("item_id")
        if not isinstance(item_id, int):
            return
        with self._lock:
            if name == "queue_item_status_changed":
                self._set_status(item_id, str(payload.get("status")))
            elif self._statuses.get(item_id) not in FINISHED_STATUSES:
                self._on_node_event(item_id, name, payload)

    def _on_node_event(self, item_id: int, name: str, payload: dict[str, Any]) -> None:
        from rich.markup import escape

        source_id = str(payload.get("invocation_source_id", "?"))
        invocation = payload.get("invocation")
        node_type = invocation.get("type", "?") if isinstance(invocation, dict) else "?"
        node = escape(f"{source_id} ({node_type})")
        done = self._done_nodes.setdefault(item_id, set())
        task = self._task(item_id)
        if name == "invocation_started":
            self._progress.update(task, description=f"item {item_id}: {node}", completed=len(done))
        elif name == "invocation_progress":
            fraction = payload.get("percentage") or 0.0
            message = escape(str(payload.get("message", "")))
            self._progress.update(task, description=f"item {item_id}: {node} {message}", completed=len(done) + fraction)
        elif name == "invocation_complete":
            done.add(source_id)
            self._progress.update(task, completed=len(done))
        elif name == "invocation_error":
            self._progress.update(task, description=f"item {item_id}: {node} [red]failed[/]")

    def _task(self, item_id: int) -> TaskID:
        if item_id not in self._tasks:
            self._tasks[item_id] = self._progress.add_task(f"item {item_id}: pending", total=self._node_count)
        return self._tasks[item_id]

    def _set_status(self, item_id: int, status: str) -> None:
        previous = self._statuses.get(item_id)
        # A finished item never changes again: a late event must not move its bar back.
        if status == previous or previous in FINISHED_STATUSES:
            return
        self._statuses[item_id] = status
        task = self._task(item_id)
        label = f"item {item_id}: [{STATUS_STYLES.get(status, 'default')}]{status.replace('_', ' ')}[/]"
        if status in FINISHED_STATUSES:
            self._progress.update(task, description=label, completed=self._node_count)
        else:
            self._progress.update(task, description=label)
