"""An API server's services and a worker's, each on a database connection of its own, meeting only in the database
as separate processes do (tests/cli has the same with real processes): events of either reach both, in each
queue's order, and a cancel made by one stops the session the other runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import Recorder, StartServices
from tests.helpers import graph_json, wait_for

from nodeloom.app.services.events.events_common import QueueEventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.invocation_services import InvocationServices
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch

Q = DEFAULT_QUEUE_ID


def api_and_worker(
    start_services: StartServices, tmp_path: Path, shared_database: dict[str, Any]
) -> tuple[tuple[InvocationServices, Recorder], tuple[InvocationServices, Recorder]]:
    api = start_services(tmp_path / "api", run_processor=False, **shared_database)
    worker = start_services(tmp_path / "worker", **shared_database)
    return api, worker


def enqueue(services: InvocationServices, nodes: list[dict[str, Any]]) -> int:
    batch = Batch.model_validate({"graph": graph_json(nodes)})
    (item_id,) = services.session_queue.enqueue_batch(Q, batch, prepend=False).item_ids
    return item_id


def test_the_api_sees_the_events_of_a_session_the_worker_runs_in_order(
    start_services: StartServices, tmp_path: Path, shared_database: dict[str, Any]
) -> None:
    (api, api_events), (worker, _) = api_and_worker(start_services, tmp_path, shared_database)
    worker_id = worker.session_processor.get_status().processor_id

    item_id = enqueue(api, [{"id": "p", "type": "test_progress", "steps": 3}])

    done = wait_for(
        lambda: [e for e in api_events.of("queue_item_status_changed") if e.status == "completed"], what="completion"
    )
    assert api.session_queue.get_queue_item(item_id).processor_id == worker_id
    mine = [e for e in api_events.events if isinstance(e, QueueEventBase)]
    assert [e.seq for e in mine] == list(range(1, len(mine) + 1))
    names = [e.event_name for e in mine]
    assert names == [
        "batch_enqueued",
        "queue_item_status_changed",
        "invocation_started",
        *["invocation_progress"] * 3,
        "invocation_complete",
        "queue_item_status_changed",
    ]
    assert done[0].item_id == item_id


def test_a_cancel_through_the_api_stops_the_workers_session_within_a_step(
    start_services: StartServices, tmp_path: Path, shared_database: dict[str, Any]
) -> None:
    (api, api_events), (worker, worker_events) = api_and_worker(start_services, tmp_path, shared_database)
    item_id = enqueue(api, [{"id": "w", "type": "test_wait", "seconds": 30}])
    wait_for(lambda: api_events.of("invocation_started"), what="the worker to start the node")

    canceled_at = time.monotonic()
    api.session_queue.cancel_queue_item(item_id)

    wait_for(lambda: worker.session_processor.get_status().current_item_id is None, 5, "the worker to stop")
    assert time.monotonic() - canceled_at < 2
    assert api.session_queue.get_queue_item(item_id).status == "canceled"
    changes = [e for e in worker_events.events if isinstance(e, QueueItemStatusChangedEvent)]
    assert [(e.old_status, e.status) for e in changes][-1] == ("in_progress", "canceled")


def test_clearing_the_queue_through_the_api_stops_the_workers_session(
    start_services: StartServices, tmp_path: Path, shared_database: dict[str, Any]
) -> None:
    (api, api_events), (worker, _) = api_and_worker(start_services, tmp_path, shared_database)
    enqueue(api, [{"id": "w", "type": "test_wait", "seconds": 30}])
    wait_for(lambda: api_events.of("invocation_started"), what="the worker to start the node")

    api.session_queue.clear(Q)

    wait_for(lambda: worker.session_processor.get_status().current_item_id is None, 5, "the worker to stop")
    assert api.session_queue.get_queue_status(Q).total == 0
