from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    InvocationRegistry,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import InputField, OutputField
from nodeloom.app.services.invocation_stats.invocation_stats_common import (
    GESStatsNotFoundError,
    InvocationStatsSummary,
    NodeExecutionStatsSummary,
    dump_summary,
    log_summary,
)
from nodeloom.app.services.invocation_stats.invocation_stats_default import InvocationStatsService
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary

# A registry of its own, so these node types never reach the one the application uses.
_registry = InvocationRegistry()


@invocation_output("stats_test_output", registry_=_registry)
class StatsTestOutput(BaseInvocationOutput):
    value: float = OutputField(description="What the node got")


@invocation("stats_test_sleep", registry_=_registry)
class StatsTestSleepInvocation(BaseInvocation):
    """Sleeps for `seconds`."""

    seconds: float = InputField(default=0.0, description="How long to sleep")

    def invoke(self, context: InvocationContext) -> StatsTestOutput:
        time.sleep(self.seconds)
        return StatsTestOutput(value=self.seconds)


@invocation("stats_test_quick", registry_=_registry)
class StatsTestQuickInvocation(BaseInvocation):
    """Returns at once."""

    def invoke(self, context: InvocationContext) -> StatsTestOutput:
        return StatsTestOutput(value=0.0)


@invocation("stats_test_fail", registry_=_registry)
class StatsTestFailInvocation(BaseInvocation):
    """Sleeps a little, then raises."""

    def invoke(self, context: InvocationContext) -> StatsTestOutput:
        time.sleep(0.02)
        raise RuntimeError("boom")


def _run(stats: InvocationStatsService, node: BaseInvocation, session_id: str) -> None:
    context = InvocationContext(
        data=InvocationContextData(invocation=node, source_invocation_id=node.id, session_id=session_id)
    )
    with stats.collect_stats(node, session_id):
        node.invoke_internal(context)


def _node_stats(summary: InvocationStatsSummary) -> dict[str, NodeExecutionStatsSummary]:
    return {node.node_type: node for node in summary.node_stats}


@pytest.fixture
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)


@pytest.fixture
def session_stats(no_torch: None) -> InvocationStatsSummary:
    stats = InvocationStatsService()
    for _ in range(3):
        _run(stats, StatsTestQuickInvocation(), "session")
    _run(stats, StatsTestSleepInvocation(seconds=0.05), "session")
    return stats.get_stats("session")


def test_counts_and_times_per_node_type(session_stats: InvocationStatsSummary) -> None:
    by_type = _node_stats(session_stats)
    assert list(by_type) == ["stats_test_quick", "stats_test_sleep"]
    assert by_type["stats_test_quick"].num_calls == 3
    assert by_type["stats_test_sleep"].num_calls == 1
    assert by_type["stats_test_quick"].time_used_seconds >= 0
    assert by_type["stats_test_sleep"].time_used_seconds >= 0.05

    graph = session_stats.graph_stats
    assert graph.graph_execution_state_id == "session"
    assert graph.execution_time_seconds == pytest.approx(sum(n.time_used_seconds for n in by_type.values()))
    assert graph.wall_time_seconds is not None
    assert graph.wall_time_seconds >= graph.execution_time_seconds - 1e-9
    assert graph.ram_usage_gb is not None
    assert graph.ram_usage_gb > 0
    assert graph.ram_change_gb is not None


def test_without_torch_vram_is_zero(session_stats: InvocationStatsSummary) -> None:
    assert "torch" not in sys.modules
    assert all(node.peak_vram_gb == 0 for node in session_stats.node_stats)
    assert session_stats.vram_usage_gb is None


def test_peak_vram_comes_from_torch_when_it_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    resets: list[None] = []
    cuda = SimpleNamespace(
        is_available=lambda: True,
        reset_peak_memory_stats=lambda: resets.append(None),
        max_memory_allocated=lambda: 3 * 2**30,
        memory_allocated=lambda: 2**30,
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    stats = InvocationStatsService()
    _run(stats, StatsTestQuickInvocation(), "session")

    summary = stats.get_stats("session")
    assert resets == [None]
    assert summary.node_stats[0].peak_vram_gb == 3.0
    assert summary.vram_usage_gb == 1.0


def test_a_raising_node_is_still_recorded(no_torch: None) -> None:
    stats = InvocationStatsService()
    with pytest.raises(RuntimeError, match="boom"):
        _run(stats, StatsTestFailInvocation(), "session")

    (node,) = stats.get_stats("session").node_stats
    assert node.node_type == "stats_test_fail"
    assert node.num_calls == 1
    assert node.time_used_seconds >= 0.02


def test_as_dict_round_trips_through_json(session_stats: InvocationStatsSummary) -> None:
    data = json.loads(json.dumps(session_stats.as_dict()))
    assert data == session_stats.as_dict()
    assert data["graph_stats"]["graph_execution_state_id"] == "session"
    assert [n["node_type"] for n in data["node_stats"]] == ["stats_test_quick", "stats_test_sleep"]
    assert data["model_cache_stats"]["cache_hits"] == 0


def test_str_is_a_table_of_node_types_and_counts(session_stats: InvocationStatsSummary) -> None:
    text = str(session_stats)
    quick_row = next(line for line in text.splitlines() if line.startswith("stats_test_quick"))
    sleep_row = next(line for line in text.splitlines() if line.startswith("stats_test_sleep"))
    assert quick_row.split()[1] == "3"
    assert sleep_row.split()[1] == "1"
    total_row = next(line for line in text.splitlines() if line.startswith("Total"))
    assert total_row.split()[1] == "4"
    assert "Model cache: 0 hits, 0 misses" in text


def test_dump_summary_writes_the_json(no_torch: None, tmp_path: Path) -> None:
    stats = InvocationStatsService()
    _run(stats, StatsTestQuickInvocation(), "session")
    path = tmp_path / "stats.json"

    dump_summary(stats.get_stats("session"), path)

    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["node_stats"][0]["node_type"] == "stats_test_quick"
    assert data["node_stats"][0]["num_calls"] == 1


def test_log_summary_logs_the_table(no_torch: None, caplog: pytest.LogCaptureFixture) -> None:
    stats = InvocationStatsService()
    _run(stats, StatsTestQuickInvocation(), "session")
    with caplog.at_level(logging.INFO, logger="nodeloom.stats"):
        log_summary(stats.get_stats("session"))
    assert [record.name for record in caplog.records] == ["nodeloom.stats"]
    assert "stats_test_quick" in caplog.records[0].getMessage()


def test_unknown_session_raises() -> None:
    stats = InvocationStatsService()
    with pytest.raises(GESStatsNotFoundError, match="nope"):
        stats.get_stats("nope")
    with pytest.raises(GESStatsNotFoundError):
        stats.reset_stats("nope")


def test_reset_stats_forgets_the_session(no_torch: None) -> None:
    stats = InvocationStatsService()
    _run(stats, StatsTestQuickInvocation(), "session")
    stats.reset_stats("session")
    with pytest.raises(GESStatsNotFoundError):
        stats.get_stats("session")


def test_keeps_only_the_most_recently_active_sessions(no_torch: None) -> None:
    stats = InvocationStatsService(max_sessions=2)
    _run(stats, StatsTestQuickInvocation(), "first")
    _run(stats, StatsTestQuickInvocation(), "second")
    _run(stats, StatsTestQuickInvocation(), "first")  # "second" is now the oldest
    _run(stats, StatsTestQuickInvocation(), "third")

    with pytest.raises(GESStatsNotFoundError):
        stats.get_stats("second")
    assert stats.get_stats("first").node_stats[0].num_calls == 2
    assert stats.get_stats("third").node_stats[0].num_calls == 1


def test_max_sessions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        InvocationStatsService(max_sessions=0)


def test_model_cache_figures_come_from_the_provider(no_torch: None) -> None:
    asked: list[str] = []

    def provider(session_id: str) -> ModelCacheStatsSummary:
        asked.append(session_id)
        return ModelCacheStatsSummary(cache_hits=2, cache_misses=1, high_water_mark_gb=1.5, models_cached=1)

    stats = InvocationStatsService(model_cache_stats=provider)
    _run(stats, StatsTestQuickInvocation(), "session")
    summary = stats.get_stats("session")

    assert asked == ["session"]
    assert summary.model_cache_stats.cache_hits == 2
    assert "Model cache: 2 hits, 1 misses" in str(summary)


def test_a_session_asked_for_while_its_first_node_runs_has_no_times_yet(no_torch: None) -> None:
    stats = InvocationStatsService()
    with stats.collect_stats(StatsTestQuickInvocation(), "session"):
        summary = stats.get_stats("session")
    assert summary.node_stats == []
    assert summary.graph_stats.wall_time_seconds is None
    assert summary.graph_stats.ram_usage_gb is None
    assert "Total" in str(summary)


def test_concurrent_sessions_are_counted_apart(no_torch: None) -> None:
    stats = InvocationStatsService()

    def work(session_id: str) -> None:
        for _ in range(50):
            _run(stats, StatsTestQuickInvocation(), session_id)
            stats.get_stats(session_id)

    threads = [threading.Thread(target=work, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for i in range(4):
        assert stats.get_stats(f"s{i}").node_stats[0].num_calls == 50
