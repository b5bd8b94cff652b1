"""`nodeloom models ACTION`: list, install and remove a running server's models.

`install SOURCE` starts an install job on the server and follows it with a progress bar until it ends. A local
SOURCE is sent made absolute: the server reads the files itself, so it must see them at the same path (it runs on
this machine, or shares its disk). A URL or a Hugging Face repo id is sent as it is; the server downloads it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType
from nodeloom.cli.client import ClientError, JSONObject, ServerClient, add_connection_arguments, count, print_json

JOB_POLL_S = 0.25
"""How often the install job is read while it runs."""
ENDED = frozenset({"completed", "error", "cancelled"})
"""The statuses of an install job that has ended."""


class ModelsClient:
    """The model manager routes of one server, under `/api/v2/models`."""

    def __init__(self, server: ServerClient) -> None:
        self._server = server

    def list_models(self) -> JSONObject:
        result: JSONObject = self._server.request("GET", "/api/v2/models/")
        return result

    def install(self, source: str, overrides: JSONObject, inplace: bool) -> JSONObject:
        """Starts the install; its job."""
        result: JSONObject = self._server.request(
            "POST",
            "/api/v2/models/install",
            params={"source": source, "inplace": inplace},
            json=overrides or None,
        )
        return result

    def get_job(self, job_id: int) -> JSONObject:
        result: JSONObject = self._server.request("GET", f"/api/v2/models/install/{job_id}")
        return result

    def cancel_job(self, job_id: int) -> JSONObject:
        result: JSONObject = self._server.request("DELETE", f"/api/v2/models/install/{job_id}")
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
    install = add("install", "Install a model from a file or folder, a URL or a Hugging Face repo, probing what it is")
    install.add_argument(
        "source",
        metavar="SOURCE",
        help="the model's file or folder, an http(s) URL, or a Hugging Face repo id (owner/name, "
        "owner/name:fp16, owner/name:fp16:subfolder, owner/name::subfolder)",
    )
    install.add_argument("--name", help="the model's name (default: the file or folder name)")
    install.add_argument("--base", choices=[base.value for base in BaseModelType], help="override the probed base")
    install.add_argument("--type", choices=[kind.value for kind in ModelType], help="override the probed type")
    install.add_argument("--copy", action="store_true", help="copy a local model into the models folder")
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
                return _install(client, args)
            else:
                client.delete(args.key)
                print(f"removed model {args.key}")
    except ClientError as e:
        print(f"nodeloom models {args.action}: {e}", file=sys.stderr)
        return 1
    return 0


def _install(client: ModelsClient, args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, field) for field in ("name", "base", "type")}
    job = client.install(
        _source(args.source),
        {field: value for field, value in overrides.items() if value is not None},
        inplace=not args.copy,
    )
    try:
        job = _follow(client, job)
    except KeyboardInterrupt:
        client.cancel_job(job["id"])
        print(f"nodeloom models install: cancelled install job {job['id']}", file=sys.stderr)
        return 130
    if job["status"] != "completed":
        reason = f"{job['error_reason']}: {job['error']}" if job["status"] == "error" else job["status"]
        print(f"nodeloom models install: install job {job['id']} {job['status']}: {reason}", file=sys.stderr)
        return 1
    installed: JSONObject = job["config_out"]
    if args.json:
        print_json(installed)
    else:
        print(f"installed {_describe(installed)} as {installed['key']}")
    return 0


def _source(source: str) -> str:
    """What the server is sent: a local file or folder made absolute, anything else (a URL, a repo id) as it is."""
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        return str(path.resolve())
    return source


def _follow(client: ModelsClient, job: JSONObject) -> JSONObject:
    """The job once it has ended, with its download's progress shown on stderr meanwhile."""
    # rich is imported here, not at the top: `nodeloom --help` imports every subcommand module.
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        redirect_stdout=False,
        redirect_stderr=False,
    )
    source = job["source"]
    label = source.get("url") or source.get("repo_id") or source.get("path")
    with progress:
        task = progress.add_task(f"{label}: {job['status']}", total=None)
        while job["status"] not in ENDED:
            time.sleep(JOB_POLL_S)
            job = client.get_job(job["id"])
            progress.update(
                task,
                description=f"{label}: {job['status']}",
                completed=job["bytes"],
                total=job["total_bytes"] or None,
            )
    return job


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
