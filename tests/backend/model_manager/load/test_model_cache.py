"""The model cache with real torch modules on the CPU: LRU eviction by size, locks, and stats overall and per session.

Moving models to and from VRAM needs a GPU: on the CPU nothing moves, so the VRAM budget is covered through
`records_to_free`, the choice that lock() uses to offload models and put() uses to evict them.
"""

from __future__ import annotations

import logging

import pytest
import torch

from nodeloom.backend.model_manager.load.model_cache import CacheRecord, ModelCache, model_size_bytes, records_to_free

LINEAR_BYTES = (64 * 64 + 64) * 4
"""A float32 Linear(64, 64): weights and bias."""
GB = 2**30


def linear() -> torch.nn.Module:
    return torch.nn.Linear(64, 64)


def cache_for(models: float, max_sessions: int = 32) -> ModelCache:
    """A CPU cache whose RAM budget holds `models` Linear(64, 64) modules."""
    return ModelCache(
        ram_budget_gb=models * LINEAR_BYTES / GB, vram_budget_gb=0, device="cpu", max_sessions=max_sessions
    )


def test_sizes_count_parameters_and_buffers_of_modules_and_tensors_of_state_dicts() -> None:
    assert model_size_bytes(linear()) == LINEAR_BYTES
    norm = torch.nn.BatchNorm1d(8)
    # weight, bias, running mean and variance (float32), and the batch count (int64)
    assert model_size_bytes(norm) == 4 * 8 * 4 + 8
    assert model_size_bytes({"a": torch.zeros(10, dtype=torch.float16), "step": 3}) == 20
    assert model_size_bytes("a tokenizer") == 0


def test_a_second_get_is_a_hit_returning_the_same_model() -> None:
    cache = cache_for(4)
    assert cache.get("a", "s1") is None
    model = linear()
    record = cache.put("a", model, "s1")
    hit = cache.get("a", "s1")
    assert hit is record and hit.model is model
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.in_cache) == (1, 1, 1)
    assert stats.loaded_model_sizes == {"a": LINEAR_BYTES}


def test_the_least_recently_used_model_is_evicted_when_room_is_needed() -> None:
    cache = cache_for(2.5)
    cache.put("a", linear())
    cache.put("b", linear())
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", linear())
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.stats().cleared == 1


def test_locked_models_are_never_evicted_and_the_cache_warns_when_it_runs_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = cache_for(1.5)
    locked = cache.put("a", linear())
    cache.lock(locked)
    with caplog.at_level(logging.WARNING):
        cache.put("b", linear())
    assert cache.get("a") is locked
    assert "beyond its" in caplog.text
    cache.unlock(locked)
    cache.put("c", linear())
    assert cache.get("a") is None


def test_on_the_cpu_locking_moves_nothing() -> None:
    cache = cache_for(2)
    record = cache.put("a", linear())
    cache.lock(record)
    assert record.locks == 1 and not record.on_device
    assert next(record.model.parameters()).device.type == "cpu"
    cache.unlock(record)
    cache.unlock(record)
    assert record.locks == 0


def test_empty_drops_every_model_not_in_use() -> None:
    cache = cache_for(4)
    in_use = cache.put("a", linear())
    cache.put("b", linear())
    cache.put("c", {"w": torch.zeros(16)})
    cache.lock(in_use)
    result = cache.empty()
    assert result.models_cleared == 2 and result.bytes_freed == LINEAR_BYTES + 64
    assert cache.stats().in_cache == 1 and cache.stats().cleared == 2


def test_stats_are_kept_per_session() -> None:
    cache = cache_for(2.5, max_sessions=2)
    cache.get("a", "s1")
    cache.put("a", linear(), "s1")
    cache.get("a", "s2")
    cache.get("b", "s2")
    cache.put("b", linear(), "s2")
    cache.get("c", "s2")
    cache.put("c", linear(), "s2")  # evicts a
    s1 = cache.session_stats("s1")
    assert (s1.cache_hits, s1.cache_misses, s1.models_cached, s1.models_cleared) == (0, 1, 1, 0)
    assert s1.high_water_mark_gb == pytest.approx(LINEAR_BYTES / GB)
    assert s1.total_usage_gb == pytest.approx(LINEAR_BYTES / GB)
    s2 = cache.session_stats("s2")
    assert (s2.cache_hits, s2.cache_misses, s2.models_cached, s2.models_cleared) == (1, 2, 2, 1)
    assert s2.high_water_mark_gb == pytest.approx(2 * LINEAR_BYTES / GB)
    assert s2.total_usage_gb == pytest.approx(3 * LINEAR_BYTES / GB)
    assert s2.cache_size_gb == pytest.approx(2.5 * LINEAR_BYTES / GB)
    cache.get("a", "s3")  # a third session: s1, the oldest, is forgotten
    assert cache.session_stats("s1").cache_misses == 0


def record(key: str, size: int, locks: int = 0) -> CacheRecord:
    return CacheRecord(key=key, model=None, size=size, locks=locks)


def test_records_to_free_takes_the_least_recently_used_unlocked_ones_until_the_need_fits() -> None:
    a, b, c, d = record("a", 4), record("b", 3, locks=1), record("c", 2), record("d", 5)
    assert records_to_free([a, b, c, d], needed=0, budget=14) == []
    assert records_to_free([a, b, c, d], needed=2, budget=14) == [a]
    assert records_to_free([a, b, c, d], needed=6, budget=14) == [a, c]
    # Not enough even with every unlocked one gone: all of them, and the locked one stays.
    assert records_to_free([a, b, c, d], needed=20, budget=14) == [a, c, d]
