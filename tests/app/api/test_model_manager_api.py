"""The model manager routes on a real server: install jobs from a path, list, get, update, delete, scan, missing and
orphaned models, and the cache. Installs from URLs and repos: test_model_install_jobs_api.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer
from tests.model_sources import install_and_wait
from tests.tiny_model import write_checkpoint, write_lora

StartServer = Callable[..., LiveServer]


@pytest.fixture
def server(live_server: StartServer, tmp_path: Path, tiny_sd_model: Path) -> LiveServer:
    """A server that installs models from the tests' temporary folders."""
    return live_server(model_install_roots=[tmp_path, tiny_sd_model.parent])


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v2/models", timeout=60) as c:
        yield c


def installed(client: httpx.Client, path: Path, **overrides: Any) -> dict[str, Any]:
    job = install_and_wait(client, path, **overrides)
    assert job["status"] == "completed", job
    config: dict[str, Any] = job["config_out"]
    return config


def test_a_model_installs_lists_updates_and_deletes(client: httpx.Client, tiny_sd_model: Path) -> None:
    refused = install_and_wait(client, tiny_sd_model)
    assert (refused["status"], refused["error_reason"]) == ("error", "ModelBaseUnknownError")
    assert "base override" in refused["error"] and refused["config_out"] is None
    assert refused["source"] == {"path": str(tiny_sd_model), "inplace": True, "type": "local"}

    config = installed(client, tiny_sd_model, base="sd-1", description="tiny")
    assert (config["type"], config["format"], config["base"], config["name"]) == (
        "main",
        "diffusers",
        "sd-1",
        "tiny-sd",
    )
    assert config["path"] == str(tiny_sd_model) and config["description"] == "tiny"

    assert [m["key"] for m in client.get("/").json()["models"]] == [config["key"]]
    assert client.get("/", params={"base_models": ["sd-2", "sdxl"]}).json()["models"] == []
    assert len(client.get("/", params={"base_models": ["sd-1"], "model_type": "main"}).json()["models"]) == 1
    assert client.get("/", params={"model_name": "other"}).json()["models"] == []
    assert client.get(f"/i/{config['key']}").json() == config

    changed = client.patch(f"/i/{config['key']}", json={"name": "Tiny", "default_settings": {"steps": 4}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Tiny" and changed.json()["default_settings"]["steps"] == 4
    bad = client.patch(f"/i/{config['key']}", json={"default_settings": {"scheduler": "warp"}})
    assert bad.status_code == 422

    again = install_and_wait(client, tiny_sd_model, base="sd-1")
    assert (again["status"], again["error_reason"]) == ("error", "DuplicateModelError")
    assert client.delete(f"/i/{config['key']}").status_code == 204
    assert client.get(f"/i/{config['key']}").status_code == 404
    assert client.delete(f"/i/{config['key']}").json()["detail"] == f"No model has the key '{config['key']}'"


def test_paths_that_hold_no_model_are_refused_with_a_4xx_naming_the_problem(
    client: httpx.Client, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    refused_at_once = [
        ("relative/model.safetensors", 400, "is a relative path"),
        ("not a source", 400, "is no model source"),
        (str(tmp_path / "missing.safetensors"), 404, "Nothing exists at"),
    ]
    for source, status, message in refused_at_once:
        response = client.post("/install", params={"source": source})
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    failed_jobs = [
        (tmp_path / "notes.txt", "is a .txt file, not a model"),
        (tmp_path, "with neither a model_index.json"),
    ]
    for path, message in failed_jobs:
        job = install_and_wait(client, path)
        assert job["status"] == "error" and message in job["error"], job
    unknown = client.post("/install", params={"source": str(tmp_path / "ink.safetensors")}, json={"type": "nonsense"})
    assert unknown.status_code == 422


def test_a_folder_scan_lists_models_and_installs_none(
    client: httpx.Client, tiny_sd_model: Path, tmp_path: Path
) -> None:
    lora = write_lora(tmp_path / "ink.safetensors")
    checkpoint = write_checkpoint(tmp_path / "dream.safetensors")
    (tmp_path / "tiny").symlink_to(tiny_sd_model)
    installed(client, lora)
    response = client.get("/scan_folder", params={"scan_path": str(tmp_path)})
    assert response.status_code == 200, response.text
    assert {found["path"]: found["is_installed"] for found in response.json()} == {
        str(checkpoint): False,
        str(lora): True,
        str(tiny_sd_model): False,
    }
    assert len(client.get("/").json()["models"]) == 1
    assert client.get("/scan_folder", params={"scan_path": "models"}).status_code == 400


def test_missing_and_orphaned_models(client: httpx.Client, server: LiveServer, tmp_path: Path) -> None:
    lora = installed(client, write_lora(tmp_path / "ink.safetensors"))
    copied = install_and_wait(client, write_lora(tmp_path / "copied.safetensors"), inplace=False)["config_out"]
    assert copied["path"] == "sd-1/lora/copied.safetensors"
    assert client.get("/missing").json() == {"models": []}
    (tmp_path / "ink.safetensors").unlink()
    assert [model["key"] for model in client.get("/missing").json()["models"]] == [lora["key"]]

    models = server.config.resolve(server.config.models_dir).resolve()
    assert client.get("/sync/orphaned").json() == []
    stray = write_lora(models / "sd-1" / "lora" / "stray.safetensors")
    (models / ".download-tmp" / "job-1").mkdir(parents=True)
    write_lora(models / ".download-tmp" / "job-1" / "partial.safetensors")
    (models / "pipelines" / "tiny").mkdir(parents=True)
    (models / "pipelines" / "tiny" / "model_index.json").write_text("{}")
    (models / "pipelines" / "tiny" / "unet").mkdir()
    (models / "pipelines" / "tiny" / "unet" / "weights.safetensors").write_bytes(b"12345")
    orphaned = client.get("/sync/orphaned").json()
    assert orphaned == [
        {
            "path": "pipelines/tiny",
            "absolute_path": str(models / "pipelines" / "tiny"),
            "files": ["model_index.json", "unet/weights.safetensors"],
            "size_bytes": 2 + 5,
        },
        {
            "path": "sd-1/lora/stray.safetensors",
            "absolute_path": str(stray),
            "files": ["stray.safetensors"],
            "size_bytes": stray.stat().st_size,
        },
    ]
    assert copied["path"] not in str(orphaned)


def test_installs_outside_the_install_roots_get_one_403_that_tells_nothing(
    live_server: StartServer, tmp_path: Path
) -> None:
    server = live_server()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "passwords.txt").write_text("hunter2")
    models = server.config.resolve(server.config.models_dir)
    (models / "photos").mkdir(parents=True)
    (models / "photos" / "cat.png").write_bytes(b"png")
    (models / "escape").symlink_to(tmp_path / "secret")
    with httpx.Client(base_url=f"{server.url}/api/v2/models", timeout=60) as client:
        answers = [
            client.post("/install", params={"source": source})
            for source in ("/root", "/", "/no/such/path", str(tmp_path / "secret"), str(models / "escape"))
        ] + [
            client.get("/scan_folder", params={"scan_path": scan_path})
            for scan_path in ("/", "/no/such/path", str(tmp_path / "secret"))
        ]
        assert {(answer.status_code, answer.text) for answer in answers} == {
            (
                403,
                '{"detail":"Models are installed only from the models folder and the folders in the '
                'model_install_roots setting.","error_type":"ModelPathNotAllowedError"}',
            )
        }
        # Inside the models folder a path is told apart from a missing one, but a folder's entries are never listed.
        not_a_model = install_and_wait(client, models / "photos")
        assert not_a_model["status"] == "error" and "cat.png" not in json.dumps(not_a_model)
        assert client.post("/install", params={"source": str(models / "missing")}).status_code == 404
        scan = client.get("/scan_folder", params={"scan_path": str(models)}).json()
        assert scan == [] and "passwords" not in json.dumps(scan)


def test_the_cache_stats_and_emptying_the_cache(client: httpx.Client, server: LiveServer, tiny_sd_model: Path) -> None:
    assert client.get("/stats").json()["in_cache"] == 0
    config = installed(client, tiny_sd_model / "vae")
    manager = server.services.model_manager
    manager.load.load_model(manager.store.get_model(config["key"]))
    stats = client.get("/stats").json()
    assert (stats["misses"], stats["in_cache"]) == (1, 1)
    assert stats["loaded_model_sizes"][config["key"]] > 0 and stats["cache_size"] == 4 * 2**30
    emptied = client.post("/empty_model_cache").json()
    assert emptied["models_cleared"] == 1 and emptied["bytes_freed"] == stats["loaded_model_sizes"][config["key"]]
    assert client.get("/stats").json()["in_cache"] == 0


def test_the_routes_have_invokeai_operation_ids(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    operation_ids = {
        operation["operationId"]
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v2/models")
        for operation in operations.values()
    }
    assert operation_ids == {
        "list_model_records",
        "list_missing_models",
        "get_orphaned_models",
        "get_model_record",
        "update_model_record",
        "delete_model",
        "install_model",
        "list_model_installs",
        "get_model_install_job",
        "cancel_model_install_job",
        "pause_model_install_job",
        "resume_model_install_job",
        "restart_failed_model_install_job",
        "prune_model_install_jobs",
        "scan_for_models",
        "get_stats",
        "empty_model_cache",
    }
