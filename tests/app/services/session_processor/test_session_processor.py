from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests import nodes
from tests.conftest import Recorder, StartServices
from tests.helpers import edge, graph_json, wait_for

from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import EventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.invocation_stats.invocation_stats_common import GESStatsNotFoundError
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.session_processor.session_processor_default import (
    DefaultSessionProcessor,
    ProcessorSettings,
)
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    DEFAULT_QUEUE_ID,
    Batch,
    ProcessorInfo,
    SessionQueueItem,
)
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow, Dialect, Listener, Params
from nodeloom.app.services.shared.graph import STORED_SESSION, GraphExecutionState
from nodeloom.app.services.shared.invocation_context import InvocationContextBuilder

Q = DEFAULT_QUEUE_ID


def enqueue(services: InvocationServices, graph: dict[str, Any], **batch: Any) -> list[int]:
    result = services.session_queue.enqueue_batch(Q, Batch.model_validate({"graph": graph, **batch}), prepend=False)
    return result.item_ids


def finished(services: InvocationServices, item_id: int) -> SessionQueueItem | None:
    item = services.session_queue.get_queue_item(item_id)
    return item if item.status in ("completed", "failed", "canceled") else None


def wait_finished(services: InvocationServices, item_id: int, timeout: float = 10.0) -> SessionQueueItem:
    return wait_for(lambda: finished(services, item_id), timeout, f"item {item_id} to finish")


def wait_status(services: InvocationServices, item_id: int, status: str) -> None:
    wait_for(lambda: services.session_queue.get_queue_item(item_id).status == status, what=f"{item_id} {status}")


def result_values(session: GraphExecutionState, source_id: str, field: str = "value") -> list[Any]:
    prepared = sorted(session.source_prepared_mapping[source_id], key=lambda p: session.iteration_paths[p])
    return [getattr(session.results[p], field) for p in prepared]


def node_stats_by_type(stats: dict[str, object]) -> dict[str, dict[str, Any]]:
    """The node stats of a stored stats summary, by node type."""
    node_stats = stats["node_stats"]
    assert isinstance(node_stats, list)
    return {node["node_type"]: node for node in node_stats}


ADD_GRAPH = graph_json(
    [{"id": "a", "type": "integer", "value": 1}, {"id": "sum", "type": "add", "b": 100}],
    [edge("a", "value", "sum", "a")],
)


def wait_graph(seconds: float = 5.0) -> dict[str, Any]:
    return graph_json([{"id": "wait", "type": "test_wait", "seconds": seconds}])


def test_batch_with_zipped_and_product_data_and_runs(start_services: StartServices) -> None:
    services, recorder = start_services()
    data = [
        [
            {"node_path": "a", "field_name": "value", "items": [1, 2]},
            {"node_path": "sum", "field_name": "b", "items": [10, 20]},
        ],
        [{"node_path": "sum", "field_name": "is_intermediate", "items": [True, False, True]}],
    ]
    item_ids = enqueue(services, ADD_GRAPH, data=data, runs=2)
    assert len(item_ids) == 2 * 2 * 3
    sums = [result_values(wait_finished(services, i).session, "sum")[0] for i in item_ids]
    assert sums == [11, 11, 11, 22, 22, 22] * 2
    assert all(services.session_queue.get_queue_item(i).status == "completed" for i in item_ids)
    # The bus delivers on its own thread, in order: once every item's completed status has come, so has every
    # node's event before it.
    wait_for(
        lambda: len([e for e in recorder.of("queue_item_status_changed") if e.status == "completed"]) == len(item_ids),
        what="every item's completed status",
    )
    started = recorder.of("invocation_started")
    assert {e.invocation_source_id for e in started} == {"a", "sum"}
    complete = [e for e in recorder.of("invocation_complete") if e.invocation_source_id == "sum"]
    assert len(complete) == len(item_ids)


def test_node_error_fails_the_session_and_the_next_still_runs(start_services: StartServices) -> None:
    services, recorder = start_services()
    failing = graph_json([{"id": "boom", "type": "test_fail", "message": "the node broke"}])
    (bad,) = enqueue(services, failing)
    (good,) = enqueue(services, ADD_GRAPH)
    item = wait_finished(services, bad)
    assert item.status == "failed"
    assert item.error_type == "RuntimeError"
    assert item.error_message == "the node broke"
    assert item.error_traceback and "RuntimeError: the node broke" in item.error_traceback
    assert item.session.errors and "the node broke" in next(iter(item.session.errors.values()))
    assert wait_finished(services, good).status == "completed"
    # The bus delivers on its own thread: the event may come after the item's change is in the database.
    (error_event,) = wait_for(lambda: recorder.of("invocation_error"), what="the error event")
    assert error_event.invocation_source_id == "boom" and error_event.error_type == "RuntimeError"


def test_a_node_that_calls_sys_exit_fails_its_item_and_the_next_still_runs(start_services: StartServices) -> None:
    services, _ = start_services()
    (quitting,) = enqueue(services, graph_json([{"id": "quit", "type": "test_exit", "message": "the node quit"}]))
    (good,) = enqueue(services, ADD_GRAPH)
    item = wait_finished(services, quitting)
    assert item.status == "failed"
    assert item.error_type == "SystemExit" and item.error_message == "the node quit"
    assert item.error_traceback and "sys.exit(self.message)" in item.error_traceback
    assert wait_finished(services, good).status == "completed"
    status = services.session_processor.get_status()
    assert status.is_alive and status.restarts == 0


def test_a_retried_item_runs_without_waiting_for_the_poll(start_services: StartServices) -> None:
    services, recorder = start_services(processor_poll_interval_s=60)
    (failed,) = enqueue(services, graph_json([{"id": "boom", "type": "test_fail", "message": "once"}]))
    assert wait_finished(services, failed).status == "failed"
    services.session_queue.retry_items_by_id(Q, [failed])
    [copy] = [item for item in services.session_queue.list_all_queue_items(Q) if item.retried_from_item_id == failed]
    assert wait_finished(services, copy.item_id, timeout=5).status == "failed"
    assert [e.retried_item_ids for e in recorder.of("queue_items_retried")] == [[failed]]


def test_cancel_pending_item_never_runs(start_services: StartServices) -> None:
    services, _ = start_services()
    (first,) = enqueue(services, wait_graph(0.3))
    count_graph = graph_json([{"id": "c", "type": "test_count", "label": "pending-cancel"}])
    (second,) = enqueue(services, count_graph)
    services.session_queue.cancel_queue_item(second)
    assert wait_finished(services, first).status == "completed"
    assert services.session_queue.get_queue_item(second).status == "canceled"
    assert "pending-cancel" not in nodes.INVOKED


def test_cancel_running_item_stops_the_node_within_a_step(start_services: StartServices) -> None:
    services, recorder = start_services()
    (running,) = enqueue(services, wait_graph(30))
    (later,) = enqueue(services, ADD_GRAPH)
    wait_for(lambda: recorder.of("invocation_started"), what="the wait node to start")
    nodes.STOPPED_AT.clear()
    canceled_at = time.monotonic()
    services.session_queue.cancel_queue_item(running)
    wait_for(lambda: nodes.STOPPED_AT, what="the node to see the cancel")
    assert nodes.STOPPED_AT[0] - canceled_at < 0.5
    assert wait_finished(services, later).status == "completed"
    item = services.session_queue.get_queue_item(running)
    assert item.status == "canceled"
    assert not item.session.results  # the canceled node's output was dropped


def test_cancel_through_signal_progress(start_services: StartServices) -> None:
    services, recorder = start_services()
    graph = graph_json([{"id": "p", "type": "test_progress", "steps": 1000, "step_seconds": 0.005}])
    (item_id,) = enqueue(services, graph)
    wait_for(lambda: len(recorder.of("invocation_progress")) >= 3, what="progress events")
    services.session_queue.cancel_queue_item(item_id)
    assert wait_finished(services, item_id).status == "canceled"
    progress = recorder.of("invocation_progress")
    assert progress[0].message == "step 1 of 1000" and progress[0].percentage == pytest.approx(0.001)
    time.sleep(0.1)
    assert len(recorder.of("invocation_progress")) < 1000


def test_cancel_by_batch_ids_while_running(start_services: StartServices) -> None:
    services, recorder = start_services()
    result = services.session_queue.enqueue_batch(Q, Batch.model_validate({"graph": wait_graph(), "runs": 3}), False)
    wait_for(lambda: recorder.of("invocation_started"), what="the first session to start")
    services.session_queue.cancel_by_batch_ids(Q, [result.batch.batch_id])
    for item_id in result.item_ids:
        assert wait_finished(services, item_id).status == "canceled"


def test_clear_while_running(start_services: StartServices) -> None:
    services, recorder = start_services()
    (running,) = enqueue(services, wait_graph())
    enqueue(services, wait_graph())
    wait_for(lambda: recorder.of("invocation_started"), what="the session to start")
    services.session_queue.clear(Q)
    wait_for(lambda: services.session_processor.get_status().current_item_id is None, what="the processor to stop")
    assert services.session_queue.is_empty(Q).is_empty
    assert any(e.item_id == running and e.status == "canceled" for e in recorder.of("queue_item_status_changed"))
    (after,) = enqueue(services, ADD_GRAPH)
    assert wait_finished(services, after).status == "completed"


def test_timeout_fails_the_session(start_services: StartServices) -> None:
    services, _ = start_services()
    (item_id,) = enqueue(services, wait_graph(30), timeout=0.2)
    started = time.monotonic()
    item = wait_finished(services, item_id)
    assert time.monotonic() - started < 5
    assert item.status == "failed"
    assert item.error_type == "Timeout"
    assert "0.2" in (item.error_message or "")


def test_pause_and_resume(start_services: StartServices) -> None:
    services, _ = start_services()
    status = services.session_processor.pause()
    assert status.is_started and not status.is_processing
    (item_id,) = enqueue(services, ADD_GRAPH)
    time.sleep(0.3)
    assert services.session_queue.get_queue_item(item_id).status == "pending"
    assert services.session_processor.resume().is_processing
    assert wait_finished(services, item_id).status == "completed"


def test_stats_after_a_run(start_services: StartServices, tmp_path: Path) -> None:
    services, _ = start_services(stats_dir=str(tmp_path / "stats"))
    (item_id,) = enqueue(services, ADD_GRAPH)
    item = wait_finished(services, item_id)
    stats = wait_for(lambda: services.session_queue.get_queue_item_stats(item_id), what="stats")
    node_types = node_stats_by_type(stats)
    assert set(node_types) == {"integer", "add"}
    assert node_types["add"]["num_calls"] == 1
    dumped_file = wait_for(lambda: next((tmp_path / "stats").glob(f"{item.session_id}.json"), None), what="stats file")
    dumped = json.loads(dumped_file.read_text())
    assert {n["node_type"] for n in dumped["node_stats"]} == {"integer", "add"}
    with pytest.raises(GESStatsNotFoundError):
        services.invocation_stats.get_stats("no-such-session")


def test_profile_graphs_writes_a_profile_and_its_stats(start_services: StartServices, tmp_path: Path) -> None:
    import pstats

    services, _ = start_services(profile_graphs=True, profiles_dir=str(tmp_path / "prof"), profile_prefix="run-")
    (item_id,) = enqueue(services, ADD_GRAPH)
    item = wait_finished(services, item_id)
    profile = tmp_path / "prof" / f"run-{item.session_id}.prof"
    wait_for(lambda: profile.exists() and (tmp_path / "prof" / f"run-{item.session_id}.json").exists())
    assert pstats.Stats(str(profile)).get_stats_profile().func_profiles


def test_cache_hit_skips_invoke(start_services: StartServices) -> None:
    services, _ = start_services()
    graph = graph_json([{"id": "c", "type": "test_count", "value": 7, "label": "cached"}])
    first, second = enqueue(services, graph, runs=2)
    assert result_values(wait_finished(services, first).session, "c") == [7]
    assert result_values(wait_finished(services, second).session, "c") == [7]
    assert nodes.INVOKED.count("cached") == 1
    status = services.invocation_cache.get_status()
    assert status.hits >= 1 and status.misses >= 1


def test_an_input_that_does_not_fit_fails_its_node_as_an_error_in_invoke_does(start_services: StartServices) -> None:
    services, recorder = start_services()
    graph = graph_json(
        [{"id": "x", "type": "test_any", "value": "text"}, {"id": "a", "type": "add"}], [edge("x", "value", "a", "a")]
    )
    (bad,) = enqueue(services, graph)
    (good,) = enqueue(services, ADD_GRAPH)
    item = wait_finished(services, bad)
    assert item.status == "failed" and item.error_type == "NodeInputError"
    assert "Input 'a' of node 'a'" in (item.error_message or "")
    assert item.error_traceback and "NodeInputError" in item.error_traceback
    [(prepared_id, node_error)] = item.session.errors.items()
    assert item.session.prepared_source_mapping[prepared_id] == "a" and node_error.startswith("NodeInputError: ")
    assert wait_finished(services, good).status == "completed"
    (error_event,) = wait_for(lambda: recorder.of("invocation_error"), what="the error event")
    assert (error_event.invocation_source_id, error_event.error_type) == ("a", "NodeInputError")
    assert error_event.item_id == bad and error_event.invocation.id == prepared_id


def stuck(session: GraphExecutionState) -> GraphExecutionState:
    """The session of ADD_GRAPH saved with 'sum' waiting for a node that does not exist: 'a' ran, 'sum' never can."""
    data = session.model_dump(mode="json")
    nodes = data["graph"]["nodes"]
    data["execution_graph"] = {
        "nodes": {"p-a": {**nodes["a"], "id": "p-a"}, "p-sum": {**nodes["sum"], "id": "p-sum"}},
        "edges": [edge("ghost", "value", "p-sum", "a")],
    }
    data |= {
        "executed": ["a", "p-a"],
        "executed_history": ["a"],
        "results": {"p-a": {"type": "integer_output", "value": 1}},
        "prepared_source_mapping": {"p-a": "a", "p-sum": "sum"},
        "source_prepared_mapping": {"a": ["p-a"], "sum": ["p-sum"]},
        "iteration_paths": {"p-a": [], "p-sum": []},
    }
    return GraphExecutionState.model_validate(data, context=STORED_SESSION)


def test_a_session_left_with_nodes_pending_fails_naming_them(start_services: StartServices) -> None:
    services, _ = start_services()
    services.session_processor.pause()
    (item_id,) = enqueue(services, ADD_GRAPH)
    services.session_queue.set_queue_item_session(
        item_id, stuck(services.session_queue.get_queue_item(item_id).session)
    )
    services.session_processor.resume()
    item = wait_finished(services, item_id)
    assert item.status == "failed" and item.error_type == "SessionInvariantError"
    assert item.error_message == f"No node of session {item.session.id} is ready to run, yet 1 never ran: 'sum'"
    assert item.session.executed_history == ["a"]  # stored with the failure


def test_stop_leaves_nothing_in_progress(start_services: StartServices, tmp_path: Path) -> None:
    services, recorder = start_services()
    (item_id,) = enqueue(services, wait_graph(30))
    wait_for(lambda: recorder.of("invocation_started"), what="the session to start")
    started = time.monotonic()
    services.session_processor.stop()
    assert time.monotonic() - started < 2
    item = services.session_queue.get_queue_item(item_id)
    assert item.status == "failed" and item.error_type == "Interrupted"


def test_stop_gives_up_on_a_node_that_ignores_its_cancel(start_services: StartServices) -> None:
    services, recorder = start_services()
    (item_id,) = enqueue(services, graph_json([{"id": "stubborn", "type": "test_stubborn", "seconds": 3}]))
    wait_for(lambda: recorder.of("invocation_started"), what="the node to start")
    services.session_processor.stop(timeout_s=0.2)
    # Returned while the node still runs: its item stays in progress, for start-up recovery if the process ends.
    assert services.session_queue.get_queue_item(item_id).status == "in_progress"
    assert not services.session_processor.get_status().is_started
    # While the process lives on, the thread left behind ends the session as the stop asked, once its node returns.
    item = wait_finished(services, item_id)
    assert item.status == "failed" and item.error_type == "Interrupted"


def crash_midway(root: Path) -> int:
    """Runs the first node of a three-node session, saves its state, and 'dies' with the item in progress."""
    services = build_services(load_config(root))
    graph = graph_json(
        [
            {"id": "first", "type": "test_count", "value": 1, "label": "first", "use_cache": False},
            {"id": "second", "type": "test_count", "value": 2, "label": "second", "use_cache": False},
            {"id": "sum", "type": "add"},
        ],
        [edge("first", "value", "sum", "a"), edge("second", "value", "sum", "b")],
    )
    (item_id,) = enqueue(services, graph)
    item = services.session_queue.dequeue("crashed")
    assert item is not None and item.item_id == item_id
    node = item.session.next()
    assert node is not None
    from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData

    context = InvocationContext(
        data=InvocationContextData(invocation=node, source_invocation_id="first", session_id="s")
    )
    item.session.complete(node.id, node.invoke_internal(context))
    services.session_queue.set_queue_item_session(item_id, item.session)
    services.database.close()
    return item_id


def test_recovery_fails_an_interrupted_item_by_default(start_services: StartServices, tmp_path: Path) -> None:
    item_id = crash_midway(tmp_path / "root")
    services, _ = start_services()
    item = services.session_queue.get_queue_item(item_id)
    assert item.status == "failed"
    assert item.error_type == "Interrupted"
    assert "stopped" in (item.error_message or "")


def test_recovery_requeues_and_resumes_from_saved_state(start_services: StartServices, tmp_path: Path) -> None:
    nodes.INVOKED.clear()
    item_id = crash_midway(tmp_path / "root")
    assert nodes.INVOKED == ["first"]
    services, _ = start_services(requeue_interrupted=True)
    item = wait_finished(services, item_id)
    assert item.status == "completed"
    assert item.attempts == 1
    assert result_values(item.session, "sum") == [3]
    assert nodes.INVOKED == ["first", "second"]  # the first node did not run again


def test_recovery_gives_up_after_max_attempts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    item_id = crash_midway(root)
    for interruption in (1, 2, 3):
        services = build_services(load_config(root, requeue_interrupted=True, max_attempts=3))
        services.session_queue.recover_interrupted()
        item = services.session_queue.get_queue_item(item_id)
        if interruption < 3:
            assert item.status == "pending" and item.attempts == interruption
            assert services.session_queue.dequeue("crashed") is not None  # "crash" again while running it
        else:
            assert item.status == "failed" and item.error_type == "Interrupted"
            assert "3" in (item.error_message or "")
        services.database.close()


class RecordingCursor:
    def __init__(self, cursor: DbCursor, statements: list[str]) -> None:
        self._cursor = cursor
        self._statements = statements

    @property
    def dialect(self) -> Dialect:
        return self._cursor.dialect

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def execute(self, sql: str, params: Params = ()) -> None:
        self._statements.append(sql)
        self._cursor.execute(sql, params)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> None:
        self._statements.append(sql)
        self._cursor.executemany(sql, seq_of_params)

    def fetchone(self) -> DbRow | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[DbRow]:
        return self._cursor.fetchall()


class RecordingDatabase(DatabaseBase):
    """The real database, keeping the statements of each committed write transaction."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db
        self.transactions: list[list[str]] = []

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    @contextmanager
    def transaction(self) -> Iterator[DbCursor]:
        statements: list[str] = []
        with self._db.transaction() as cursor:
            yield RecordingCursor(cursor, statements)
        self.transactions.append(statements)

    def read(self) -> AbstractContextManager[DbCursor]:
        return self._db.read()

    def listen(self, channel: str) -> Listener | None:
        return self._db.listen(channel)

    def close(self) -> None:
        self._db.close()


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[InvocationServices, RecordingDatabase, Recorder]]:
    """Started services whose queue writes through a `RecordingDatabase`."""
    built = build_services(load_config(tmp_path / "root", processor_poll_interval_s=0.05))
    db = RecordingDatabase(built.database)
    queue = SqlSessionQueue(db, built.events)
    contexts = InvocationContextBuilder(
        built.events, built.config, built.images, built.boards, built.tensors, built.conditioning, built.model_manager
    )
    processor = DefaultSessionProcessor(
        queue,
        built.events,
        built.invocation_stats,
        built.invocation_cache,
        contexts,
        built.metrics,
        ProcessorSettings(poll_interval_s=0.05),
    )
    services = dataclasses.replace(built, session_queue=queue, session_processor=processor)
    recorder = Recorder()
    services.events.subscribe(recorder)
    invoker = Invoker(services)
    invoker.start()
    yield services, db, recorder
    invoker.stop()


def writes_with(db: RecordingDatabase, *statements: str) -> list[list[str]]:
    return [t for t in db.transactions if any(statement in t for statement in statements)]


def test_a_failed_session_is_one_write_its_stats_stored_before_its_status_event(
    recorded: tuple[InvocationServices, RecordingDatabase, Recorder],
) -> None:
    services, db, _ = recorded
    stats_seen: list[dict[str, object] | None] = []

    def on_failed(event: EventBase) -> None:
        if isinstance(event, QueueItemStatusChangedEvent) and event.status == "failed":
            stats_seen.append(services.session_queue.get_queue_item_stats(event.item_id))

    services.events.subscribe(on_failed)
    graph = graph_json(
        [{"id": "a", "type": "integer", "value": 1}, {"id": "boom", "type": "test_fail", "message": "broke"}]
    )
    (item_id,) = enqueue(services, graph)
    item = wait_finished(services, item_id)
    assert item.status == "failed" and item.session.errors
    stored_by_processor = sql.SET_RUN + sql.HELD_BY
    [write] = writes_with(db, sql.SET_STATUS[True], stored_by_processor)
    assert {sql.SET_STATUS[True], stored_by_processor} <= set(write)
    [stats] = wait_for(lambda: stats_seen, what="the failed status event")
    assert stats is not None and set(node_stats_by_type(stats)) == {"integer", "test_fail"}


def test_a_canceled_session_is_one_write_after_its_cancel(
    recorded: tuple[InvocationServices, RecordingDatabase, Recorder],
) -> None:
    services, db, recorder = recorded
    (item_id,) = enqueue(services, wait_graph(30))
    wait_for(lambda: recorder.of("invocation_started"), what="the node to start")
    services.session_queue.cancel_queue_item(item_id)
    wait_for(lambda: services.session_processor.get_status().current_item_id is None, what="the processor to stop")
    stored_by_processor = sql.SET_RUN + sql.HELD_BY
    [cancel] = writes_with(db, sql.SET_STATUS[False])
    assert stored_by_processor not in cancel  # the user's cancel; the processor's write follows
    [_] = writes_with(db, stored_by_processor)
    assert services.session_queue.get_queue_item(item_id).status == "canceled"
    assert services.session_queue.get_queue_item_stats(item_id) is not None


def test_a_processor_holds_its_item_by_heartbeats_and_recovers_those_of_a_gone_one(
    start_services: StartServices,
) -> None:
    services, _ = start_services(lease_s=1.0, heartbeat_interval_s=0.1, requeue_interrupted=True)
    queue, processor = services.session_queue, services.session_processor
    processor.stop()
    (orphan,) = enqueue(services, ADD_GRAPH)
    gone = ProcessorInfo(processor_id="gone", host="elsewhere", pid=1, devices=["cpu"], started_at=datetime.now(UTC))
    queue.heartbeat(gone)
    assert queue.dequeue("gone") is not None
    processor.pause()
    processor.start()
    me = processor.get_status().processor_id
    assert me is not None

    # No heartbeat from "gone" for a lease: the running processor's sweep requeues its item.
    wait_for(lambda: queue.get_queue_item(orphan).status == "pending", 5, "the orphan to be requeued")
    assert queue.get_queue_item(orphan).attempts == 1
    processor.resume()
    assert wait_finished(services, orphan).status == "completed"
    assert queue.get_queue_item(orphan).processor_id == me

    (waiting,) = enqueue(services, wait_graph(1.5))
    wait_status(services, waiting, "in_progress")
    time.sleep(0.3)  # past a heartbeat, which notes the node

    listed = {p.processor_id: p for p in queue.list_processors()}
    assert listed[me].is_alive and not listed["gone"].is_alive
    [held] = listed[me].items
    assert (held.item_id, held.node_id) == (waiting, "wait")
    assert wait_finished(services, waiting).status == "completed"  # longer than the lease: the heartbeats held it

    processor.stop()
    assert me not in {p.processor_id for p in queue.list_processors()}
