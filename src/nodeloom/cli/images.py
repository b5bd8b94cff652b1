"""`nodeloom images recall NAME`: the settings an image was made with, read from its metadata on a running server;
with `--enqueue`, the text-to-image graph rebuilt from them is enqueued again (`--seed N` for a new seed).

Exit codes: 0 when the settings were printed (and enqueued), 1 when the server refused or has no such image,
2 when the image carries no settings that rebuild a graph.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from nodeloom.app.invocations.baseinvocation import describe_error
from nodeloom.app.services.shared.default_graphs import NOISE_ID, RefinerNeedsSDXLError, text_to_image_graph
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.cli.client import JSONObject, ServerClient, add_server_arguments, call_server, print_json
from nodeloom.errors import NodeloomError

RECALLED_SETTINGS = (
    "positive_prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "cfg_scale",
    "scheduler",
    "seed",
)
"""The core metadata settings that the text-to-image graph takes, by their metadata keys (and its argument names,
but for the prompt)."""
RECALLED_REFINER_SETTINGS = {"refiner_model": "refiner", "refiner_start": "refiner_start"}
"""The SDXL refiner's core metadata settings, by their metadata keys, and the graph's argument names."""


class RecallError(NodeloomError):
    """The image's metadata does not hold what rebuilds its graph."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    recall = actions.add_parser(
        "recall",
        help="print the settings an image was made with; --enqueue makes it again",
        description="Print the settings an image was made with, from its metadata; --enqueue makes it again.",
    )
    recall.add_argument("image_name", metavar="NAME", help="the image's name")
    recall.add_argument("--enqueue", action="store_true", help="enqueue the text-to-image graph of these settings")
    recall.add_argument("--seed", type=int, metavar="N", help="with --enqueue, use seed N instead of the image's")
    add_server_arguments(recall)


def settings_line(name: str, value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        value = f"{value['name']} ({value.get('base', '?')}, key {value.get('key', '?')})"
    elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
        value = ", ".join(f"{item.get('model', {}).get('name', '?')} @ {item.get('weight', '?')}" for item in value)
    return f"{name}: {value}"


def recall_batch(metadata: JSONObject, seed: int | None) -> JSONObject:
    """The batch that makes the image of `metadata` again, with `seed` if given; `RecallError` if it cannot."""
    if "model" not in metadata or "positive_prompt" not in metadata:
        raise RecallError("its metadata names no model and prompt to make it again with")
    settings = {key: metadata[key] for key in RECALLED_SETTINGS if metadata.get(key) is not None}
    if seed is not None:
        settings["seed"] = seed
    settings["prompt"] = settings.pop("positive_prompt")
    settings |= {
        name: metadata[key] for key, name in RECALLED_REFINER_SETTINGS.items() if metadata.get(key) is not None
    }
    try:
        graph = text_to_image_graph(metadata["model"], **settings)
    except (ValidationError, TypeError, RefinerNeedsSDXLError) as error:
        detail = describe_error(error) if isinstance(error, ValidationError) else str(error)
        raise RecallError(f"its settings do not make a text-to-image graph: {detail}") from error
    return {"batch_id": uuid_string(), "graph": graph.model_dump(mode="json"), "runs": 1}


def print_settings(metadata: JSONObject) -> None:
    for name, value in metadata.items():
        print(settings_line(name, value))


def run(args: argparse.Namespace) -> int:
    def recall(client: ServerClient) -> int:
        metadata = client.request("GET", f"/api/v1/images/i/{quote(args.image_name, safe='')}/metadata")
        if not isinstance(metadata, dict):
            print(f"nodeloom images recall: image {args.image_name} carries no metadata", file=sys.stderr)
            return 2
        if not args.enqueue:
            if args.json:
                print_json(metadata)
            else:
                print_settings(metadata)
            return 0
        try:
            batch = recall_batch(metadata, args.seed)
        except RecallError as error:
            print(f"nodeloom images recall: image {args.image_name} cannot be made again: {error}", file=sys.stderr)
            return 2
        result = client.enqueue_batch(args.queue, batch, prepend=False, all_or_nothing=False)
        if args.json:
            print_json({"metadata": metadata, "enqueued": result})
            return 0
        print_settings(metadata)
        ids = ", ".join(str(item_id) for item_id in result["item_ids"])
        print(f"enqueued as item {ids} with seed {batch['graph']['nodes'][NOISE_ID]['seed']}")
        return 0

    return call_server(args, recall)
