"""`nodeloom models ACTION`: list, install and remove a running server's models.

The server reads the files itself: `install PATH` sends PATH made absolute, so the server must see the same
files at the same path (it runs on this machine, or shares its disk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType
from nodeloom.cli.client import ClientError, JSONObject, ServerClient, add_connection_arguments, count, print_json

INSTALL_TIMEOUT_S = 3600.0
"""Installing hashes every byte of the model, minutes for a large one, before the server answers."""


class ModelsClient:
    """The model manager routes of one server, under `/api/v2/models`."""

    def __init__(self, server: ServerClient) -> None:
        self._server = server

    def list_models(self) -> JSONObject:
        result: JSONObject = self._server.request("GET", "/api/v2/models/")
        return result

    def install(self, path: Path, overrides: JSONObject, inplace: bool) -> JSONObject:
        result: JSONObject = self._server.request(
            "POST",
            "/api/v2/models/install",
            params={"source": str(path), "inplace": inplace},
            json=overrides or None,
            timeout=INSTALL_TIMEOUT_S,
        )
        return result

    def delete(self, key: str) -> None:
        self._server.request("DELETE", f"/api/v2/models/i/{key}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        add_connection_arguments(sub)
        return sub

    add("list", "The installed models")
    install = add("install", "Install a model file or folder, probing what it is")
    install.add_argument("path", type=Path, metavar="PATH", help="the model's file or folder")
    install.add_argument("--name", help="the model's name (default: the file or folder name)")
    install.add_argument("--base", choices=[base.value for base in BaseModelType], help="override the probed base")
    install.add_argument("--type", choices=[kind.value for kind in ModelType], help="override the probed type")
    install.add_argument("--copy", action="store_true", help="copy the model into the models folder")
    add("remove", "Remove a model (and its files, if installing copied them)").add_argument(
        "key", metavar="KEY", help="the model's key"
    )


def run(args: argparse.Namespace) -> int:
    try:
        with ServerClient(args.url, args.token) as server:
            client = ModelsClient(server)
            if args.action == "list":
                _show_list(client.list_models(), args.json)
            elif args.action == "install":
                overrides = {field: getattr(args, field) for field in ("name", "base", "type")}
                installed = client.install(
                    args.path.expanduser().resolve(),
                    {field: value for field, value in overrides.items() if value is not None},
                    inplace=not args.copy,
                )
                if args.json:
                    print_json(installed)
                else:
                    print(f"installed {_describe(installed)} as {installed['key']}")
            else:
                client.delete(args.key)
                print(f"removed model {args.key}")
    except ClientError as e:
        print(f"nodeloom models {args.action}: {e}", file=sys.stderr)
        return 1
    return 0


def _describe(model: JSONObject) -> str:
    return f"'{model['name']}' ({model['base']} {model['type']}, {model['format']})"


def _show_list(listing: JSONObject, as_json: bool) -> None:
    if as_json:
        print_json(listing)
        return
    # rich is imported here, not at the top: `nodeloom --help` imports every subcommand module.
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    models: list[JSONObject] = listing["models"]
    table = Table(box=box.SIMPLE)
    for column in ("Key", "Name", "Base", "Type", "Format"):
        table.add_column(column, no_wrap=True)
    table.add_column("Path")
    for model in models:
        table.add_row(*(escape(str(model[field])) for field in ("key", "name", "base", "type", "format", "path")))
    console = Console()
    console.print(table)
    console.print(count(len(models), "model"))
