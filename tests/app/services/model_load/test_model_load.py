"""Loading the tiny pipeline's parts, a VAE and a LoRA through the model load service, on the CPU."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from tests.original_layout import write_single_file
from tests.tiny_model import write_checkpoint, write_code_running_checkpoint, write_lora
from transformers import CLIPTextModel, CLIPTokenizer

from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.primitives import BooleanInvocation
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import EventBase, ModelLoadCompleteEvent, ModelLoadStartedEvent
from nodeloom.app.services.invocation_stats.invocation_stats_default import InvocationStatsService
from nodeloom.app.services.model_install.model_install_default import ModelInstallService
from nodeloom.app.services.model_load.model_load_default import ModelLoadService
from nodeloom.app.services.model_manager.model_manager_default import ModelManagerService
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.app.services.model_records.model_records_sql import SqlModelRecordService
from nodeloom.app.services.shared.database.database_base import DbCursor
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.shared.invocation_context import InvocationContextData
from nodeloom.app.services.shared.invocation_context_models import ModelsInterface
from nodeloom.backend.model_manager.errors import ModelLoadError, SubmodelTypeError, UnsafeModelFileError
from nodeloom.backend.model_manager.load.model_cache import ModelCache
from nodeloom.backend.model_manager.load.model_loaders import loader_registry
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType, SubModelType

SD1 = ModelRecordChanges(base=BaseModelType.StableDiffusion1)


class RecordedEvents(EventServiceBase):
    """Keeps what is dispatched, at once, in this thread."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def dispatch(self, event: EventBase) -> None:
        self.events.append(event)

    def dispatch_in(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
        raise NotImplementedError

    def subscribe(self, handler: Callable[[EventBase], None]) -> Callable[[], None]:
        raise NotImplementedError

    def start(self) -> None:
        return None

    def stop(self, timeout_s: float | None = None) -> None:
        return None


@dataclass
class Models:
    manager: ModelManagerService
    events: RecordedEvents
    cache: ModelCache


@pytest.fixture
def models(tmp_path: Path, tiny_sd_model: Path) -> Iterator[Models]:
    db = SqliteDatabase(tmp_path / "nodeloom.db")
    Migrator(db, MIGRATIONS).run()
    store = SqlModelRecordService(db)
    events = RecordedEvents()
    cache = ModelCache(ram_budget_gb=1, vram_budget_gb=0, device="cpu")
    manager = ModelManagerService(
        store=store,
        install=ModelInstallService(
            store=store, events=events, models_path=tmp_path / "models", install_roots=[tmp_path, tiny_sd_model.parent]
        ),
        load=ModelLoadService(registry=loader_registry, cache=cache, events=events, models_path=tmp_path / "models"),
    )
    yield Models(manager, events, cache)
    db.close()


def test_each_part_of_a_pipeline_loads_as_its_class(models: Models, tiny_sd_model: Path) -> None:
    config = models.manager.install.install_path(tiny_sd_model, SD1)
    expected = {
        SubModelType.UNet: UNet2DConditionModel,
        SubModelType.TextEncoder: CLIPTextModel,
        SubModelType.Tokenizer: CLIPTokenizer,
        SubModelType.VAE: AutoencoderKL,
        SubModelType.Scheduler: DDIMScheduler,
    }
    for submodel, model_class in expected.items():
        loaded = models.manager.load.load_model(config, submodel)
        with loaded as model:
            assert isinstance(model, model_class)
            assert model is loaded.model
    with models.manager.load.load_model(config, SubModelType.UNet) as unet:
        assert unet.dtype == torch.float32 and unet.device.type == "cpu"
    with models.manager.load.load_model(config, SubModelType.Tokenizer) as tokenizer:
        assert tokenizer("a cab").input_ids == [0, 3, 6, 2, 5, 1]


def test_a_second_load_is_a_cache_hit_and_only_the_first_is_announced(models: Models, tiny_sd_model: Path) -> None:
    config = models.manager.install.install_path(tiny_sd_model, SD1)
    first = models.manager.load.load_model(config, SubModelType.VAE)
    second = models.manager.load.load_model(config, SubModelType.VAE)
    assert second.model is first.model
    stats = models.manager.load.get_stats()
    assert (stats.hits, stats.misses, stats.in_cache) == (1, 1, 1)
    started, complete = models.events.events
    assert isinstance(started, ModelLoadStartedEvent) and isinstance(complete, ModelLoadCompleteEvent)
    assert started.config["key"] == config.key and started.submodel_type == "vae"
    assert complete.config == started.config and complete.submodel_type == "vae"


def test_a_pipeline_loads_one_part_at_a_time(models: Models, tiny_sd_model: Path) -> None:
    config = models.manager.install.install_path(tiny_sd_model, SD1)
    with pytest.raises(SubmodelTypeError, match="is a whole pipeline: load one of its parts"):
        models.manager.load.load_model(config)
    with pytest.raises(SubmodelTypeError, match="'tiny-sd' has no text_encoder_2: its parts are"):
        models.manager.load.load_model(config, SubModelType.TextEncoder2)


def test_a_standalone_vae_and_a_lora_load(models: Models, tiny_sd_model: Path, tmp_path: Path) -> None:
    vae = models.manager.install.install_path(tiny_sd_model / "vae")
    with models.manager.load.load_model(vae) as model:
        assert isinstance(model, AutoencoderKL)
    lora = models.manager.install.install_path(write_lora(tmp_path / "ink.safetensors"))
    with models.manager.load.load_model(lora) as state_dict:
        assert len(state_dict) == 4 and all(isinstance(tensor, torch.Tensor) for tensor in state_dict.values())
    with pytest.raises(SubmodelTypeError, match="is a lora model, which has no parts"):
        models.manager.load.load_model(lora, SubModelType.UNet)


def test_a_single_file_that_does_not_fit_its_configs_is_refused_clearly(models: Models, tmp_path: Path) -> None:
    config = models.manager.install.install_path(write_checkpoint(tmp_path / "dream.safetensors"))
    with pytest.raises(SubmodelTypeError, match=r"'dream' is a whole pipeline: load one of its parts \(unet, "):
        models.manager.load.load_model(config)
    # Three tensors named as SD-1's, where SD-1's UNet has hundreds.
    with pytest.raises(ModelLoadError, match=r"the UNet2DConditionModel of .*dream.safetensors lacks \d+ tensors"):
        models.manager.load.load_model(config, SubModelType.UNet)


def test_a_single_file_replaced_by_a_code_running_pickle_is_refused_without_running_it(
    models: Models, tiny_sd_model: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(write_single_file(tiny_sd_model, tmp_path / "tiny.safetensors"))}, path)
    config = models.manager.install.install_path(
        path, ModelRecordChanges(base=BaseModelType.StableDiffusion1, config_path=str(tiny_sd_model))
    )
    with models.manager.load.load_model(config, SubModelType.VAE) as vae:
        assert isinstance(vae, AutoencoderKL)
    marker = tmp_path / "marker"
    write_code_running_checkpoint(path, marker)
    with pytest.raises(UnsafeModelFileError, match="holds the Python object 'exec'"):
        models.manager.load.load_model(config, SubModelType.UNet)
    assert not marker.exists()


def test_a_diffusers_folder_with_pickle_weights_is_refused_without_unpickling_them(
    models: Models, tiny_sd_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "vae"
    folder.mkdir()
    shutil.copy(tiny_sd_model / "vae" / "config.json", folder)
    marker = tmp_path / "marker"
    write_code_running_checkpoint(folder / "diffusion_pytorch_model.bin", marker)
    config = models.manager.install.install_path(folder)
    with pytest.raises(ModelLoadError, match=r"no file named diffusion_pytorch_model\.safetensors"):
        models.manager.load.load_model(config)
    assert not marker.exists()


def test_a_model_whose_files_are_gone_is_refused_clearly(models: Models, tiny_sd_model: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_sd_model / "vae", tmp_path / "vae")
    config = models.manager.install.install_path(copy)
    shutil.rmtree(copy)
    with pytest.raises(ModelLoadError, match=r"The files of the model 'vae' are gone from .*: install it again"):
        models.manager.load.load_model(config)


def test_the_nodes_interface_loads_by_identifier_and_counts_loads_in_the_session_stats(
    models: Models, tiny_sd_model: Path
) -> None:
    config = models.manager.install.install_path(tiny_sd_model, SD1)
    stats = InvocationStatsService(model_cache_stats=models.manager.load.get_session_stats)
    node = BooleanInvocation(id="n")
    data = InvocationContextData(invocation=node, source_invocation_id="n", session_id="s1")
    interface = ModelsInterface(models.manager, data)
    identifier = ModelIdentifierField.from_config(config, SubModelType.UNet)
    assert interface.exists(config.key) and interface.get_config(config.key) == config
    assert interface.search_by_attrs(name="tiny-sd", base=BaseModelType.StableDiffusion1, type=ModelType.Main) == [
        config
    ]
    with stats.collect_stats(node, "s1"):
        unet = interface.load(identifier).model
        assert interface.load(identifier).model is unet
        assert isinstance(interface.load(identifier, SubModelType.VAE).model, AutoencoderKL)
    summary = stats.get_stats("s1").model_cache_stats
    assert (summary.cache_hits, summary.cache_misses, summary.models_cached) == (1, 2, 2)
    unet_and_vae_gb = sum(models.cache.stats().loaded_model_sizes.values()) / 2**30
    assert summary.total_usage_gb == pytest.approx(unet_and_vae_gb)
    assert summary.high_water_mark_gb == pytest.approx(unet_and_vae_gb)
    assert summary.cache_size_gb == 1
    assert "Model cache: 1 hits, 2 misses, 2 models cached, 0 cleared" in str(stats.get_stats("s1"))
