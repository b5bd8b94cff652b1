"""The node loop: runs a session's nodes one by one, each inside the node error boundary.

The session processor and `nodeloom run` both run sessions with `run_session`. What differs between them (events,
the queue, the timer, printing) stays with them, told what happens through `emit`.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nodeloom.app.invocations.baseinvocation import CanceledException
from nodeloom.app.services.invocation_stats.invocation_stats_common import GESStatsNotFoundError
from nodeloom.app.services.shared.graph_common import NodeInputError
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
    from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
    from nodeloom.app.services.invocation_stats.invocation_stats_base import InvocationStatsServiceBase
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.shared.graph import GraphExecutionState
    from nodeloom.app.services.shared.invocation_context import InvocationContext

RunStatus = Literal["completed", "failed", "stopped"]
"""completed: every node ran; failed: a node or the engine failed; stopped: `should_stop()` became true."""

_MAX_NAMED = 20
"""How many pending nodes an invariant violation names, so that a huge graph does not make a huge message."""


class SessionInvariantError(NodeloomError):
    """No node of the session is ready to run, yet some never ran: the engine lost track of them."""


@dataclass(frozen=True)
class RunError:
    """Why a session failed: the exception, kept as raised, and the node whose code raised it.

    `node` is None when the engine failed rather than a node: the scheduler, the stats, or the caller's `emit`.
    """

    exception: BaseException
    traceback: str
    node: BaseInvocation | None = None

    @property
    def error_type(self) -> str:
        return type(self.exception).__name__

    @property
    def message(self) -> str:
        return str(self.exception)


@dataclass(frozen=True)
class SessionOutcome:
    status: RunStatus
    error: RunError | None = None
    """Set exactly when the status is failed."""
    stats: InvocationStatsSummary | None = None
    """The session's stats, summarised once at the end; None without a stats service, or when no node ran."""


@dataclass(frozen=True)
class NodeStarted:
    node: BaseInvocation


@dataclass(frozen=True)
class NodeCompleted:
    node: BaseInvocation
    output: BaseInvocationOutput
    seconds: float
    """From the node's start to its output: its context, its stats, the cache and `invoke`."""


@dataclass(frozen=True)
class NodeFailed:
    node: BaseInvocation
    error: RunError


RunEvent = NodeStarted | NodeCompleted | NodeFailed


def _ignore(event: RunEvent) -> None:
    pass


def _never() -> bool:
    return False


def run_session(
    session: GraphExecutionState,
    make_context: Callable[[BaseInvocation], InvocationContext],
    *,
    cache: InvocationCacheBase | None = None,
    stats: InvocationStatsServiceBase | None = None,
    emit: Callable[[RunEvent], None] = _ignore,
    should_stop: Callable[[], bool] = _never,
) -> SessionOutcome:
    """Runs the session's ready nodes in order until every node has run, one fails, or `should_stop()` is true.

    The node error boundary covers filling a node's inputs (`NodeInputError` from `session.next()`), making its
    context, the cache and `invoke`: whatever is raised there, any `BaseException`, fails the session with the error
    recorded on it (`set_node_error`), then emitted as `NodeFailed`; but a `CanceledException` once `should_stop()`
    is true stops it. An `Exception` anywhere else is the engine's: it fails the session with no node. An output
    that comes in after the stop is dropped. A session left with no ready node while some never ran is failed with
    `SessionInvariantError` naming them, never completed. Stats are collected around each node and summarised once.
    """
    try:
        status, error = _run_nodes(session, make_context, cache, stats, emit, should_stop)
    except Exception as e:
        status, error = "failed", RunError(e, traceback.format_exc())
    return SessionOutcome(status, error, summarise_stats(stats, session.id))


def _run_nodes(
    session: GraphExecutionState,
    make_context: Callable[[BaseInvocation], InvocationContext],
    cache: InvocationCacheBase | None,
    stats: InvocationStatsServiceBase | None,
    emit: Callable[[RunEvent], None],
    should_stop: Callable[[], bool],
) -> tuple[RunStatus, RunError | None]:
    while not should_stop():
        try:
            node = session.next()
        except NodeInputError as e:
            return _node_failed(session, session.execution_graph.nodes[e.prepared_id], e, emit)
        if node is None:
            return _ended(session)
        emit(NodeStarted(node))
        started = time.perf_counter()
        try:
            with _collect(stats, node, session.id):
                output = node.invoke_internal(make_context(node), cache)
        except BaseException as e:
            # Node code is the user's: whatever it raises, `SystemExit` included, fails its session only.
            if isinstance(e, CanceledException) and should_stop():
                return "stopped", None
            return _node_failed(session, node, e, emit)
        if should_stop():
            return "stopped", None
        session.complete(node.id, output)
        emit(NodeCompleted(node, output, time.perf_counter() - started))
    return "stopped", None


def _collect(
    stats: InvocationStatsServiceBase | None, node: BaseInvocation, session_id: str
) -> AbstractContextManager[None]:
    return contextlib.nullcontext() if stats is None else stats.collect_stats(node, session_id)


def _node_failed(
    session: GraphExecutionState, node: BaseInvocation, error: BaseException, emit: Callable[[RunEvent], None]
) -> tuple[RunStatus, RunError]:
    failure = RunError(error, "".join(traceback.format_exception(error)), node)
    session.set_node_error(node.id, f"{failure.error_type}: {failure.message}")
    emit(NodeFailed(node, failure))
    return "failed", failure


def _ended(session: GraphExecutionState) -> tuple[RunStatus, RunError | None]:
    """Completed when every source node has run; else the invariant is broken."""
    pending = [node_id for node_id in session.graph.nodes if node_id not in session.executed]
    if not pending:
        return "completed", None
    named = ", ".join(f"'{node_id}'" for node_id in pending[:_MAX_NAMED])
    more = f" and {len(pending) - _MAX_NAMED} more" if len(pending) > _MAX_NAMED else ""
    error = SessionInvariantError(
        f"No node of session {session.id} is ready to run, yet {len(pending)} never ran: {named}{more}"
    )
    return "failed", RunError(error, "")


def summarise_stats(stats: InvocationStatsServiceBase | None, session_id: str) -> InvocationStatsSummary | None:
    """The session's stats, summarised, then forgotten by the service; None without one, or when no node ran."""
    if stats is None:
        return None
    try:
        summary = stats.get_stats(session_id)
    except GESStatsNotFoundError:
        return None
    with contextlib.suppress(GESStatsNotFoundError):  # forgotten meanwhile, to make room for newer sessions
        stats.reset_stats(session_id)
    return summary
