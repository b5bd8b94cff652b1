"""The queue over a long run: 20,000 sessions through the real services, with a history of 5,000."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.soak import BATCH_SESSIONS, soak

from nodeloom.app.services.session_queue.session_queue_sql_history import PRUNE_STEP_MAX

HISTORY = 5_000


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_twenty_thousand_sessions_leave_memory_and_the_database_bounded(tmp_path: Path) -> None:
    points = list(soak(tmp_path / "root", sessions=20_000, history=HISTORY, every=1_000))

    assert [point.sessions for point in points] == list(range(1_000, 20_001, 1_000))
    assert points[-1].refused == 0  # every session of every batch was enqueued
    for point in points[5:]:  # once the history is full, it stays full and no fuller
        assert HISTORY <= point.items <= HISTORY + PRUNE_STEP_MAX, point
        assert point.batch_rows <= point.items // BATCH_SESSIONS + 1, point
        assert point.count_rows <= 3 * point.batch_rows + 3, point  # pending, in progress, completed per batch
    assert max(point.db_mb for point in points[6:]) <= 1.25 * points[5].db_mb, points
    assert max(point.rss_mb for point in points[1:]) - points[0].rss_mb < 30, points
