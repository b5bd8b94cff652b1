"""The built-in loaders, registered on `loader_registry`: the parts of diffusers pipelines and of single-file
checkpoints, VAEs in either format, LoRAs and textual-inversion embeddings.

Loading never runs code from a model: classes are only those of diffusers and transformers named by the model's
configs, files are local (`local_files_only`), weights come from safetensors only (`use_safetensors`), and state
dicts (a single file's too) are read through `model_files.load_state_dict`, which refuses pickles that hold more
than tensors.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from nodeloom.backend.model_manager.configs import MainCheckpointConfig, MainDiffusersConfig, VAECheckpointConfig
from nodeloom.backend.model_manager.errors import ModelLoadError, SubmodelTypeError
from nodeloom.backend.model_manager.load import single_file
from nodeloom.backend.model_manager.load.load_base import ModelLoaderBase
from nodeloom.backend.model_manager.load.model_loader_registry import ModelLoaderRegistry
from nodeloom.backend.model_manager.model_files import folder_embedding, load_state_dict
from nodeloom.backend.model_manager.taxonomy import ModelFormat, ModelType, SubModelType

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from nodeloom.backend.model_manager.configs import AnyModelConfig

loader_registry = ModelLoaderRegistry()
"""The registry holding the built-in loaders; the model load service uses it."""

_LIBRARIES = ("diffusers", "transformers")


def _from_pretrained(folder: Path, library: str, class_name: str, dtype: torch.dtype) -> Any:
    """An instance of the diffusers or transformers class `class_name`, read from `folder`."""
    if library not in _LIBRARIES:
        raise ModelLoadError(f"{folder} is a {library}.{class_name}: only diffusers and transformers classes load")
    import diffusers
    import transformers

    model_class = getattr(importlib.import_module(library), class_name, None)
    from_pretrained: Callable[..., Any] | None = getattr(model_class, "from_pretrained", None)
    if not isinstance(model_class, type) or from_pretrained is None:
        raise ModelLoadError(f"{folder} is a {library}.{class_name}, which is no class that loads from a folder")
    weights: dict[str, Any] = {}
    if issubclass(model_class, diffusers.ModelMixin):
        weights = {"torch_dtype": dtype, "use_safetensors": True}
    elif issubclass(model_class, transformers.PreTrainedModel):
        # transformers calls it dtype since 4.56 and logs a deprecation for torch_dtype, which diffusers uses.
        weights = {"dtype": dtype, "use_safetensors": True}
    # Anything else (a tokenizer, a scheduler) is configs and vocabularies, without weights.
    try:
        return from_pretrained(folder, local_files_only=True, **weights)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot load the {library}.{class_name} in {folder}: {error}") from error


def _pipeline_part(
    config: AnyModelConfig, parts: Collection[SubModelType], submodel_type: SubModelType | None
) -> SubModelType:
    """`submodel_type`, checked to be one of the pipeline's `parts`."""
    listed = ", ".join(part.value for part in parts)
    if submodel_type is None:
        raise SubmodelTypeError(f"'{config.name}' is a whole pipeline: load one of its parts ({listed}) at a time")
    if submodel_type not in parts:
        raise SubmodelTypeError(f"'{config.name}' has no {submodel_type.value}: its parts are {listed}")
    return submodel_type


def _refuse_submodel(config: AnyModelConfig, submodel_type: SubModelType | None) -> None:
    if submodel_type is not None:
        raise SubmodelTypeError(
            f"'{config.name}' is a {config.type.value} model, which has no parts: load it without a submodel type "
            f"(not {submodel_type.value})"
        )


@loader_registry.register(type=ModelType.Main, format=ModelFormat.Diffusers)
class DiffusersPipelineLoader(ModelLoaderBase):
    """Loads one part of a diffusers pipeline folder at a time, as the class its `model_index.json` names."""

    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        assert isinstance(config, MainDiffusersConfig), "registered for main models in diffusers format"
        submodel_type = _pipeline_part(config, config.submodels, submodel_type)
        try:
            library, class_name = json.loads((path / "model_index.json").read_text())[submodel_type.value]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelLoadError(f"Cannot read which class the {submodel_type.value} of {path} is: {error}") from error
        return _from_pretrained(path / submodel_type.value, library, class_name, dtype)


@loader_registry.register(type=ModelType.VAE, format=ModelFormat.Diffusers)
class VAEDiffusersLoader(ModelLoaderBase):
    """Loads a standalone VAE folder (probing installs only AutoencoderKL ones)."""

    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        _refuse_submodel(config, submodel_type)
        return _from_pretrained(path, "diffusers", "AutoencoderKL", dtype)


@loader_registry.register(type=ModelType.LoRA, format=ModelFormat.LyCORIS)
@loader_registry.register(type=ModelType.TextualInversion, format=ModelFormat.EmbeddingFile)
@loader_registry.register(type=ModelType.TextualInversion, format=ModelFormat.EmbeddingFolder)
class StateDictLoader(ModelLoaderBase):
    """Loads a LoRA's or an embedding's tensors by name, as stored (an embedding folder's from its learned_embeds
    file); the nodes that use them apply them."""

    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        _refuse_submodel(config, submodel_type)
        file = folder_embedding(path) if path.is_dir() else path
        if file is None:
            raise ModelLoadError(f"'{config.name}' ({path}) is a folder without a learned_embeds file")
        return load_state_dict(file)


@loader_registry.register(type=ModelType.Main, format=ModelFormat.Checkpoint)
class CheckpointLoader(ModelLoaderBase):
    """Loads one part of a single-file pipeline at a time: its weights converted to diffusers' layout as they are
    read, its tokenizers and scheduler from its config folder (`single_file`)."""

    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        assert isinstance(config, MainCheckpointConfig), "registered for main models in checkpoint format"
        folder = single_file.checkpoint_config_folder(config)
        parts = single_file.pipeline_parts(folder)
        part = _pipeline_part(config, parts, submodel_type)
        if part in (SubModelType.Tokenizer, SubModelType.Tokenizer2):
            return single_file.load_tokenizer(folder / part.value)
        if part is SubModelType.Scheduler:
            library, class_name = parts[part]
            scheduler = _from_pretrained(folder / part.value, library, class_name, dtype)
            # The record says what the UNet predicts, whatever the folder's scheduler was configured for.
            return scheduler.from_config(scheduler.config, prediction_type=config.prediction_type.value)
        return single_file.load_checkpoint_part(path, folder, part, dtype)


@loader_registry.register(type=ModelType.VAE, format=ModelFormat.Checkpoint)
class VAECheckpointLoader(ModelLoaderBase):
    """Loads a standalone VAE file, in the original layout or in diffusers'."""

    def load_model(
        self, config: AnyModelConfig, path: Path, submodel_type: SubModelType | None, dtype: torch.dtype
    ) -> Any:
        assert isinstance(config, VAECheckpointConfig), "registered for VAEs in checkpoint format"
        _refuse_submodel(config, submodel_type)
        return single_file.load_vae(path, "", single_file.checkpoint_config_folder(config), dtype)
