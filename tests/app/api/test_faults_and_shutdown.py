"""What clients see when the processor's thread dies, and when the server shuts down under them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer
from tests.database_engines import empty_postgres_schema
from tests.helpers import graph_json, wait_for

StartServer = Callable[..., LiveServer]

ADD_GRAPH = graph_json([{"id": "sum", "type": "add", "a": 1, "b": 2}])


class ProcessorFault(BaseException):
    """A fault in the processor's own code that nothing there expects, so it ends the thread."""


def test_a_dead_processor_thread_is_reported_and_restarted(
    live_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The processor stays down for the restart interval: long enough for /health, polled on a loaded machine.
    server = live_server(processor_restart_interval_s=3.0)
    queue = server.services.session_queue
    complete = queue.complete_queue_item
    faults = [ProcessorFault("injected into the processor")]

    def complete_or_fail(*args: Any, **kwargs: Any) -> Any:
        if faults:
            raise faults.pop()
        return complete(*args, **kwargs)

    monkeypatch.setattr(queue, "complete_queue_item", complete_or_fail)
    api = f"{server.url}/api/v1/queue/default"
    (killed,) = httpx.post(f"{api}/enqueue_batch", json={"batch": {"graph": ADD_GRAPH}}).json()["item_ids"]

    def health() -> httpx.Response:
        return httpx.get(f"{server.url}/health")

    def health_when_down() -> httpx.Response | None:
        response = health()
        return response if response.status_code == 503 else None

    down = wait_for(health_when_down, what="/health to say the processor is down")
    assert down.json()["status"] == "processor_down"
    assert "ProcessorFault: injected into the processor" in down.json()["detail"]

    item = wait_for(lambda: (i := httpx.get(f"{api}/i/{killed}").json())["status"] != "in_progress" and i)
    assert item["status"] == "failed" and item["error_type"] == "Interrupted"
    assert "ProcessorFault: injected into the processor" in item["error_message"]
    assert "complete_or_fail" in item["error_traceback"]

    wait_for(lambda: health().status_code == 200, what="the processor to be restarted")
    assert health().json() == {"status": "ok", "processor_started": True, "detail": None}
    (after,) = httpx.post(f"{api}/enqueue_batch", json={"batch": {"graph": ADD_GRAPH}}).json()["item_ids"]
    wait_for(lambda: httpx.get(f"{api}/i/{after}").json()["status"] == "completed", what="an item after the restart")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "nodeloom_processor_restarts_total 1.0" in metrics and "nodeloom_processor_alive 1.0" in metrics


def test_a_wait_is_answered_at_once_when_the_server_shuts_down(live_server: StartServer) -> None:
    server = live_server(shutdown_timeout_s=30)
    api = f"{server.url}/api/v1/queue/default"
    batch = {"batch": {"graph": graph_json([{"id": "wait", "type": "test_wait", "seconds": 60}])}}
    result = httpx.post(f"{api}/enqueue_batch", json=batch).json()
    answers: list[httpx.Response] = []
    wait_for(lambda: not server.server_state.tasks, what="the enqueue's request to end")
    waiter = threading.Thread(
        target=lambda: answers.append(
            httpx.get(f"{api}/b/{result['batch']['batch_id']}/wait", params={"timeout": 60}, timeout=60)
        )
    )
    waiter.start()
    # The wait's request is being served once uvicorn runs a task for it, the only one.
    wait_for(lambda: server.server_state.tasks, what="the wait to reach the server")
    server.stop()
    waiter.join(timeout=10)
    (answer,) = answers
    assert answer.status_code == 503
    assert "shutting down" in answer.json()["detail"]


def test_a_failing_database_is_a_503_naming_it_not_the_clients_error(live_server: StartServer) -> None:
    server = live_server()
    with server.services.database.transaction() as cursor:
        cursor.execute("ALTER TABLE boards RENAME TO boards_away")
    try:
        response = httpx.get(f"{server.url}/api/v1/boards/")
    finally:
        with server.services.database.transaction() as cursor:
            cursor.execute("ALTER TABLE boards_away RENAME TO boards")

    assert response.status_code == 503
    assert response.json()["error_type"] == "DatabaseError" and "boards" in response.json()["detail"]
    assert httpx.get(f"{server.url}/api/v1/boards/").status_code == 200


def test_a_value_postgresql_cannot_store_is_the_clients_error(live_server: StartServer, postgres_url: str) -> None:
    empty_postgres_schema(postgres_url)
    server = live_server(database_url=postgres_url)

    response = httpx.get(f"{server.url}/api/v1/queue/a%00b/status")

    assert response.status_code == 422
    assert response.json()["error_type"] == "DatabaseValueError" and "0x00" in response.json()["detail"]
