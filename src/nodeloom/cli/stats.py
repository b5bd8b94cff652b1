"""`nodeloom stats ITEM`: a finished queue item's invocation stats, as the table the server logs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodeloom.app.services.invocation_stats.invocation_stats_common import (
    GraphExecutionStatsSummary,
    InvocationStatsSummary,
    NodeExecutionStatsSummary,
)
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary
from nodeloom.cli.client import ServerClient, add_server_arguments, call_server, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("item_id", metavar="ITEM", type=int, help="the queue item")
    add_server_arguments(parser)


def summary_from_dict(data: dict[str, Any]) -> InvocationStatsSummary:
    """The summary whose `as_dict()` gave `data`; raises `TypeError` or `KeyError` for any other shape."""
    return InvocationStatsSummary(
        graph_stats=GraphExecutionStatsSummary(**data["graph_stats"]),
        model_cache_stats=ModelCacheStatsSummary(**data["model_cache_stats"]),
        node_stats=[NodeExecutionStatsSummary(**node) for node in data["node_stats"]],
        vram_usage_gb=data["vram_usage_gb"],
    )


def run(args: argparse.Namespace) -> int:
    def show(client: ServerClient) -> int:
        stats = client.get_queue_item_stats(args.queue, args.item_id)
        if args.json:
            print_json(stats)
            return 0
        try:
            summary = summary_from_dict(stats)
        except (TypeError, KeyError) as e:
            # A server of another version may shape its stats differently: say so instead of a traceback.
            print(f"nodeloom stats: the server's stats are not in the shape this client reads ({e})", file=sys.stderr)
            return 1
        print(summary)
        return 0

    return call_server(args, show)
