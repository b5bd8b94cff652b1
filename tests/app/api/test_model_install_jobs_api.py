"""Install jobs from URLs and Hugging Face repos on a real server, downloading from real servers on 127.0.0.1: one
serving files, one standing in for the hub (named by HF_ENDPOINT)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest
import socketio
from tests.conftest import LiveServer
from tests.model_sources import Served, folder_files, install_and_wait, serving, wait_for_job
from tests.tiny_model import write_lora

StartServer = Callable[..., LiveServer]


class Models:
    """A server's model routes, the install events a socket.io client got from it, and its models folder."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.client = httpx.Client(base_url=f"{server.url}/api/v2/models", timeout=60)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.sio = socketio.Client()
        self.sio.on("*", self._record)
        self.sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
        self.folder = server.config.resolve(server.config.models_dir)

    def _record(self, name: str, data: dict[str, Any]) -> None:
        if name.startswith("model_install"):
            self.events.append((name, data))

    def close(self) -> None:
        self.sio.disconnect()
        self.client.close()

    def of(self, job_id: int) -> list[tuple[str, dict[str, Any]]]:
        """The job's events, once its last one has come."""
        ends = {"model_install_complete", "model_install_error", "model_install_cancelled"}
        deadline = time.monotonic() + 10
        while not any(name in ends and data["id"] == job_id for name, data in self.events):
            assert time.monotonic() < deadline, f"no end event for job {job_id}: {self.events}"
            time.sleep(0.01)
        return [(name, data) for name, data in self.events if data["id"] == job_id]

    def names(self, job_id: int) -> list[str]:
        """The names of the job's events, each run of progress events as one."""
        names: list[str] = []
        for name, _ in self.of(job_id):
            if not (names and names[-1] == name):
                names.append(name)
        return names

    def start(self, source: str, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/install", params={"source": source}, json=overrides or None)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_for(self, job_id: int, status: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = self.client.get(f"/install/{job_id}").json()
            if job["status"] == status:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.02)

    def leftovers(self) -> list[Path]:
        """What jobs left in the downloads folder."""
        downloads = self.folder / ".download-tmp"
        return sorted(downloads.rglob("*")) if downloads.exists() else []


@pytest.fixture
def models(live_server: StartServer) -> Iterator[Models]:
    models = Models(live_server(model_download_allow_private=True))
    yield models
    models.close()


@pytest.fixture
def lora_bytes(tmp_path: Path) -> bytes:
    return write_lora(tmp_path / "ink.safetensors").read_bytes()


DOWNLOAD_EVENTS = [
    "model_install_download_started",
    "model_install_download_progress",
    "model_install_downloads_complete",
    "model_install_started",
    "model_install_complete",
]


def test_a_url_downloads_resuming_after_a_cut_then_installs(models: Models, lora_bytes: bytes) -> None:
    served = Served(files={"/files/ink.safetensors": lora_bytes}, cut_once={"/files/ink.safetensors"})
    with serving(served) as url:
        source = f"{url}/files/ink.safetensors"
        started = models.start(source, description="from the web")
        assert started["source"] == {"url": source, "type": "url"} and started["status"] in ("waiting", "downloading")
        job = wait_for_job(models.client, started)
    assert job["status"] == "completed", job
    # The first answer stopped halfway; the second asked for the rest only.
    half = len(lora_bytes) - len(lora_bytes) // 2
    assert served.requests == [("/files/ink.safetensors", None), ("/files/ink.safetensors", f"bytes={half}-")]
    config = job["config_out"]
    assert (config["type"], config["base"], config["path"], config["source"]) == (
        "lora",
        "sd-1",
        "sd-1/lora/ink.safetensors",
        source,
    )
    assert config["description"] == "from the web"
    assert (models.folder / config["path"]).read_bytes() == lora_bytes
    assert job["bytes"] == job["total_bytes"] == len(lora_bytes)
    assert job["download_parts"][0]["status"] == "completed"
    assert models.names(job["id"]) == DOWNLOAD_EVENTS
    events = models.of(job["id"])
    assert events[0][1]["source"] == {"url": source, "type": "url"}
    assert events[0][1]["parts"][0]["url"] == source
    progress = [data for name, data in events if name == "model_install_download_progress"]
    assert [data["bytes"] for data in progress] == sorted(data["bytes"] for data in progress)
    # A URL's size is known once its server answers.
    assert {data["total_bytes"] for data in progress} == {len(lora_bytes)}
    complete = events[-1][1]
    assert (complete["key"], complete["config"], complete["total_bytes"]) == (config["key"], config, len(lora_bytes))
    assert models.leftovers() == []


def test_cancelling_mid_download_leaves_nothing(models: Models) -> None:
    served = Served(files={"/big.safetensors": bytes(400_000)}, seconds_per_chunk=0.01)
    with serving(served) as url:
        job = models.start(f"{url}/big.safetensors")
        downloading = models.wait_for(job["id"], "downloading")
        while not any(path.suffix == ".part" for path in models.leftovers()):
            time.sleep(0.01)
        cancelled = models.client.delete(f"/install/{job['id']}")
        assert cancelled.status_code == 201, cancelled.text
        ended = wait_for_job(models.client, downloading)
    assert ended["status"] == "cancelled"
    assert models.names(job["id"])[-1] == "model_install_cancelled"
    assert models.leftovers() == []
    assert models.client.get("/").json()["models"] == []
    again = models.client.delete(f"/install/{job['id']}")
    assert again.status_code == 201 and again.json()["status"] == "cancelled"


def paused_mid_download(models: Models, source: str) -> dict[str, Any]:
    """A job of `source`, paused once part of its file is on disk; the job as it was started."""
    job = models.start(source)
    models.wait_for(job["id"], "downloading")
    while not any(path.suffix == ".part" and path.stat().st_size > 0 for path in models.leftovers()):
        time.sleep(0.01)
    assert models.client.post(f"/install/{job['id']}/pause").status_code == 201
    models.wait_for(job["id"], "paused")
    return job


def test_pausing_keeps_the_partial_file_and_resuming_goes_on_from_it(models: Models, lora_bytes: bytes) -> None:
    body = lora_bytes + bytes(300_000)
    served = Served(files={"/slow/ink.safetensors": body}, seconds_per_chunk=0.005)
    with serving(served) as url:
        job = paused_mid_download(models, f"{url}/slow/ink.safetensors")
        paused = models.wait_for(job["id"], "paused")
        partial = [path for path in models.leftovers() if path.suffix == ".part"]
        assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(body)
        assert paused["download_parts"][0]["status"] == "paused"
        assert models.client.post(f"/install/{job['id']}/pause").status_code == 409
        served.seconds_per_chunk = 0
        resumed = models.client.post(f"/install/{job['id']}/resume")
        assert resumed.status_code == 201, resumed.text
        done = wait_for_job(models.client, job)
    # A LoRA with trailing zeros still probes as the LoRA: the point is that the bytes arrive whole.
    assert done["status"] == "completed", done
    assert (models.folder / done["config_out"]["path"]).read_bytes() == body
    assert served.requests[-1][1] is not None and served.requests[-1][1].startswith("bytes=")
    assert models.leftovers() == []


def test_another_server_starting_and_stopping_on_the_same_root_leaves_a_paused_download(
    models: Models, lora_bytes: bytes
) -> None:
    body = lora_bytes + bytes(300_000)
    served = Served(files={"/slow/ink.safetensors": body}, seconds_per_chunk=0.005)
    with serving(served) as url:
        job = paused_mid_download(models, f"{url}/slow/ink.safetensors")
        paused = {path: path.stat().st_size for path in models.leftovers() if path.is_file()}
        # What a server that crashed left: its job's folder, held by no one.
        crashed = models.folder / ".download-tmp" / "job-1-crashed"
        (crashed / "files").mkdir(parents=True)
        (crashed / "files" / "ink.safetensors.part").write_bytes(b"half a model")

        other = LiveServer(models.server.config.root, model_download_allow_private=True).start()
        assert not crashed.exists()
        other.stop()
        assert {path: path.stat().st_size for path in models.leftovers() if path.is_file()} == paused

        served.seconds_per_chunk = 0
        assert models.client.post(f"/install/{job['id']}/resume").status_code == 201
        done = wait_for_job(models.client, job)
    assert done["status"] == "completed", done
    assert (models.folder / done["config_out"]["path"]).read_bytes() == body
    assert models.leftovers() == []


def test_bad_urls_fail_their_job_with_a_clear_error_not_the_server(models: Models) -> None:
    with serving(Served()) as url:
        cases = {
            f"{url}/missing.safetensors": "answered 404 Not Found",
            "http://127.0.0.1:9/model.safetensors": "Cannot connect to 127.0.0.1",
        }
        for source, message in cases.items():
            job = install_and_wait(models.client, source)
            assert job["status"] == "error" and message in job["error"], job
            assert job["error_reason"] == "ModelDownloadError"
            assert models.names(job["id"])[-1] == "model_install_error"
    assert models.leftovers() == []
    assert httpx.get(f"{models.server.url}/health").status_code == 200


def test_private_addresses_are_refused_unless_allowed(live_server: StartServer, lora_bytes: bytes) -> None:
    guarded = Models(live_server())
    with serving(Served(files={"/ink.safetensors": lora_bytes})) as url:
        job = install_and_wait(guarded.client, f"{url}/ink.safetensors")
    assert (job["status"], job["error_reason"]) == ("error", "ModelDownloadAddressError")
    assert "model_download_allow_private" in job["error"]
    guarded.close()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tiny_sd_model: Path) -> Iterator[tuple[str, Served]]:
    """The stand-in hub, holding `tester/tiny-sd`: the tiny pipeline with an fp16 copy of its VAE's weights."""
    files = folder_files(tiny_sd_model)
    vae_weights = "vae/diffusion_pytorch_model.safetensors"
    files["vae/diffusion_pytorch_model.fp16.safetensors"] = files[vae_weights]
    files["README.md"] = b"# tiny"
    files["v1-5-pruned.safetensors"] = files[vae_weights]
    # A name that would lead out of the job's folder: never fetched.
    files["../escape.json"] = b"{}"
    served = Served(repos={"tester/tiny-sd": files})
    with serving(served) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        # The tests keep huggingface_hub offline (tests/tiny_model.py); this hub is on 127.0.0.1.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield url, served


def test_a_repo_installs_from_the_hub(models: Models, hub: tuple[str, Served], tiny_sd_model: Path) -> None:
    _, served = hub
    job = install_and_wait(models.client, "tester/tiny-sd", base="sd-1")
    assert job["status"] == "completed", job
    assert job["source"] == {"repo_id": "tester/tiny-sd", "variant": None, "subfolder": None, "type": "hf"}
    config = job["config_out"]
    assert (config["type"], config["format"], config["path"], config["source"]) == (
        "main",
        "diffusers",
        "sd-1/main/tiny-sd",
        "tester/tiny-sd",
    )
    installed = models.folder / config["path"]
    assert folder_files(installed) == folder_files(tiny_sd_model)
    fetched = {path.split("/resolve/")[1].split("/", 1)[1] for path, _ in served.requests if "/resolve/" in path}
    assert fetched == set(folder_files(tiny_sd_model))
    assert models.names(job["id"]) == DOWNLOAD_EVENTS
    assert len(job["download_parts"]) == len(fetched) and job["bytes"] == job["total_bytes"] > 0
    assert models.leftovers() == []


def test_a_subfolder_and_a_variant_pick_their_files(models: Models, hub: tuple[str, Served]) -> None:
    job = install_and_wait(models.client, "tester/tiny-sd:fp16:vae")
    assert job["status"] == "completed", job
    assert job["source"]["variant"] == "fp16" and job["source"]["subfolder"] == "vae"
    installed = models.folder / job["config_out"]["path"]
    assert job["config_out"]["type"] == "vae" and installed.name == "vae"
    assert sorted(folder_files(installed)) == ["config.json", "diffusion_pytorch_model.fp16.safetensors"]


def test_a_missing_repo_and_a_wrong_size_fail_their_job(models: Models, hub: tuple[str, Served]) -> None:
    url, served = hub
    missing = install_and_wait(models.client, "tester/missing")
    assert (
        missing["status"] == "error"
        and f"The Hugging Face hub at {url} has no repo 'tester/missing'" in (missing["error"])
    )
    served.listed_sizes["vae/config.json"] = 10_000
    wrong = install_and_wait(models.client, "tester/tiny-sd::vae")
    assert wrong["status"] == "error" and "but its size is 10000 bytes" in wrong["error"], wrong
    assert models.leftovers() == []
    assert models.client.get("/").json()["models"] == []


def test_a_failed_job_restarts_and_jobs_are_listed_and_pruned(
    models: Models, hub: tuple[str, Served], tiny_sd_model: Path
) -> None:
    _, served = hub
    served.listed_sizes["vae/config.json"] = 10_000
    failed = install_and_wait(models.client, "tester/tiny-sd::vae")
    assert failed["status"] == "error"
    assert models.client.post(f"/install/{failed['id']}/resume").status_code == 409
    del served.listed_sizes["vae/config.json"]
    restarted = models.client.post(f"/install/{failed['id']}/restart_failed")
    assert restarted.status_code == 201, restarted.text
    done = wait_for_job(models.client, restarted.json())
    assert done["status"] == "completed" and done["error"] is None
    assert [job["id"] for job in models.client.get("/install").json()] == [failed["id"]]
    assert models.client.delete("/install").status_code == 204
    assert models.client.get("/install").json() == []
    unknown = models.client.get(f"/install/{failed['id']}")
    assert unknown.status_code == 404 and unknown.json()["detail"] == f"No model install job has the id {failed['id']}"
    shutil.rmtree(models.folder / done["config_out"]["path"])


def test_stopping_the_server_cancels_its_downloads_and_removes_them(live_server: StartServer) -> None:
    server = live_server(model_download_allow_private=True, shutdown_timeout_s=10)
    models = Models(server)
    served = Served(files={"/big.safetensors": bytes(2_000_000)}, seconds_per_chunk=0.01)
    with serving(served) as url:
        job = models.start(f"{url}/big.safetensors")
        models.wait_for(job["id"], "downloading")
        while not any(path.suffix == ".part" for path in models.leftovers()):
            time.sleep(0.01)
        models.close()
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10
    assert server.services.model_manager.install.get_job_by_id(job["id"]).status == "cancelled"
    assert models.leftovers() == []
