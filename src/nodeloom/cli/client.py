"""The HTTP client of the subcommands that talk to a running `nodeloom serve`, and the options they share."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:9090"
TOKEN_VARIABLE = "NODELOOM_TOKEN"
REQUEST_TIMEOUT_S = 10.0

JSONObject = dict[str, Any]


class ClientError(NodeloomError):
    """The nodeloom server refused the request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status of the refusal; None when no answer came."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every client subcommand takes: which server, its token, and JSON output."""
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the nodeloom server (default {DEFAULT_URL})")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_VARIABLE) or None,
        help=f"the server's API token, when it has tokens (default: ${TOKEN_VARIABLE})",
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON instead of a readable summary")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection options, and which queue."""
    add_connection_arguments(parser)
    parser.add_argument("--queue", default=DEFAULT_QUEUE_ID, help=f"the queue (default {DEFAULT_QUEUE_ID!r})")


STATUS_STYLES = {"pending": "dim", "in_progress": "cyan", "completed": "green", "failed": "red", "canceled": "yellow"}
"""The rich style of each queue item status."""


def count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def call_server(args: argparse.Namespace, action: Callable[[ServerClient], int]) -> int:
    """Runs `action` with a client for `args.url`; a refusal or an unreachable server is reported (exit status 1)."""
    try:
        with ServerClient(args.url, args.token) as client:
            return action(client)
    except ClientError as e:
        print(f"nodeloom {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _error_detail(response: httpx.Response) -> str:
    """The server's `detail`: a message, or FastAPI's list of validation errors, made one readable line."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(_validation_error_line(error) for error in detail)
    return str(detail)


def _validation_error_line(error: object) -> str:
    """`where: what` for one of FastAPI's validation errors; `where` drops the leading "body" or "query"."""
    if not isinstance(error, dict):
        return str(error)
    where = ".".join(str(part) for part in error.get("loc", [])[1:])
    message = str(error.get("msg", error))
    return f"{where}: {message}" if where else message


class ServerClient:
    """One nodeloom server's routes: `request` for any route, the methods below for the queue's."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        # httpx is imported here, not at the top: `nodeloom --help` imports every subcommand module.
        import httpx

        self.base_url = base_url
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=base_url, headers=headers)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, timeout: float = REQUEST_TIMEOUT_S, **kwargs: Any) -> Any:
        """The answer's JSON (None for an answer without a body); `ClientError` for a refusal or no answer."""
        import httpx

        try:
            response = self._http.request(method, path, timeout=timeout, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ClientError(
                f"cannot reach the nodeloom server at {self.base_url} ({e}): is `nodeloom serve` running?"
            ) from e
        except httpx.TransportError as e:
            raise ClientError(f"the request to {self.base_url} failed: {str(e) or type(e).__name__}") from e
        if response.is_error:
            hint = f" (pass it with --token or ${TOKEN_VARIABLE})" if response.status_code == 401 else ""
            raise ClientError(
                f"the server answered {response.status_code} {response.reason_phrase}: {_error_detail(response)}{hint}",
                status=response.status_code,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as e:
            raise ClientError(f"{self.base_url} did not answer {path} with JSON: is it a nodeloom server?") from e

    def _request(self, method: str, path: str, timeout: float = REQUEST_TIMEOUT_S, **kwargs: Any) -> JSONObject:
        """A queue route's answer, which is always a JSON object."""
        result = self.request(method, f"/api/v1/queue{path}", timeout=timeout, **kwargs)
        if not isinstance(result, dict):
            raise ClientError(f"{self.base_url} did not answer {path} with a JSON object: is it a nodeloom server?")
        return result

    def enqueue_batch(self, queue_id: str, batch: JSONObject, prepend: bool, all_or_nothing: bool) -> JSONObject:
        body = {"batch": batch, "prepend": prepend, "all_or_nothing": all_or_nothing}
        return self._request("POST", f"/{queue_id}/enqueue_batch", json=body)

    def wait_for_batch(self, queue_id: str, batch_id: str, timeout: float) -> JSONObject:
        """Returns when the batch has finished or after `timeout` seconds; `finished` says which."""
        return self._request(
            "GET", f"/{queue_id}/b/{batch_id}/wait", params={"timeout": timeout}, timeout=timeout + REQUEST_TIMEOUT_S
        )

    def get_queue_status(self, queue_id: str) -> JSONObject:
        return self._request("GET", f"/{queue_id}/status")

    def list_queue_items(self, queue_id: str, limit: int, status: str | None) -> JSONObject:
        params: dict[str, str | int] = {"limit": limit} if status is None else {"limit": limit, "status": status}
        return self._request("GET", f"/{queue_id}/list", params=params)

    def get_queue_item(self, queue_id: str, item_id: int) -> JSONObject:
        return self._request("GET", f"/{queue_id}/i/{item_id}")

    def get_queue_item_stats(self, queue_id: str, item_id: int) -> JSONObject:
        return self._request("GET", f"/{queue_id}/i/{item_id}/stats")

    def cancel_queue_item(self, queue_id: str, item_id: int) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/i/{item_id}/cancel")

    def cancel_by_batch_ids(self, queue_id: str, batch_ids: list[str]) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/cancel_by_batch_ids", json={"batch_ids": batch_ids})

    def clear(self, queue_id: str) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/clear")

    def prune(self, queue_id: str) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/prune")

    def pause(self, queue_id: str) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/processor/pause")

    def resume(self, queue_id: str) -> JSONObject:
        return self._request("PUT", f"/{queue_id}/processor/resume")
