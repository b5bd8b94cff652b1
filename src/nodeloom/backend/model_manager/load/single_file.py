"""Loading single-file checkpoints: each part is read from the file and converted from the original Stable Diffusion
key layout (LDM's for SD-1 and SD-2, SGM's for SDXL) to diffusers' as it loads, by diffusers' conversion functions.

What a single file lacks (each part's hyperparameters, the scheduler, the tokenizers' settings) comes from a
diffusers config folder: the one nodeloom ships in `checkpoint_configs/` for the model's base and prediction type,
or the one its config names in `config_path`. The tokenizers' vocabulary is CLIP's byte-pair encoding, shipped
once (`checkpoint_configs/clip_bpe/`, from OpenCLIP under its MIT license), unless the config folder has its own.
Nothing is fetched from the network, and weights are read only through `model_files.load_state_dict`.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeloom.backend.model_manager.configs import MainCheckpointConfig, VAECheckpointConfig
from nodeloom.backend.model_manager.errors import ModelLoadError
from nodeloom.backend.model_manager.model_files import load_state_dict
from nodeloom.backend.model_manager.taxonomy import BaseModelType, SchedulerPredictionType, SubModelType

if TYPE_CHECKING:
    import torch
    from transformers import CLIPTokenizer

CHECKPOINT_CONFIGS = Path(__file__).parent.parent / "checkpoint_configs"
"""The diffusers config folders nodeloom ships, one per base and prediction type."""

_SHIPPED_CONFIGS = {
    (BaseModelType.StableDiffusion1, SchedulerPredictionType.Epsilon): "sd-1",
    (BaseModelType.StableDiffusion2, SchedulerPredictionType.Epsilon): "sd-2",
    (BaseModelType.StableDiffusion2, SchedulerPredictionType.VPrediction): "sd-2-v",
    (BaseModelType.StableDiffusionXL, SchedulerPredictionType.Epsilon): "sdxl",
    (BaseModelType.StableDiffusionXLRefiner, SchedulerPredictionType.Epsilon): "sdxl-refiner",
}

_UNET_PREFIX = "model.diffusion_model."
_VAE_PREFIX = "first_stage_model."
# Where each text encoder sits in the file, by layout: CLIP-L is stored as transformers' CLIPTextModel
# ("transformer."), OpenCLIP's encoders (SD-2's ViT-H, SDXL's bigG) in OpenCLIP's own names ("model."). SDXL's
# refiner has only bigG, as its first embedder.
_TEXT_ENCODER_PREFIXES = {
    SubModelType.TextEncoder: (
        "cond_stage_model.transformer.",
        "cond_stage_model.model.",
        "conditioner.embedders.0.transformer.",
    ),
    SubModelType.TextEncoder2: ("conditioner.embedders.1.model.", "conditioner.embedders.0.model."),
}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
# CLIP's vocabulary: 256 byte characters, each alone and word-final, then one token per merge, then the start
# and end tokens, 49,408 in all.
_CLIP_VOCABULARY_SIZE = 49408
_CLIP_MERGES = _CLIP_VOCABULARY_SIZE - 2 * 256 - 2


def checkpoint_config_folder(config: MainCheckpointConfig | VAECheckpointConfig) -> Path:
    """The diffusers folder (a pipeline's for a main model, a VAE's for a VAE) whose configs describe the model."""
    if config.config_path is not None:
        return Path(config.config_path)
    prediction_type = (
        config.prediction_type if isinstance(config, MainCheckpointConfig) else SchedulerPredictionType.Epsilon
    )
    name = _SHIPPED_CONFIGS.get((config.base, prediction_type))
    if name is None:
        raise ModelLoadError(
            f"'{config.name}' is a single-file {config.base.value} model predicting {prediction_type.value}, for "
            "which nodeloom ships no configs: set its config_path to a diffusers folder of the same architecture"
        )
    folder = CHECKPOINT_CONFIGS / name
    return folder / "vae" if isinstance(config, VAECheckpointConfig) else folder


def pipeline_parts(folder: Path) -> dict[SubModelType, tuple[str, str]]:
    """The parts a pipeline's config folder describes, each with its library and class, from `model_index.json`."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        return {
            part: (index[part.value][0], index[part.value][1])
            for part in SubModelType
            if isinstance(index.get(part.value), list) and index[part.value][0] is not None
        }
    except (OSError, ValueError, TypeError, IndexError) as error:
        raise ModelLoadError(f"Cannot read the parts of the pipeline configured in {folder}: {error}") from error


def load_checkpoint_part(path: Path, folder: Path, part: SubModelType, dtype: torch.dtype) -> Any:
    """The UNet, VAE or a text encoder of the single-file pipeline at `path`, configured by `folder`, in `dtype`."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if part is SubModelType.UNet:
        return _load_diffusers_model(
            path, _UNET_PREFIX, folder / "unet", "UNet2DConditionModel", dtype, convert_ldm_unet_checkpoint
        )
    if part is SubModelType.VAE:
        return load_vae(path, _VAE_PREFIX, folder / "vae", dtype)
    if part in _TEXT_ENCODER_PREFIXES:
        return _load_text_encoder(path, folder / part.value, _TEXT_ENCODER_PREFIXES[part], dtype)
    raise ModelLoadError(f"The {part.value} of a pipeline holds no weights to read from {path}")


def load_vae(path: Path, prefix: str, folder: Path, dtype: torch.dtype) -> Any:
    """The VAE whose tensors are those under `prefix` in `path` (all of a VAE's own file), configured by `folder`;
    tensors already named as diffusers names them load as they are."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return _load_diffusers_model(path, prefix, folder, "AutoencoderKL", dtype, convert_ldm_vae_checkpoint)


def _load_diffusers_model(
    path: Path, prefix: str, folder: Path, class_name: str, dtype: torch.dtype, convert: Any
) -> Any:
    import diffusers

    model_class = getattr(diffusers, class_name)
    try:
        config = model_class.load_config(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read the {class_name} config in {folder}: {error}") from error
    state = load_state_dict(path, prefix)
    model = _empty(lambda: model_class.from_config(config))
    if not set(model.state_dict()) <= set(state):
        state = convert(checkpoint=state, config=config)
    return _fill(model, state, dtype, f"the {class_name} of {path}", folder)


def _load_text_encoder(path: Path, folder: Path, prefixes: tuple[str, ...], dtype: torch.dtype) -> Any:
    import transformers
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    try:
        config = transformers.CLIPTextConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read the text encoder config in {folder}: {error}") from error
    architectures = config.architectures or ["CLIPTextModel"]
    if architectures[0] not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        raise ModelLoadError(f"{folder} configures a {architectures[0]}: only CLIP text encoders load from one file")
    model_class = getattr(transformers, architectures[0])
    model = _empty(lambda: model_class(config))
    for prefix in prefixes:
        state = load_state_dict(path, prefix)
        if state:
            break
    else:
        raise ModelLoadError(f"{path} holds no text encoder under {' or '.join(prefixes)}")
    if prefix.endswith(".model."):
        converted = convert_open_clip_checkpoint(model, state, prefix=prefix)
    else:
        converted = convert_ldm_clip_checkpoint(state, remove_prefix=prefix)
    # Files store CLIP-L under "text_model."; transformers' CLIPTextModel has no such level since 5.6.
    if not hasattr(model, "text_model"):
        converted = {name.removeprefix("text_model."): tensor for name, tensor in converted.items()}
    return _fill(model, converted, dtype, f"the text encoder of {path}", folder)


def _empty(build: Any) -> Any:
    """The model `build` makes, with its parameters on the meta device: the file's tensors replace them, so they
    are never initialised (which takes seconds for a UNet of real size)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def _fill(model: Any, state: dict[str, torch.Tensor], dtype: torch.dtype, what: str, folder: Path) -> Any:
    """`model` holding the tensors of `state` (in `dtype`, where they are floating point) in place of its empty
    ones. Tensors it has no place for (the position ids some files carry) are left out."""
    state = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    try:
        missing, _ = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as error:
        raise ModelLoadError(f"The tensors of {what} do not fit the configs in {folder}: {error}") from error
    if missing:
        raise ModelLoadError(
            f"{what} lacks {len(missing)} tensors that the configs in {folder} call for (such as {missing[0]}): the "
            "file does not fit those configs"
        )
    return model.eval()


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """The CLIP tokenizer configured in `folder`: with the folder's own vocabulary when it has one, else CLIP's."""
    from transformers import CLIPTokenizer

    if any((folder / name).is_file() for name in _TOKENIZER_FILES):
        tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        return tokenizer
    try:
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read the tokenizer config in {folder}: {error}") from error
    settings.pop("tokenizer_class", None)
    vocabulary, merges = clip_vocabulary()
    # transformers annotates merges as strings, but the tokenizers BPE model it hands them to takes pairs.
    return CLIPTokenizer(vocab=vocabulary, merges=merges, **settings)  # type: ignore[arg-type]


@functools.cache
def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's tokens by id and its merges, made from the byte-pair merges file as CLIP itself makes them."""
    with gzip.open(CHECKPOINT_CONFIGS / "clip_bpe" / "bpe_simple_vocab_16e6.txt.gz", "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    # The first line is a version header; CLIP uses the merges that fit its vocabulary, and no more.
    merges = [(left, right) for left, right in (line.split() for line in lines[1 : 1 + _CLIP_MERGES])]
    characters = _byte_characters()
    tokens = [
        *characters,
        *(f"{character}</w>" for character in characters),
        *(left + right for left, right in merges),
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    return {token: index for index, token in enumerate(tokens)}, merges


def _byte_characters() -> list[str]:
    """The character standing for each byte in byte-level BPE, in the vocabulary's order: the bytes that print as
    themselves first, then the others, each shifted past 255 so that none is a space or control character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + index) for index in range(len(shifted))]
