from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries
from tests.helpers import graph_json

from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.invocation_stats.invocation_stats_common import (
    GraphExecutionStatsSummary,
    InvocationStatsSummary,
    NodeExecutionStatsSummary,
)
from nodeloom.app.services.metrics.metrics_prometheus import PrometheusMetricsService
from nodeloom.app.services.session_queue.session_queue_common import Batch, ProcessorInfo
from nodeloom.app.services.shared.timestamps import to_timestamp
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary

# Every family /metrics has, with its type and label names: dashboards and alerts are written against them.
FAMILIES = {
    "nodeloom_queue_items": ("gauge", {"queue_id", "status"}),
    "nodeloom_sessions": ("counter", {"status"}),
    "nodeloom_nodes": ("counter", {"node_type"}),
    "nodeloom_node_seconds": ("counter", {"node_type"}),
    "nodeloom_cache_hits": ("counter", set()),
    "nodeloom_cache_misses": ("counter", set()),
    "nodeloom_cache_size": ("gauge", set()),
    "nodeloom_processor_started": ("gauge", set()),
    "nodeloom_processor_processing": ("gauge", set()),
    "nodeloom_processor_alive": ("gauge", set()),
    "nodeloom_processor_restarts": ("counter", set()),
    "nodeloom_processors_up": ("gauge", {"processor_id", "host"}),
    "nodeloom_processors_heartbeat_age_seconds": ("gauge", {"processor_id", "host"}),
}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[InvocationServices]:
    built = build_services(load_config(tmp_path / "root"))
    yield built
    built.database.close()


def parse(exposition: bytes) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(exposition.decode())}


def samples(family: Metric) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}


def stats_of(*nodes: tuple[str, int, float]) -> InvocationStatsSummary:
    return InvocationStatsSummary(
        graph_stats=GraphExecutionStatsSummary("s", 1.0, 1.0, 1.0, 0.0),
        model_cache_stats=ModelCacheStatsSummary(),
        node_stats=[NodeExecutionStatsSummary(node_type, calls, seconds, 0.0) for node_type, calls, seconds in nodes],
        vram_usage_gb=None,
    )


def test_every_metric_keeps_its_name_type_and_labels(services: InvocationServices) -> None:
    weird = 'a "quoted"\nqueue\\'
    graph = graph_json([{"id": "a", "type": "integer", "value": 1}])
    services.session_queue.enqueue_batch(weird, Batch.model_validate({"graph": graph, "runs": 2}), prepend=False)
    services.metrics.record_session("completed", stats_of(("add", 2, 0.5), ("integer", 1, 0.25)))
    services.metrics.record_session("failed", None)
    now = datetime.now(UTC)
    for processor_id in ("live", "silent"):
        info = ProcessorInfo(processor_id=processor_id, host="box", pid=1, devices=["cpu"], started_at=now)
        services.session_queue.heartbeat(info)
    with services.database.transaction() as cursor:
        old = to_timestamp(now - timedelta(seconds=services.config.lease_s + 30))
        cursor.execute("UPDATE session_processors SET heartbeat_at = ? WHERE processor_id = 'silent'", (old,))

    families = parse(services.metrics.exposition())

    kinds = {
        name: (family.type, {key for sample in family.samples for key in sample.labels})
        for name, family in families.items()
    }
    assert kinds == FAMILIES
    assert samples(families["nodeloom_queue_items"])[(("queue_id", weird), ("status", "pending"))] == 2
    assert samples(families["nodeloom_sessions"]) == {(("status", "completed"),): 1, (("status", "failed"),): 1}
    assert samples(families["nodeloom_nodes"]) == {(("node_type", "add"),): 2, (("node_type", "integer"),): 1}
    assert samples(families["nodeloom_node_seconds"]) == {
        (("node_type", "add"),): 0.5,
        (("node_type", "integer"),): 0.25,
    }
    assert samples(families["nodeloom_processor_started"]) == {(): 0}  # built, not started
    assert samples(families["nodeloom_processor_restarts"]) == {(): 0}
    live, silent = (("host", "box"), ("processor_id", "live")), (("host", "box"), ("processor_id", "silent"))
    assert samples(families["nodeloom_processors_up"]) == {live: 1, silent: 0}
    ages = samples(families["nodeloom_processors_heartbeat_age_seconds"])
    assert ages[live] < 5 and services.config.lease_s + 30 <= ages[silent] < services.config.lease_s + 35


def test_each_service_has_its_own_registry_and_the_global_one_is_left_alone() -> None:
    first, second = PrometheusMetricsService(), PrometheusMetricsService()
    first.record_session("completed", None)
    assert samples(parse(first.exposition())["nodeloom_sessions"]) == {(("status", "completed"),): 1}
    assert samples(parse(second.exposition())["nodeloom_sessions"]) == {}
    assert not [name for name in parse(prometheus_client.generate_latest()) if name.startswith("nodeloom")]


class ClashingCollector:
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("nodeloom_sessions_total", "Another meaning for a name taken", value=1)


def test_a_collector_whose_names_are_taken_is_refused() -> None:
    metrics = PrometheusMetricsService()
    with pytest.raises(DuplicateTimeseries):
        metrics.add_collector(ClashingCollector())
