from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from nodeloom.app.services.object_serializer.object_serializer_common import (
    InvalidObjectNameError,
    ObjectNotFoundError,
    UnsupportedObjectError,
)
from nodeloom.app.services.object_serializer.object_serializer_disk import ObjectSerializerDisk
from nodeloom.app.services.object_serializer.object_serializer_forward_cache import ObjectSerializerForwardCache


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "tensors"


@pytest.fixture
def store(folder: Path) -> ObjectSerializerDisk[Any]:
    return ObjectSerializerDisk(folder, "tensor")


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1.5, "x", None, True], "c": {"d": []}},
        [1, 2, {"three": 3}],
        "just a string",
        42,
        None,
    ],
)
def test_plain_data_round_trips_as_json(store: ObjectSerializerDisk[Any], folder: Path, data: object) -> None:
    name = store.save(data)
    assert name.startswith("tensor_")
    assert uuid.UUID(name.removeprefix("tensor_")).version == 4
    assert (folder / f"{name}.json").exists()
    assert store.load(name) == data


def test_a_tensor_round_trips(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    tensor = torch.linspace(-1, 1, 24, dtype=torch.float16).reshape(2, 3, 4)
    name = store.save(tensor)
    assert (folder / f"{name}.pt").exists()
    loaded = store.load(name)
    assert isinstance(loaded, torch.Tensor)
    assert loaded.dtype == torch.float16
    assert loaded.device.type == "cpu"
    assert torch.equal(loaded, tensor)


def test_tensors_in_containers_round_trip(store: ObjectSerializerDisk[Any]) -> None:
    conditioning: dict[str, Any] = {
        "conditionings": [{"embeds": torch.randn(1, 77, 8), "pooled": None}],
        "size": (64, 64),
        "scale": 7.5,
    }
    loaded = store.load(store.save(conditioning))
    assert torch.equal(loaded["conditionings"][0]["embeds"], conditioning["conditionings"][0]["embeds"])
    assert loaded["conditionings"][0]["pooled"] is None
    assert loaded["size"] == (64, 64)
    assert loaded["scale"] == 7.5


class Custom:
    pass


@pytest.mark.parametrize("obj", [Custom(), {"a": Custom()}, {1, 2}, [torch.zeros(1), Custom()]])
def test_other_objects_are_refused_when_saved(store: ObjectSerializerDisk[Any], folder: Path, obj: object) -> None:
    with pytest.raises(UnsupportedObjectError):
        store.save(obj)
    assert os.listdir(folder) == []


def test_a_planted_pickle_is_never_run(store: ObjectSerializerDisk[Any], folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    name = f"tensor_{uuid.uuid4()}"
    (folder / f"{name}.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        store.load(name)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    [
        "../secret",
        "/etc/passwd",
        f"tensor_{uuid.uuid4()}/../../x",
        f"tensor_{uuid.uuid4()}\x00",
        f"tensor_{uuid.uuid4()}.pt",
        f"conditioning_{uuid.uuid4()}",
        f"tensor_{uuid.uuid4().hex}",
        f"TENSOR_{uuid.uuid4()}",
        "tensor_",
    ],
)
def test_bad_names_are_refused(store: ObjectSerializerDisk[Any], name: str) -> None:
    for attempt in (lambda: store.load(name), lambda: store.delete(name)):
        with pytest.raises(InvalidObjectNameError):
            attempt()


def test_a_link_leading_out_of_the_folder_is_refused(
    store: ObjectSerializerDisk[Any], folder: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": 1}')
    name = f"tensor_{uuid.uuid4()}"
    (folder / f"{name}.json").symlink_to(outside)
    with pytest.raises(InvalidObjectNameError):
        store.load(name)


def test_unknown_names_are_not_found(store: ObjectSerializerDisk[Any]) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.load(f"tensor_{uuid.uuid4()}")


def test_delete(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    names = [store.save({"n": 1}), store.save(torch.ones(2))]
    for name in names:
        store.delete(name)
        with pytest.raises(ObjectNotFoundError):
            store.load(name)
    store.delete(names[0])
    assert os.listdir(folder) == []


def test_delete_all_prunes_only_this_stores_objects(folder: Path) -> None:
    tensors: ObjectSerializerDisk[Any] = ObjectSerializerDisk(folder, "tensor")
    conditioning: ObjectSerializerDisk[Any] = ObjectSerializerDisk(folder, "conditioning")
    for _ in range(3):
        tensors.save(torch.zeros(2))
    tensors.save([1, 2])
    kept = conditioning.save({"embeds": torch.ones(1)})
    (folder / f".tensor_{uuid.uuid4()}.pt.x1y2.tmp").write_bytes(b"a write that died")
    (folder / "notes.txt").write_text("not ours")

    assert tensors.delete_all() == 4
    assert sorted(os.listdir(folder)) == sorted([f"{kept}.pt", "notes.txt"])
    assert torch.equal(conditioning.load(kept)["embeds"], torch.ones(1))
    assert tensors.delete_all() == 0


def test_remove_temporary_files_removes_only_this_stores(folder: Path) -> None:
    tensors: ObjectSerializerDisk[Any] = ObjectSerializerDisk(folder, "tensor")
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(tensors)
    kept = cache.save([1, 2])
    for suffix in ("pt", "json"):
        (folder / f".tensor_{uuid.uuid4()}.{suffix}.x1y2.tmp").write_bytes(b"a write that died")
    others = f".conditioning_{uuid.uuid4()}.pt.x1y2.tmp"
    (folder / others).write_bytes(b"another store's")

    assert cache.remove_temporary_files() == 2
    assert sorted(os.listdir(folder)) == sorted([f"{kept}.json", others])
    assert tensors.load(kept) == [1, 2]


def test_a_bad_prefix_is_refused(folder: Path) -> None:
    for prefix in ("", "Tensor", "../x", "a_b", "x" * 33):
        with pytest.raises(ValueError):
            ObjectSerializerDisk(folder, prefix)


def test_forward_cache_serves_without_the_disk(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(store, max_cache_size=2)
    tensor = torch.arange(4)
    name = cache.save(tensor)
    (folder / f"{name}.pt").unlink()
    assert cache.load(name) is tensor


def test_forward_cache_evicts_the_least_recently_used(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(store, max_cache_size=2)
    first, second = cache.save({"n": 1}), cache.save({"n": 2})
    cache.load(first)
    third = cache.save({"n": 3})
    for name in (first, second, third):
        (folder / f"{name}.json").unlink()
    assert cache.load(first) == {"n": 1}
    assert cache.load(third) == {"n": 3}
    with pytest.raises(ObjectNotFoundError):
        cache.load(second)


def test_forward_cache_loads_through_and_remembers(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    name = store.save({"n": 1})
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(store)
    loaded = cache.load(name)
    (folder / f"{name}.json").unlink()
    assert cache.load(name) is loaded


def test_forward_cache_delete_and_prune_reach_both(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(store)
    deleted, pruned = cache.save({"n": 1}), cache.save(torch.zeros(1))
    cache.delete(deleted)
    with pytest.raises(ObjectNotFoundError):
        cache.load(deleted)
    assert cache.delete_all() == 1
    with pytest.raises(ObjectNotFoundError):
        cache.load(pruned)
    assert os.listdir(folder) == []


def test_a_cache_of_size_zero_keeps_nothing(store: ObjectSerializerDisk[Any], folder: Path) -> None:
    cache: ObjectSerializerForwardCache[Any] = ObjectSerializerForwardCache(store, max_cache_size=0)
    name = cache.save({"n": 1})
    (folder / f"{name}.json").unlink()
    with pytest.raises(ObjectNotFoundError):
        cache.load(name)


def test_storing_plain_data_never_imports_torch(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from nodeloom.app.services.object_serializer.object_serializer_disk import ObjectSerializerDisk
from nodeloom.app.services.object_serializer.object_serializer_forward_cache import ObjectSerializerForwardCache
from nodeloom.app.services.shared.invocation_context_stores import TensorsInterface
store = ObjectSerializerForwardCache(ObjectSerializerDisk(Path({str(tmp_path)!r}), "tensor"))
assert store.load(store.save({{"a": [1, 2]}})) == {{"a": [1, 2]}}
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-W", "error", "-c", script], check=True, timeout=60)
