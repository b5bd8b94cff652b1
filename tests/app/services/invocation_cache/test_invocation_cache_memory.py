from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    InvocationRegistry,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import InputField, OutputField
from nodeloom.app.services.invocation_cache.invocation_cache_memory import MemoryInvocationCache
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData

# A registry of its own, so these node types never reach the one the application uses.
_registry = InvocationRegistry()


@invocation_output("cache_test_output", registry_=_registry)
class CacheTestOutput(BaseInvocationOutput):
    value: int = OutputField(description="The sum")
    items: list[int] = OutputField(default=[], description="The inputs, as a list")


@invocation("cache_test_add", registry_=_registry)
class CacheTestAddInvocation(BaseInvocation):
    """Adds two numbers and counts how often it really ran."""

    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The second number")
    label: str = InputField(default="", description="A label")
    options: dict[str, int] = InputField(default={}, description="Options")

    calls: ClassVar[int] = 0

    def invoke(self, context: InvocationContext) -> CacheTestOutput:
        type(self).calls += 1
        return CacheTestOutput(value=self.a + self.b, items=[self.a, self.b])


@invocation("cache_test_other", registry_=_registry)
class CacheTestOtherInvocation(BaseInvocation):
    """The same inputs as `cache_test_add` under another type."""

    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The second number")
    label: str = InputField(default="", description="A label")
    options: dict[str, int] = InputField(default={}, description="Options")

    def invoke(self, context: InvocationContext) -> CacheTestOutput:
        return CacheTestOutput(value=self.a - self.b)


def sample_node_key() -> str:
    """The key of a fixed node; the cross-process test calls it here and in a child interpreter."""
    node = CacheTestAddInvocation(id="x", a=1, b=2, label="héllo ✓", options={"z": 1, "a": 2, "m": 3})
    return MemoryInvocationCache(max_size=1).create_key(node)


def _output(value: int) -> CacheTestOutput:
    return CacheTestOutput(value=value)


def _context(node: BaseInvocation) -> InvocationContext:
    return InvocationContext(
        data=InvocationContextData(invocation=node, source_invocation_id=node.id, session_id="session")
    )


@pytest.fixture(autouse=True)
def _reset_call_count() -> None:
    CacheTestAddInvocation.calls = 0


def test_key_ignores_id_and_node_attributes() -> None:
    cache = MemoryInvocationCache(max_size=10)
    first = CacheTestAddInvocation(id="one", a=1, b=2)
    second = CacheTestAddInvocation(id="two", a=1, b=2, is_intermediate=True, use_cache=False)
    assert cache.create_key(first) == cache.create_key(second)


def test_key_ignores_dict_insertion_order() -> None:
    cache = MemoryInvocationCache(max_size=10)
    first = CacheTestAddInvocation(options={"a": 1, "b": 2})
    second = CacheTestAddInvocation(options={"b": 2, "a": 1})
    assert cache.create_key(first) == cache.create_key(second)


def test_key_differs_with_inputs_and_type() -> None:
    cache = MemoryInvocationCache(max_size=10)
    keys = {
        cache.create_key(CacheTestAddInvocation(a=1, b=2)),
        cache.create_key(CacheTestAddInvocation(a=2, b=1)),
        cache.create_key(CacheTestAddInvocation(a=1, b=2, label="x")),
        cache.create_key(CacheTestAddInvocation(a=1, b=2, options={"a": 1})),
        cache.create_key(CacheTestOtherInvocation(a=1, b=2)),
    }
    assert len(keys) == 5


def test_key_is_stable_across_processes() -> None:
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cache_key_probe', {str(Path(__file__))!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(module.sample_node_key())\n"
    )
    expected = sample_node_key()
    # Two different hash seeds: a key built on Python's salted `hash()` would differ between them.
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert result.stdout.strip() == expected


def test_get_and_save_count_hits_and_misses() -> None:
    cache = MemoryInvocationCache(max_size=10)
    assert cache.get("k") is None
    cache.save("k", _output(3))
    hit = cache.get("k")
    assert isinstance(hit, CacheTestOutput)
    assert hit.value == 3
    assert cache.get("other") is None
    status = cache.get_status()
    assert (status.size, status.hits, status.misses, status.enabled, status.max_size) == (1, 1, 2, True, 10)


def test_evicts_least_recently_used() -> None:
    cache = MemoryInvocationCache(max_size=2)
    cache.save("a", _output(1))
    cache.save("b", _output(2))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.save("c", _output(3))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert cache.get_status().size == 2


def test_saving_an_existing_key_replaces_it_and_refreshes_it() -> None:
    cache = MemoryInvocationCache(max_size=2)
    cache.save("a", _output(1))
    cache.save("b", _output(2))
    cache.save("a", _output(10))
    cache.save("c", _output(3))
    assert cache.get("b") is None
    hit = cache.get("a")
    assert isinstance(hit, CacheTestOutput)
    assert hit.value == 10


def test_max_size_zero_stores_nothing() -> None:
    cache = MemoryInvocationCache(max_size=0)
    cache.save("a", _output(1))
    assert cache.get("a") is None
    assert cache.get_status().size == 0


def test_negative_max_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        MemoryInvocationCache(max_size=-1)


def test_delete() -> None:
    cache = MemoryInvocationCache(max_size=10)
    cache.save("a", _output(1))
    cache.delete("a")
    cache.delete("never saved")
    assert cache.get("a") is None


def test_disabled_cache_stores_nothing_and_counts_nothing() -> None:
    cache = MemoryInvocationCache(max_size=10, enabled=False)
    cache.save("a", _output(1))
    assert cache.get("a") is None
    status = cache.get_status()
    assert (status.size, status.hits, status.misses, status.enabled) == (0, 0, 0, False)
    cache.enable()
    assert cache.get("a") is None
    assert cache.get_status().misses == 1


def test_disable_keeps_entries_for_when_it_is_enabled_again() -> None:
    cache = MemoryInvocationCache(max_size=10)
    cache.save("a", _output(1))
    cache.disable()
    assert cache.get("a") is None
    cache.enable()
    assert cache.get("a") is not None


def test_clear_empties_and_resets_counters() -> None:
    cache = MemoryInvocationCache(max_size=10)
    cache.save("a", _output(1))
    cache.get("a")
    cache.get("b")
    cache.clear()
    status = cache.get_status()
    assert (status.size, status.hits, status.misses) == (0, 0, 0)
    assert cache.get("a") is None


def test_mutating_saved_or_returned_outputs_leaves_the_cache_intact() -> None:
    cache = MemoryInvocationCache(max_size=10)
    saved = CacheTestOutput(value=1, items=[1])
    cache.save("a", saved)
    saved.items.append(99)
    saved.value = 99
    first = cache.get("a")
    assert isinstance(first, CacheTestOutput)
    first.items.append(42)
    second = cache.get("a")
    assert isinstance(second, CacheTestOutput)
    assert (second.value, second.items) == (1, [1])


def test_invoke_internal_serves_an_equal_node_from_the_cache() -> None:
    cache = MemoryInvocationCache(max_size=10)
    first = CacheTestAddInvocation(id="first", a=2, b=3)
    second = CacheTestAddInvocation(id="second", a=2, b=3)

    out1 = first.invoke_internal(_context(first), cache)
    out2 = second.invoke_internal(_context(second), cache)

    assert CacheTestAddInvocation.calls == 1
    assert isinstance(out2, CacheTestOutput)
    assert out2 == out1
    status = cache.get_status()
    assert (status.size, status.hits, status.misses) == (1, 1, 1)


def test_invoke_internal_never_caches_a_node_with_use_cache_false() -> None:
    cache = MemoryInvocationCache(max_size=10)
    node = CacheTestAddInvocation(a=2, b=3, use_cache=False)

    node.invoke_internal(_context(node), cache)
    node.invoke_internal(_context(node), cache)

    assert CacheTestAddInvocation.calls == 2
    status = cache.get_status()
    assert (status.size, status.hits, status.misses) == (0, 0, 0)


def test_concurrent_use_keeps_counters_consistent() -> None:
    cache = MemoryInvocationCache(max_size=8)
    rounds = 500

    def work(worker: int) -> None:
        for i in range(rounds):
            key = f"{worker}-{i % 16}"
            if cache.get(key) is None:
                cache.save(key, _output(i))
            cache.get_status()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    status = cache.get_status()
    assert status.hits + status.misses == 4 * rounds
    assert status.size <= 8
