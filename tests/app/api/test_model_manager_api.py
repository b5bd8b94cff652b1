"""The model manager routes on a real server: install, list, get, update, delete, scan, and the cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import LiveServer
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


def install(client: httpx.Client, path: Path, **overrides: Any) -> httpx.Response:
    return client.post("/install", params={"source": str(path)}, json=overrides or None)


def installed(client: httpx.Client, path: Path, **overrides: Any) -> dict[str, Any]:
    response = install(client, path, **overrides)
    assert response.status_code == 201, response.text
    config: dict[str, Any] = response.json()
    return config


def test_a_model_installs_lists_updates_and_deletes(client: httpx.Client, tiny_sd_model: Path) -> None:
    refused = install(client, tiny_sd_model)
    assert refused.status_code == 422
    assert refused.json()["error_type"] == "ModelBaseUnknownError"
    assert "base override" in refused.json()["detail"]

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

    assert install(client, tiny_sd_model, base="sd-1").status_code == 409
    assert client.delete(f"/i/{config['key']}").status_code == 204
    assert client.get(f"/i/{config['key']}").status_code == 404
    assert client.delete(f"/i/{config['key']}").json()["detail"] == f"No model has the key '{config['key']}'"


def test_paths_that_hold_no_model_are_refused_with_a_4xx_naming_the_problem(
    client: httpx.Client, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        ("relative/model.safetensors", 400, "is a relative path"),
        (str(tmp_path / "missing.safetensors"), 404, "Nothing exists at"),
        (str(tmp_path / "notes.txt"), 415, "is a .txt file, not a model"),
        (str(tmp_path), 415, "with neither a model_index.json"),
    ]
    for source, status, message in cases:
        response = client.post("/install", params={"source": source})
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    unknown = install(client, write_lora(tmp_path / "ink.safetensors"), type="nonsense")
    assert unknown.status_code == 422


def test_a_folder_scan_installs_what_it_can(client: httpx.Client, tiny_sd_model: Path, tmp_path: Path) -> None:
    write_lora(tmp_path / "ink.safetensors")
    write_checkpoint(tmp_path / "dream.safetensors")
    (tmp_path / "tiny").symlink_to(tiny_sd_model)
    response = client.post("/scan_folder", params={"scan_path": str(tmp_path)})
    assert response.status_code == 200, response.text
    result = response.json()
    assert sorted(config["name"] for config in result["installed"]) == ["dream", "ink"]
    assert [skipped["path"] for skipped in result["skipped"]] == [str(tmp_path / "tiny")]
    assert client.post("/scan_folder", params={"scan_path": "models"}).status_code == 400


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
            client.post("/scan_folder", params={"scan_path": scan_path})
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
        not_a_model = client.post("/install", params={"source": str(models / "photos")})
        assert not_a_model.status_code == 415 and "cat.png" not in not_a_model.text
        assert client.post("/install", params={"source": str(models / "missing")}).status_code == 404
        scan = client.post("/scan_folder", params={"scan_path": str(models)}).json()
        assert scan["installed"] == [] and "passwords" not in json.dumps(scan)


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
        "get_model_record",
        "update_model_record",
        "delete_model",
        "install_model",
        "scan_folder",
        "get_stats",
        "empty_model_cache",
    }
