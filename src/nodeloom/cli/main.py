"""The `nodeloom` command. Each subcommand lives in its own module, imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# subcommand -> module in nodeloom.cli with `add_arguments(parser)` and `run(args) -> int`
COMMANDS = {
    "run": ("run_graph", "Run a graph in this process and print each node's output"),
    "serve": ("serve", "Serve the HTTP API, with a worker process per device running the sessions"),
    "worker": ("worker", "Run session processors, one per device, on a root's database, with no HTTP server"),
    "enqueue": ("enqueue", "Send a graph to a running server as a batch; --wait follows it and prints its outputs"),
    "queue": ("queue", "Look at and steer a running server's session queue"),
    "stats": ("stats", "Print a queue item's invocation stats from a running server"),
    "images": ("images", "Look at a running server's images: recall the settings one was made with, make it again"),
    "models": ("models", "List, install and remove a running server's models"),
    "tokens": ("tokens", "Create, list and revoke the API tokens of a root folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodeloom", description="Generative-image workflows as node graphs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(module=module)
        importlib.import_module(f"nodeloom.cli.{module}").add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"nodeloom.cli.{args.module}")
    result: int = module.run(args)
    return result
