"""The ModelLoaderRegistry: registration by (base, type, format), the `any` wildcard, and its refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nodeloom.backend.model_manager.configs import (
    AnyModelConfig,
    LoRALyCORISConfig,
    MainCheckpointConfig,
    MainDiffusersConfig,
    TextualInversionFileConfig,
    TextualInversionFolderConfig,
    VAEDiffusersConfig,
)
from nodeloom.backend.model_manager.errors import DuplicateModelLoaderError, ModelLoaderNotFoundError
from nodeloom.backend.model_manager.load.load_base import ModelLoaderBase
from nodeloom.backend.model_manager.load.model_loader_registry import ModelLoaderRegistry
from nodeloom.backend.model_manager.load.model_loaders import (
    CheckpointLoader,
    DiffusersPipelineLoader,
    StateDictLoader,
    VAEDiffusersLoader,
    loader_registry,
)
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType, SubModelType

FIELDS: dict[str, Any] = {"hash": "blake2b:0", "path": "/m", "file_size": 0, "name": "m", "source": "/m"}


def config(kind: type[Any] = LoRALyCORISConfig, base: BaseModelType = BaseModelType.StableDiffusion1) -> Any:
    extra = {"submodels": [SubModelType.UNet]} if kind is MainDiffusersConfig else {}
    return kind(**FIELDS, base=base, **extra)


class Loader(ModelLoaderBase):
    def load_model(self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: Any) -> Any:
        return None


def test_a_loader_registered_for_any_base_loads_every_base() -> None:
    registry = ModelLoaderRegistry()

    @registry.register(type=ModelType.LoRA, format=ModelFormat.LyCORIS)
    class AnyLoRALoader(Loader):
        pass

    for base in BaseModelType:
        assert registry.get_implementation(config(base=base)) is AnyLoRALoader


def test_a_loader_for_one_base_wins_over_the_wildcard_for_that_base_only() -> None:
    registry = ModelLoaderRegistry()

    @registry.register(type=ModelType.LoRA, format=ModelFormat.LyCORIS)
    class AnyLoRALoader(Loader):
        pass

    @registry.register(type=ModelType.LoRA, format=ModelFormat.LyCORIS, base=BaseModelType.StableDiffusionXL)
    class XLLoRALoader(Loader):
        pass

    assert registry.get_implementation(config(base=BaseModelType.StableDiffusionXL)) is XLLoRALoader
    assert registry.get_implementation(config(base=BaseModelType.StableDiffusion1)) is AnyLoRALoader


def test_a_second_loader_for_the_same_triple_is_refused_naming_both() -> None:
    registry = ModelLoaderRegistry()

    @registry.register(type=ModelType.VAE, format=ModelFormat.Diffusers, base=BaseModelType.StableDiffusion1)
    class FirstLoader(Loader):
        pass

    with pytest.raises(DuplicateModelLoaderError) as raised:

        @registry.register(type=ModelType.VAE, format=ModelFormat.Diffusers, base=BaseModelType.StableDiffusion1)
        class SecondLoader(Loader):
            pass

    message = str(raised.value)
    assert "SecondLoader cannot register" in message and "FirstLoader is registered" in message
    assert "base=sd-1, type=vae, format=diffusers" in message
    assert registry.get_implementation(config(VAEDiffusersConfig)) is FirstLoader


def test_a_missing_loader_is_a_not_implemented_error_naming_the_triple() -> None:
    registry = ModelLoaderRegistry()
    with pytest.raises(NotImplementedError) as raised:
        registry.get_implementation(config(base=BaseModelType.StableDiffusion2))
    assert isinstance(raised.value, ModelLoaderNotFoundError)
    assert "No loader is registered for base=sd-2, type=lora, format=lycoris" in str(raised.value)


def test_the_built_in_registry_loads_every_kind_of_model() -> None:
    expected = {
        MainDiffusersConfig: DiffusersPipelineLoader,
        MainCheckpointConfig: CheckpointLoader,
        VAEDiffusersConfig: VAEDiffusersLoader,
        LoRALyCORISConfig: StateDictLoader,
        TextualInversionFileConfig: StateDictLoader,
        TextualInversionFolderConfig: StateDictLoader,
    }
    for kind, loader in expected.items():
        for base in BaseModelType:
            assert loader_registry.get_implementation(config(kind, base)) is loader
