"""Installing models from disk: probing each kind, overrides, copies, duplicates, scans, and clear refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.original_layout import write_vae_file
from tests.tiny_model import (
    write_checkpoint,
    write_code_running_checkpoint,
    write_lora,
    write_random_safetensors,
)

from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.model_install import model_install_scan
from nodeloom.app.services.model_install.model_install_common import (
    ModelBaseUnknownError,
    ModelPathNotAllowedError,
    ModelSettingUnknownError,
    ScanTooLargeError,
)
from nodeloom.app.services.model_install.model_install_default import ModelInstallService
from nodeloom.app.services.model_records.model_records_common import DuplicateModelError, ModelRecordChanges
from nodeloom.app.services.model_records.model_records_sql import SqlModelRecordService
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.backend.model_manager.configs import (
    InvalidModelConfigError,
    MainCheckpointConfig,
    MainDiffusersConfig,
    VAECheckpointConfig,
)
from nodeloom.backend.model_manager.errors import (
    InvalidModelError,
    ModelFileError,
    ModelLinkNotAllowedError,
    ModelPathNotFoundError,
    UnsafeModelFileError,
)
from nodeloom.backend.model_manager.taxonomy import (
    BaseModelType,
    ModelFormat,
    ModelType,
    SchedulerPredictionType,
    SubModelType,
)

SD1 = ModelRecordChanges(base=BaseModelType.StableDiffusion1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlModelRecordService]:
    db = SqliteDatabase(tmp_path / "nodeloom.db")
    Migrator(db, MIGRATIONS).run()
    yield SqlModelRecordService(db)
    db.close()


@pytest.fixture
def installer(store: SqlModelRecordService, tmp_path: Path, tiny_sd_model: Path) -> ModelInstallService:
    # The models these tests install lie in temporary folders: those are install roots.
    return ModelInstallService(
        store=store,
        events=InProcessEventService(),
        models_path=tmp_path / "models",
        install_roots=[tmp_path, tiny_sd_model.parent],
    )


def store_of(installer: ModelInstallService) -> SqlModelRecordService:
    store = installer._store
    assert isinstance(store, SqlModelRecordService)
    return store


def test_a_pipeline_of_unknown_width_asks_for_a_base_override(
    installer: ModelInstallService, tiny_sd_model: Path
) -> None:
    with pytest.raises(ModelBaseUnknownError) as raised:
        installer.install_path(tiny_sd_model)
    message = str(raised.value)
    assert f"Cannot tell the base of the main model at {tiny_sd_model}" in message
    assert "the UNet's cross_attention_dim is 32, which is none of 768 (sd-1), 1024 (sd-2), 2048 (sdxl)" in message
    assert "Install it again with a base override (any, sd-1, sd-2, sdxl, sdxl-refiner)" in message
    assert store_of(installer).search_by_attr() == []


def test_a_pipeline_installs_in_place_with_its_parts(installer: ModelInstallService, tiny_sd_model: Path) -> None:
    config = installer.install_path(tiny_sd_model, SD1)
    assert isinstance(config, MainDiffusersConfig)
    assert (config.type, config.format, config.base) == (ModelType.Main, ModelFormat.Diffusers, SD1.base)
    assert set(config.submodels) == {
        SubModelType.UNet,
        SubModelType.TextEncoder,
        SubModelType.Tokenizer,
        SubModelType.VAE,
        SubModelType.Scheduler,
    }
    assert config.name == "tiny-sd" and config.path == config.source == str(tiny_sd_model)
    assert config.hash.startswith("blake2b:") and config.file_size > 5_000_000
    assert store_of(installer).get_model(config.key) == config


def test_the_same_path_twice_is_refused(installer: ModelInstallService, tiny_sd_model: Path) -> None:
    first = installer.install_path(tiny_sd_model, SD1)
    with pytest.raises(DuplicateModelError, match=rf"installed already, as 'tiny-sd' \(key {first.key}\)"):
        installer.install_path(tiny_sd_model, SD1)


def test_a_copy_goes_under_the_models_folder_and_is_deleted_with_its_model(
    installer: ModelInstallService, tiny_sd_model: Path, tmp_path: Path
) -> None:
    in_place = installer.install_path(tiny_sd_model, SD1)
    copy = installer.install_path(tiny_sd_model, SD1, inplace=False)
    destination = tmp_path / "models" / "sd-1" / "main" / "tiny-sd"
    assert copy.path == "sd-1/main/tiny-sd" and (destination / "model_index.json").is_file()
    assert copy.hash == in_place.hash and copy.source == str(tiny_sd_model)
    with pytest.raises(DuplicateModelError, match="exists already"):
        installer.install_path(tiny_sd_model, SD1, inplace=False)
    installer.delete(copy.key)
    assert not destination.exists()
    installer.delete(in_place.key)
    assert (tiny_sd_model / "model_index.json").is_file()  # a model used in place keeps its files


def test_a_standalone_vae_folder_is_recognised(installer: ModelInstallService, tiny_sd_model: Path) -> None:
    config = installer.install_path(tiny_sd_model / "vae")
    assert (config.type, config.format, config.base) == (ModelType.VAE, ModelFormat.Diffusers, SD1.base)


def test_a_lora_gets_its_base_from_its_cross_attention_width(installer: ModelInstallService, tmp_path: Path) -> None:
    config = installer.install_path(write_lora(tmp_path / "ink.safetensors"))
    assert (config.type, config.format, config.base, config.name) == (
        ModelType.LoRA,
        ModelFormat.LyCORIS,
        BaseModelType.StableDiffusion1,
        "ink",
    )
    odd = write_lora(tmp_path / "odd.safetensors", text_width=32)
    with pytest.raises(ModelBaseUnknownError, match=r"the input width of lora_unet_.*attn2_to_k is 32"):
        installer.install_path(odd)
    overridden = installer.install_path(
        odd, ModelRecordChanges(base=BaseModelType.StableDiffusion2, name="Odd", description="made for a test")
    )
    assert (overridden.base, overridden.name, overridden.description) == (
        BaseModelType.StableDiffusion2,
        "Odd",
        "made for a test",
    )


def test_a_type_override_that_fits_no_kind_of_model_is_refused(installer: ModelInstallService, tmp_path: Path) -> None:
    with pytest.raises(InvalidModelConfigError, match="No kind of model has this type and format"):
        installer.install_path(write_lora(tmp_path / "ink.safetensors"), ModelRecordChanges(type=ModelType.Main))


def test_a_single_file_checkpoint_is_recognised(installer: ModelInstallService, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    config = installer.install_path(write_checkpoint(tmp_path / "dream.safetensors"))
    assert (config.type, config.format, config.base) == (ModelType.Main, ModelFormat.Checkpoint, SD1.base)
    # SDXL's first block has no attention: its first cross-attention is in the fourth.
    xl_key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    save_file({xl_key: torch.zeros(640, 2048)}, tmp_path / "xl.safetensors")
    assert installer.install_path(tmp_path / "xl.safetensors").base == BaseModelType.StableDiffusionXL


def test_an_sd2_single_file_asks_for_its_prediction_type(installer: ModelInstallService, tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "sd2.safetensors", text_width=1024)
    with pytest.raises(ModelSettingUnknownError) as raised:
        installer.install_path(path)
    assert f"Cannot tell the prediction_type of the main model at {path}" in str(raised.value)
    assert "Install it again with a prediction_type override" in str(raised.value)
    assert store_of(installer).search_by_attr() == []
    config = installer.install_path(path, ModelRecordChanges(prediction_type=SchedulerPredictionType.VPrediction))
    assert isinstance(config, MainCheckpointConfig)
    assert (config.base, config.prediction_type, config.config_path) == (
        BaseModelType.StableDiffusion2,
        SchedulerPredictionType.VPrediction,
        None,
    )
    assert store_of(installer).get_model(config.key) == config


def test_a_vae_file_asks_for_its_base(installer: ModelInstallService, tiny_sd_model: Path, tmp_path: Path) -> None:
    path = write_vae_file(tiny_sd_model / "vae", tmp_path / "vae.safetensors")
    with pytest.raises(ModelBaseUnknownError, match="the VAEs of sd-1, sd-2 and sdxl have the same tensors"):
        installer.install_path(path)
    config = installer.install_path(path, ModelRecordChanges(base=BaseModelType.StableDiffusionXL))
    assert isinstance(config, VAECheckpointConfig) and config.base == BaseModelType.StableDiffusionXL


def test_a_config_path_is_kept_absolute_and_only_from_the_roots(
    installer: ModelInstallService, tiny_sd_model: Path, tmp_path: Path
) -> None:
    path = write_checkpoint(tmp_path / "dream.safetensors")
    with pytest.raises(ModelPathNotAllowedError):
        installer.install_path(path, ModelRecordChanges(config_path="/etc"))
    config = installer.install_path(
        path, ModelRecordChanges(config_path=str(tiny_sd_model / ".." / tiny_sd_model.name))
    )
    assert isinstance(config, MainCheckpointConfig) and config.config_path == str(tiny_sd_model)

    with pytest.raises(ModelPathNotAllowedError):
        installer.update(config.key, ModelRecordChanges(config_path="/etc"))
    moved = installer.update(config.key, ModelRecordChanges(config_path=f"{tiny_sd_model}/../{tiny_sd_model.name}"))
    assert isinstance(moved, MainCheckpointConfig) and moved.config_path == str(tiny_sd_model)


def test_an_embedding_is_recognised(installer: ModelInstallService, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"emb_params": torch.zeros(2, 1024)}, tmp_path / "style.safetensors")
    config = installer.install_path(tmp_path / "style.safetensors")
    assert (config.type, config.format, config.base) == (
        ModelType.TextualInversion,
        ModelFormat.EmbeddingFile,
        BaseModelType.StableDiffusion2,
    )


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_none(
    installer: ModelInstallService, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeModelFileError, match="holds the Python object 'exec'"):
        installer.install_path(write_code_running_checkpoint(tmp_path / "evil.ckpt", marker))
    assert not marker.exists()
    assert store_of(installer).search_by_attr() == []


def test_what_is_not_a_model_is_refused_saying_what_is_there(
    installer: ModelInstallService, tiny_sd_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "weights.bin").write_bytes(b"not a pickle")
    refusals: list[tuple[Path, type[Exception], str]] = [
        (tmp_path / "empty", InvalidModelError, "is a folder with neither a model_index.json"),
        (tmp_path / "photos", InvalidModelError, r"photos is a folder with neither a model_index.json \(a diffusers "),
        (tmp_path / "notes.txt", InvalidModelError, "is a .txt file, not a model: model files end in .bin, .ckpt"),
        (write_random_safetensors(tmp_path / "r.safetensors"), InvalidModelError, r"holds 2 tensors \(.*\) in no"),
        (tmp_path / "weights.bin", ModelFileError, "is not a torch weights file"),
        (tmp_path / "missing", ModelPathNotFoundError, "Nothing exists at"),
        (tiny_sd_model / "unet", InvalidModelError, "holds a config.json for UNet2DConditionModel"),
        (Path("a\0b"), ModelPathNotFoundError, "holds a NUL character"),
    ]
    for path, error, message in refusals:
        with pytest.raises(error, match=message) as raised:
            installer.install_path(path)
        assert "cat.png" not in str(raised.value)
    assert store_of(installer).search_by_attr() == []


def test_a_pipeline_without_a_unet_is_refused(installer: ModelInstallService, tmp_path: Path) -> None:
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(InvalidModelError, match="is a FluxPipeline pipeline without a unet folder"):
        installer.install_path(tmp_path / "pipe")


def test_a_scan_lists_each_model_and_whether_it_is_installed_and_installs_nothing(
    installer: ModelInstallService, tiny_sd_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "downloads"
    (folder / "loras").mkdir(parents=True)
    (folder / "pipelines").mkdir()
    (folder / ".cache").mkdir()
    lora = write_lora(folder / "loras" / "ink.safetensors")
    checkpoint = write_checkpoint(folder / "dream.safetensors")
    (folder / "pipelines" / "tiny").symlink_to(tiny_sd_model)
    write_lora(folder / ".cache" / "hidden.safetensors")
    (folder / "README.txt").write_text("models I like")
    installer.install_path(lora)
    found = installer.scan_folder(folder)
    # A link is listed by where it leads, the path an install records.
    assert {model.path: model.is_installed for model in found} == {
        str(checkpoint): False,
        str(lora): True,
        str(tiny_sd_model): False,
    }
    assert [config.path for config in store_of(installer).search_by_attr()] == [str(lora)]


def test_a_scan_of_too_many_files_is_refused(
    installer: ModelInstallService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_install_scan, "MAX_SCAN_ENTRIES", 3)
    for name in "abcd":
        (tmp_path / f"{name}.txt").write_text(name)
    with pytest.raises(ScanTooLargeError, match="holds more than 3 files and folders"):
        installer.scan_folder(tmp_path)


def test_installs_read_only_the_models_folder_and_the_install_roots(
    store: SqlModelRecordService, tmp_path: Path
) -> None:
    models, extra, outside = tmp_path / "models", tmp_path / "extra", tmp_path / "outside"
    for folder in (models, extra, outside):
        folder.mkdir()
    installer = ModelInstallService(
        store=store, events=InProcessEventService(), models_path=models, install_roots=[extra]
    )
    assert installer.install_path(write_lora(models / "in-models.safetensors")).name == "in-models"
    assert installer.install_path(write_lora(extra / "in-extra.safetensors")).name == "in-extra"

    secret = write_lora(outside / "secret.safetensors")
    (extra / "file-link.safetensors").symlink_to(secret)
    (extra / "folder-link").symlink_to(outside)
    (extra / "loop").symlink_to(extra / "loop")
    refused: list[Path | str] = [
        secret,
        outside / "missing.safetensors",
        outside,
        extra / "file-link.safetensors",
        extra / "folder-link" / "secret.safetensors",
        extra / ".." / "outside" / "secret.safetensors",
        extra / "loop",
        "/",
        "relative.safetensors",
    ]
    messages = set()
    for path in refused:
        for attempt in (installer.install_path, installer.scan_folder):
            with pytest.raises(ModelPathNotAllowedError) as raised:
                attempt(path)
            messages.add(str(raised.value))
    # One answer, whatever is there: it names no file and tells nothing of what exists.
    assert messages == {
        "Models are installed only from the models folder and the folders in the model_install_roots setting."
    }
    assert [config.name for config in store.search_by_attr()] == ["in-extra", "in-models"]


def test_a_scan_does_not_follow_links_out_of_the_install_roots(store: SqlModelRecordService, tmp_path: Path) -> None:
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    (outside / "deep").mkdir(parents=True)
    write_lora(outside / "deep" / "secret.safetensors")
    write_lora(outside / "other.safetensors")
    write_lora(models / "ink.safetensors")
    (models / "elsewhere").symlink_to(outside)
    (models / "other.safetensors").symlink_to(outside / "other.safetensors")
    installer = ModelInstallService(store=store, events=InProcessEventService(), models_path=models)
    found = installer.scan_folder(models)
    assert [model.path for model in found] == [str(models.resolve() / "ink.safetensors")]
    assert [model.path for model in installer.list_orphaned()] == ["ink.safetensors"]


def test_start_reports_models_without_files_and_files_not_installed(
    installer: ModelInstallService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = installer.install_path(write_lora(tmp_path / "gone.safetensors"))
    (tmp_path / "gone.safetensors").unlink()
    (tmp_path / "models" / "sd-1" / "lora").mkdir(parents=True)
    write_lora(tmp_path / "models" / "sd-1" / "lora" / "stray.safetensors")
    (tmp_path / "models" / ".download-tmp" / "job-1").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        installer.start()
    assert [record.getMessage() for record in caplog.records] == [
        f"1 installed model(s) have lost their files: 'gone' ({gone.path})",
        f"1 model(s) in {tmp_path / 'models'} are not installed: sd-1/lora/stray.safetensors",
    ]
    assert list((tmp_path / "models" / ".download-tmp").iterdir()) == []


# A job's download folder held in a process of its own, as another server's download is, until its stdin closes.
_DOWNLOADER = """
import sys
from pathlib import Path
from nodeloom.app.services.shared.atomic_files import new_held_folder

folder, _ = new_held_folder(Path(sys.argv[1]), prefix="job-1-")
(folder / "files").mkdir()
(folder / "files" / "ink.safetensors.part").write_bytes(b"half a model")
print(folder, flush=True)
sys.stdin.read()
"""


def test_start_and_stop_leave_the_downloads_of_another_live_process_and_remove_a_dead_ones(
    installer: ModelInstallService, store: SqlModelRecordService, tmp_path: Path
) -> None:
    downloads = tmp_path / "models" / ".download-tmp"
    command = [sys.executable, "-c", _DOWNLOADER, str(downloads)]
    live, dead = (subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2))
    assert live.stdout is not None and dead.stdout is not None
    live_folder, dead_folder = Path(live.stdout.readline().strip()), Path(dead.stdout.readline().strip())
    dead.kill()
    dead.communicate(timeout=30)
    assert sorted(downloads.iterdir()) == sorted([live_folder, dead_folder])
    # A crash between making a folder and holding it leaves one without its lock file.
    (downloads / "job-3-unheld" / "files").mkdir(parents=True)

    installer.start()
    assert list(downloads.iterdir()) == [live_folder]
    installer.stop()
    assert list(downloads.iterdir()) == [live_folder]
    assert (live_folder / "files" / "ink.safetensors.part").read_bytes() == b"half a model"

    live.communicate("", timeout=30)
    ModelInstallService(store=store, events=InProcessEventService(), models_path=tmp_path / "models").start()
    assert list(downloads.iterdir()) == []


@pytest.mark.parametrize("link", ["unet/notes.txt", "extras"])
def test_a_copy_refuses_a_link_inside_the_model_that_leads_out_of_the_install_roots(
    store: SqlModelRecordService, tmp_path: Path, tiny_sd_model: Path, link: str
) -> None:
    models, extra, outside = tmp_path / "models", tmp_path / "extra", tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("SECRET")
    model = extra / "linked-sd"
    shutil.copytree(tiny_sd_model, model)
    (extra / "inside.txt").write_text("shared notes")
    (model / "text_encoder" / "inside.txt").symlink_to(extra / "inside.txt")
    (model / link).symlink_to(outside / "notes.txt" if link.endswith(".txt") else outside)
    installer = ModelInstallService(
        store=store, events=InProcessEventService(), models_path=models, install_roots=[extra]
    )

    leads_out = rf"{re.escape(str(model / link))}\S* is reached through a link that leads outside"
    with pytest.raises(ModelLinkNotAllowedError, match=leads_out):
        installer.install_path(model, SD1, inplace=False)

    assert store.search_by_attr() == []
    assert not (models / "sd-1" / "main" / "linked-sd").exists()
    assert not [path for path in models.rglob("*") if path.is_file() and path.read_bytes() == b"SECRET"]


def test_a_copy_follows_a_link_that_stays_inside_the_install_roots(
    store: SqlModelRecordService, tmp_path: Path, tiny_sd_model: Path
) -> None:
    models, extra = tmp_path / "models", tmp_path / "extra"
    model = extra / "linked-sd"
    shutil.copytree(tiny_sd_model, model)
    (extra / "inside.txt").write_text("shared notes")
    (model / "text_encoder" / "inside.txt").symlink_to(extra / "inside.txt")
    installer = ModelInstallService(
        store=store, events=InProcessEventService(), models_path=models, install_roots=[extra]
    )

    copy = installer.install_path(model, SD1, inplace=False)

    copied = models / copy.path / "text_encoder" / "inside.txt"
    assert not copied.is_symlink() and copied.read_text() == "shared notes"
