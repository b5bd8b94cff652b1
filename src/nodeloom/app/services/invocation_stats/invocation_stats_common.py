"""The summaries the invocation stats service reports, how they are logged and written, and its error.

Field names follow InvokeAI's where the figure is the same, so one tool reads either project's JSON.
Sizes are in GiB (2**30 bytes) under the name "gb", as InvokeAI reports them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from nodeloom.app.services.shared.atomic_files import write_atomically
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger("nodeloom.stats")


class GESStatsNotFoundError(NodeloomError):
    """No stats are kept for that session: it never ran a node here, was reset, or is too old to be kept."""


@dataclass
class NodeExecutionStatsSummary:
    """Every invocation of one node type in a session."""

    node_type: str
    num_calls: int
    time_used_seconds: float
    peak_vram_gb: float
    """The most CUDA memory allocated while one of these invocations ran; 0 without CUDA."""


ModelCacheStatsProvider = Callable[[str], ModelCacheStatsSummary]
"""Given a session id, the model cache's figures for that session."""


@dataclass
class GraphExecutionStatsSummary:
    """A session as a whole."""

    graph_execution_state_id: str
    execution_time_seconds: float
    """The sum of the node times."""
    wall_time_seconds: float | None
    """From the first node's start to the last node's end; None until a node has finished."""
    ram_usage_gb: float | None
    """This process's resident memory when the last node ended; None until a node has finished."""
    ram_change_gb: float | None
    """`ram_usage_gb` less the resident memory when the first node started; None until a node has finished."""


@dataclass
class InvocationStatsSummary:
    """A session's stats: `str()` is the table for the log, `as_dict()` the JSON for a file."""

    graph_stats: GraphExecutionStatsSummary
    model_cache_stats: ModelCacheStatsSummary
    node_stats: list[NodeExecutionStatsSummary]
    vram_usage_gb: float | None
    """CUDA memory allocated when the summary was made; None without CUDA."""

    def __str__(self) -> str:
        graph = self.graph_stats
        cache = self.model_cache_stats
        width = max([len("Node type"), len("Total"), *(len(node.node_type) for node in self.node_stats)])

        def row(name: str, calls: object, seconds: object, vram: object) -> str:
            return f"{name:<{width}}  {calls:>6}  {seconds:>10}  {vram:>10}"

        lines = [
            f"Stats for session {graph.graph_execution_state_id}",
            row("Node type", "Calls", "Seconds", "Peak VRAM"),
        ]
        for node in self.node_stats:
            lines.append(
                row(
                    node.node_type,
                    node.num_calls,
                    f"{node.time_used_seconds:.3f}s",
                    f"{node.peak_vram_gb:.3f}G",
                )
            )
        lines.append(
            row(
                "Total",
                sum(node.num_calls for node in self.node_stats),
                f"{graph.execution_time_seconds:.3f}s",
                f"{max((node.peak_vram_gb for node in self.node_stats), default=0.0):.3f}G",
            )
        )
        if graph.wall_time_seconds is not None:
            lines.append(f"Wall time, first node start to last node end: {graph.wall_time_seconds:.3f}s")
        if graph.ram_usage_gb is not None and graph.ram_change_gb is not None:
            lines.append(f"Process RAM: {graph.ram_usage_gb:.2f}G ({graph.ram_change_gb:+.3f}G during the session)")
        if self.vram_usage_gb is not None:
            lines.append(f"VRAM allocated now: {self.vram_usage_gb:.3f}G")
        lines += [
            f"Model cache: {cache.cache_hits} hits, {cache.cache_misses} misses, "
            f"{cache.models_cached} models cached, {cache.models_cleared} cleared",
            f"Model cache RAM: {cache.total_usage_gb:.2f}G used by this session's models, "
            f"high-water mark {cache.high_water_mark_gb:.2f}G of {cache.cache_size_gb:.2f}G",
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain dicts, lists, strings and numbers, ready for `json.dumps`."""
        return asdict(self)


def log_summary(summary: InvocationStatsSummary) -> None:
    """Logs the summary as a table, on the `nodeloom.stats` logger."""
    logger.info("%s", summary)


def dump_summary(summary: InvocationStatsSummary, output_path: Path) -> None:
    """Writes the summary to `output_path` as JSON, whole or not at all."""
    data = (json.dumps(summary.as_dict(), indent=2) + "\n").encode()
    write_atomically(output_path, lambda file: file.write(data))
