"""`nodeloom queue ACTION`: look at and steer a running server's session queue and its processor."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUSES
from nodeloom.cli.client import (
    STATUS_STYLES,
    JSONObject,
    ServerClient,
    add_server_arguments,
    call_server,
    count,
    print_json,
)
from nodeloom.cli.run_graph import print_outputs

Action = Callable[[ServerClient, argparse.Namespace], JSONObject]
Render = Callable[[JSONObject, argparse.Namespace], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help_text: str, action: Action, render: Render) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(call=action, render=render)
        add_server_arguments(sub)
        return sub

    def add_item(name: str, help_text: str, action: Action, render: Render) -> None:
        add(name, help_text, action, render).add_argument("item_id", metavar="ITEM", type=int, help="the queue item")

    add("status", "Counts by status and the processor's state", lambda c, a: c.get_queue_status(a.queue), _show_status)
    listing = add(
        "list",
        "The items in run order",
        lambda c, a: c.list_queue_items(a.queue, a.limit, a.status),
        _show_list,
    )
    listing.add_argument("--limit", type=int, default=50, help="the most items to list (default 50, at most 1000)")
    listing.add_argument("--status", choices=QUEUE_ITEM_STATUSES, help="only items with this status")
    add_item(
        "show", "One item: its state, error and outputs", lambda c, a: c.get_queue_item(a.queue, a.item_id), _show_item
    )
    add_item(
        "cancel",
        "Cancel an item, stopping it if it runs",
        lambda c, a: c.cancel_queue_item(a.queue, a.item_id),
        lambda item, a: print(f"item {item['item_id']}: {item['status']}"),
    )
    add(
        "cancel-batch",
        "Cancel every unfinished item of a batch",
        lambda c, a: c.cancel_by_batch_ids(a.queue, [a.batch_id]),
        lambda result, a: print(f"canceled {count(result['canceled'], 'item')} of batch {a.batch_id}"),
    ).add_argument("batch_id", metavar="BATCH", help="the batch")
    add(
        "clear",
        "Delete every item, stopping the running one",
        lambda c, a: c.clear(a.queue),
        lambda result, a: print(f"deleted {count(result['deleted'], 'item')} from queue {a.queue}"),
    )
    add(
        "prune",
        "Delete the finished items",
        lambda c, a: c.prune(a.queue),
        lambda result, a: print(f"deleted {count(result['deleted'], 'finished item')} from queue {a.queue}"),
    )
    add("pause", "Let the running item finish and start no other", lambda c, a: c.pause(a.queue), _show_processor)
    add("resume", "Start items again", lambda c, a: c.resume(a.queue), _show_processor)


def run(args: argparse.Namespace) -> int:
    def act(client: ServerClient) -> int:
        result = args.call(client, args)
        if args.json:
            print_json(result)
        else:
            args.render(result, args)
        return 0

    return call_server(args, act)


def processor_line(processor: JSONObject) -> str:
    if not processor["is_started"]:
        return "processor: stopped"
    if not processor.get("is_alive", True):
        return f"processor: down, restarting ({processor.get('error')})"
    if not processor["is_processing"]:
        return "processor: paused"
    current = processor.get("current_item_id")
    return "processor: processing" + ("" if current is None else f" item {current}")


def _show_processor(processor: JSONObject, args: argparse.Namespace) -> None:
    print(processor_line(processor))


def _show_status(status: JSONObject, args: argparse.Namespace) -> None:
    queue = status["queue"]
    counts = ", ".join(f"{queue[s]} {s.replace('_', ' ')}" for s in QUEUE_ITEM_STATUSES)
    print(f"queue {queue['queue_id']}: {counts} ({queue['total']} in all)")
    print(processor_line(status["processor"]))


def _show_list(page: JSONObject, args: argparse.Namespace) -> None:
    # rich is imported here, not at the top: `nodeloom --help` imports every subcommand module.
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Only the error may wrap: rich narrows wrappable columns first, so the batch id stays whole to be copied.
    table = Table(box=box.SIMPLE)
    table.add_column("Item", justify="right", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Priority", justify="right", no_wrap=True)
    table.add_column("Batch", no_wrap=True)
    table.add_column("Error")
    for item in page["items"]:
        table.add_row(
            str(item["item_id"]),
            f"[{STATUS_STYLES.get(item['status'], 'default')}]{item['status']}[/]",
            str(item["priority"]),
            item["batch_id"],
            escape(item["error_message"] or ""),
        )
    console = Console()
    console.print(table)
    if page["has_more"]:
        console.print(f"More items follow: raise --limit above {page['limit']} to see them.")


def session_outputs(session: JSONObject) -> dict[str, list[JSONObject]]:
    """Each source node's outputs in a session's JSON, one per prepared copy in execution order."""
    mapping: dict[str, str] = session["prepared_source_mapping"]
    outputs: dict[str, list[JSONObject]] = {}
    for prepared_id, output in session["results"].items():
        outputs.setdefault(mapping[prepared_id], []).append(output)
    return outputs


def _show_item(item: JSONObject, args: argparse.Namespace) -> None:
    field_values: list[dict[str, Any]] = item["field_values"] or []
    print(f"item {item['item_id']}: {item['status']}")
    for label, key in [
        ("batch", "batch_id"),
        ("session", "session_id"),
        ("priority", "priority"),
        ("created", "created_at"),
        ("started", "started_at"),
        ("completed", "completed_at"),
    ]:
        if item[key] is not None:
            print(f"  {label}: {item[key]}")
    if field_values:
        values = ", ".join(f"{v['node_path']}.{v['field_name']}={json.dumps(v['value'])}" for v in field_values)
        print(f"  field values: {values}")
    if item["error_type"] is not None:
        print(f"  error: {item['error_type']}: {item['error_message']}")
    outputs = session_outputs(item["session"])
    if outputs:
        print("outputs:")
        print_outputs(outputs, indent="  ")
