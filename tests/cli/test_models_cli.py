"""`nodeloom models`, run as a subprocess against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import LiveServer
from tests.model_sources import Served, serving
from tests.tiny_model import write_lora


@pytest.fixture
def models_cli(
    live_server: Callable[..., LiveServer], tiny_sd_model: Path, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    server = live_server(model_install_roots=[tiny_sd_model.parent, tmp_path], model_download_allow_private=True)

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nodeloom", "models", *map(str, args), "--url", server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    return run


def test_install_list_and_remove(
    models_cli: Callable[..., subprocess.CompletedProcess[str]], tiny_sd_model: Path, tmp_path: Path
) -> None:
    refused = models_cli("install", tiny_sd_model)
    assert refused.returncode == 1
    assert "nodeloom models install: install job 1 error: ModelBaseUnknownError: Cannot tell the base" in refused.stderr
    assert "base override" in refused.stderr

    pipeline = models_cli("install", tiny_sd_model, "--base", "sd-1", "--name", "Tiny")
    assert pipeline.returncode == 0, pipeline.stderr
    assert pipeline.stdout.startswith("installed 'Tiny' (sd-1 main, diffusers) as ")
    key = pipeline.stdout.split()[-1]

    lora = models_cli("install", write_lora(tmp_path / "ink.safetensors"), "--base", "sd-2", "--json")
    assert lora.returncode == 0, lora.stderr
    assert json.loads(lora.stdout)["base"] == "sd-2"

    listing = models_cli("list")
    assert listing.returncode == 0, listing.stderr
    assert "Tiny" in listing.stdout and "ink" in listing.stdout and "2 models" in listing.stdout
    assert {model["name"] for model in json.loads(models_cli("list", "--json").stdout)["models"]} == {"Tiny", "ink"}

    removed = models_cli("remove", key)
    assert (removed.returncode, removed.stdout.strip()) == (0, f"removed model {key}")
    again = models_cli("remove", key)
    assert again.returncode == 1 and f"404 Not Found: No model has the key '{key}'" in again.stderr


def test_a_relative_path_is_sent_made_absolute(
    models_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lora(tmp_path / "ink.safetensors")
    monkeypatch.chdir(tmp_path)
    result = models_cli("install", "ink.safetensors", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == str(tmp_path / "ink.safetensors")


def test_a_url_install_follows_its_job_with_a_progress_bar(
    models_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    body = write_lora(tmp_path / "ink.safetensors").read_bytes()
    with serving(Served(files={"/ink.safetensors": body}, seconds_per_chunk=0.002)) as url:
        result = models_cli("install", f"{url}/ink.safetensors")
        missing = models_cli("install", f"{url}/gone.safetensors")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("installed 'ink' (sd-1 lora, lycoris) as ")
    # The bar's last state: the whole download, in rich's units.
    assert (
        f"{url}/ink.safetensors: completed" in result.stderr
        and f"{len(body) / 1000:.1f}/{len(body) / 1000:.1f} kB" in result.stderr
    )
    assert missing.returncode == 1
    assert "install job 2 error: ModelDownloadError:" in missing.stderr and "answered 404 Not Found" in missing.stderr


def test_an_unreachable_server_is_reported() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nodeloom", "models", "list", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach the nodeloom server at http://127.0.0.1:9" in result.stderr
