"""Telling what a file or folder on disk is: its type, format and base, from its configs and tensor names.

Only configs (JSON) and tensor names and shapes are read, never whole weights of a safetensors model; the base
is read from the width of the text embeddings a model was built for (the UNet's cross-attention width, or the
text encoder's hidden size): 768 for sd-1, 1024 for sd-2, 2048 for sdxl. A diffusers pipeline with a
`text_encoder_2`, or a single file with SDXL's `conditioner.embedders`, is SDXL: the base with both text encoders,
the refiner (`sdxl-refiner`) with the second only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeloom.backend.model_manager.errors import InvalidModelError, ModelPathNotFoundError
from nodeloom.backend.model_manager.model_files import (
    WEIGHTS_SUFFIXES,
    TensorShapes,
    folder_embedding,
    read_tensor_shapes,
)
from nodeloom.backend.model_manager.taxonomy import (
    BaseModelType,
    ModelFormat,
    ModelType,
    SchedulerPredictionType,
    SubModelType,
)
from nodeloom.backend.stable_diffusion.lora_keys import linear_input_width, lora_target, split_lora_key

_BASE_BY_TEXT_WIDTH = {
    768: BaseModelType.StableDiffusion1,
    1024: BaseModelType.StableDiffusion2,
    2048: BaseModelType.StableDiffusionXL,
}
_KNOWN_WIDTHS = ", ".join(f"{width} ({base})" for width, base in _BASE_BY_TEXT_WIDTH.items())

# The latent scaling factor each VAE family was trained with. sd-1 and sd-2 share one VAE: such a VAE is
# recorded as sd-1, and a base override makes it sd-2.
_BASE_BY_VAE_SCALING_FACTOR = {0.18215: BaseModelType.StableDiffusion1, 0.13025: BaseModelType.StableDiffusionXL}

_CHECKPOINT_PREFIX = "model.diffusion_model."
_SDXL_SECOND_EMBEDDER = "conditioner.embedders.1."
_SDXL_REFINER_EMBEDDER = "conditioner.embedders.0.model."
_EPS = {"prediction_type": SchedulerPredictionType.Epsilon}
# Names a VAE has in the original layout and in diffusers' alike.
_VAE_CHECKPOINT_NAMES = frozenset({"encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight"})


@dataclass(frozen=True)
class ProbedModel:
    """What probing found. `base` is None when it could not be told, and `unknown_base_reason` then says why."""

    type: ModelType
    format: ModelFormat
    base: BaseModelType | None
    unknown_base_reason: str = ""
    extra_fields: dict[str, Any] = field(default_factory=dict)
    """Config fields that only this kind of model has."""
    undecided: dict[str, str] = field(default_factory=dict)
    """Config fields, besides the base, that probing could not tell, each with why: an install must be given them."""


def probe_model(path: Path) -> ProbedModel:
    """What the model at `path` is; `InvalidModelError` saying what is there when it is no model nodeloom knows."""
    if not path.exists():
        raise ModelPathNotFoundError(f"Nothing exists at {path}")
    if path.is_dir():
        return _probe_folder(path)
    if path.is_file():
        return _probe_file(path)
    raise InvalidModelError(f"{path} is neither a file nor a folder, not a model")


def is_model_folder(path: Path) -> bool:
    """Whether a folder is one model (a diffusers pipeline or model, or an embedding), not a folder of models."""
    has_config = (path / "model_index.json").is_file() or (path / "config.json").is_file()
    return has_config or folder_embedding(path) is not None


def _by_text_width(
    type: ModelType, format: ModelFormat, width: int | None, where: str, **extra_fields: Any
) -> ProbedModel:
    base = _BASE_BY_TEXT_WIDTH.get(width) if width is not None else None
    if base is not None:
        return ProbedModel(type, format, base, extra_fields=extra_fields)
    reason = f"{where} is {width}, which is none of {_KNOWN_WIDTHS}" if width is not None else f"{where} is missing"
    return ProbedModel(type, format, None, reason, extra_fields)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidModelError(f"{path} is not valid JSON ({error}), so its folder is not a model") from error
    if not isinstance(data, dict):
        raise InvalidModelError(f"{path} holds no JSON object, so its folder is not a model")
    return data


def _probe_folder(path: Path) -> ProbedModel:
    if (path / "model_index.json").is_file():
        return _probe_pipeline(path)
    if (path / "config.json").is_file():
        config = _read_json(path / "config.json")
        class_name = config.get("_class_name")
        if class_name == "AutoencoderKL":
            return _probe_vae(config)
        raise InvalidModelError(
            f"{path} holds a config.json for {class_name or 'no diffusers class'}: from a folder with a config.json "
            "only VAEs (AutoencoderKL) are installed, and a whole pipeline's folder has a model_index.json"
        )
    embedding = folder_embedding(path)
    if embedding is not None:
        return _probe_embedding_folder(embedding)
    # What else the folder holds is left unsaid: an error message never lists a folder.
    raise InvalidModelError(
        f"{path} is a folder with neither a model_index.json (a diffusers pipeline) nor a config.json (a diffusers "
        "VAE) nor a learned_embeds file (an embedding): not a model"
    )


def _probe_pipeline(path: Path) -> ProbedModel:
    index = _read_json(path / "model_index.json")
    submodels = [
        submodel
        for submodel in SubModelType
        if isinstance(index.get(submodel.value), list) and index[submodel.value][0] is not None
        if (path / submodel.value).is_dir()
    ]
    if SubModelType.UNet not in submodels:
        raise InvalidModelError(
            f"{path} is a {index.get('_class_name', 'diffusers')} pipeline without a unet folder: only Stable "
            "Diffusion pipelines are supported"
        )
    # SDXL is told by its parts, whatever its widths: the base has two text encoders, the refiner only the second.
    if SubModelType.TextEncoder2 in submodels:
        base = (
            BaseModelType.StableDiffusionXL
            if SubModelType.TextEncoder in submodels
            else BaseModelType.StableDiffusionXLRefiner
        )
        return ProbedModel(ModelType.Main, ModelFormat.Diffusers, base, extra_fields={"submodels": submodels})
    unet_config = _read_json(path / "unet" / "config.json")
    width = unet_config.get("cross_attention_dim")
    return _by_text_width(
        ModelType.Main,
        ModelFormat.Diffusers,
        width if isinstance(width, int) else None,
        "the UNet's cross_attention_dim",
        submodels=submodels,
    )


def _probe_vae(config: dict[str, Any]) -> ProbedModel:
    scaling_factor = config.get("scaling_factor", 0.18215)
    base = _BASE_BY_VAE_SCALING_FACTOR.get(scaling_factor)
    if base is not None:
        return ProbedModel(ModelType.VAE, ModelFormat.Diffusers, base)
    known = ", ".join(f"{factor} ({base})" for factor, base in _BASE_BY_VAE_SCALING_FACTOR.items())
    return ProbedModel(
        ModelType.VAE,
        ModelFormat.Diffusers,
        None,
        f"its scaling_factor is {scaling_factor}, which is none of {known}",
    )


def _probe_file(path: Path) -> ProbedModel:
    if path.suffix.lower() not in WEIGHTS_SUFFIXES:
        kind = f"a {path.suffix} file" if path.suffix else "a file without a suffix"
        raise InvalidModelError(
            f"{path} is {kind}, not a model: model files end in {', '.join(sorted(WEIGHTS_SUFFIXES))}"
        )
    shapes = read_tensor_shapes(path)
    if not shapes:
        raise InvalidModelError(f"{path} holds no tensors, so it is not a model")
    names = list(shapes)
    if any(name.startswith(_CHECKPOINT_PREFIX) for name in names):
        return _probe_checkpoint(shapes)
    if all(name in shapes for name in _VAE_CHECKPOINT_NAMES):
        return ProbedModel(
            ModelType.VAE,
            ModelFormat.Checkpoint,
            None,
            "the VAEs of sd-1, sd-2 and sdxl have the same tensors, so their weights cannot tell them apart",
        )
    lora = _probe_lora(shapes)
    if lora is not None:
        return lora
    embedding = _probe_embedding(shapes)
    if embedding is not None:
        return embedding
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise InvalidModelError(
        f"{path} holds {len(names)} tensors ({shown}) in no layout nodeloom knows: neither a single-file Stable "
        f"Diffusion checkpoint ({_CHECKPOINT_PREFIX}* names), a VAE (encoder.* and decoder.* names), a LoRA "
        "(lora_unet_*, lora_te_*, unet.* or text_encoder.* names ending in a LoRA, LoHa, LoKr or diff part) nor "
        "a textual-inversion embedding (emb_params, string_to_param.*, clip_l/clip_g, or one tensor named by its "
        "token)"
    )


def _probe_checkpoint(shapes: TensorShapes) -> ProbedModel:
    # SDXL is told by its text encoders, as its diffusers folders are: the base has two (CLIP-L as embedder 0,
    # OpenCLIP bigG as embedder 1), the refiner only OpenCLIP bigG, as embedder 0.
    if any(name.startswith(_SDXL_SECOND_EMBEDDER) for name in shapes):
        return ProbedModel(ModelType.Main, ModelFormat.Checkpoint, BaseModelType.StableDiffusionXL, extra_fields=_EPS)
    if any(name.startswith(_SDXL_REFINER_EMBEDDER) for name in shapes):
        return ProbedModel(
            ModelType.Main, ModelFormat.Checkpoint, BaseModelType.StableDiffusionXLRefiner, extra_fields=_EPS
        )
    # Any cross-attention key projection: its input width is the text width (which block has attention first
    # differs between SD 1/2 and SDXL).
    widths = (
        shape[1]
        for name, shape in shapes.items()
        if name.startswith(_CHECKPOINT_PREFIX) and name.endswith("attn2.to_k.weight") and len(shape) == 2
    )
    probed = _by_text_width(
        ModelType.Main, ModelFormat.Checkpoint, next(widths, None), "the UNet's cross-attention width"
    )
    if probed.base != BaseModelType.StableDiffusion2:
        return ProbedModel(probed.type, probed.format, probed.base, probed.unknown_base_reason, _EPS)
    # SD-2's 512-pixel models predict the noise and its 768-pixel ones the velocity, with the same tensors.
    return ProbedModel(
        probed.type,
        probed.format,
        probed.base,
        undecided={
            "prediction_type": "sd-2 models that predict the noise (epsilon) and the velocity (v_prediction) have "
            "the same tensors"
        },
    )


def _probe_lora(shapes: TensorShapes) -> ProbedModel | None:
    """A LoRA of any kind (LoRA, LoHa, LoKr, full differences) in kohya's or diffusers' names, or None."""
    layers: dict[str, dict[str, tuple[int, ...]]] = {}
    targets = set()
    for name, shape in shapes.items():
        target, split = lora_target(name), split_lora_key(name)
        if target is not None and split is not None:
            targets.add(target)
            layers.setdefault(split[0], {})[split[1]] = shape
    if not layers:
        return None
    # A second text encoder, or a first one named as SDXL's (kohya's `lora_te1_`), is SDXL's.
    if "text_encoder_2" in targets or any(layer.startswith("lora_te1_") for layer in layers):
        return ProbedModel(ModelType.LoRA, ModelFormat.LyCORIS, BaseModelType.StableDiffusionXL)
    # A linear layer's input width is the text embedding's width for the UNet's attn2 key projection, and the
    # text encoder's hidden size for its first MLP layer.
    for marks in (("attn2", "to_k"), ("text_model", "mlp", "fc1")):
        for layer, parts in layers.items():
            width = linear_input_width(parts)
            if width is not None and all(mark in layer for mark in marks):
                return _by_text_width(ModelType.LoRA, ModelFormat.LyCORIS, width, f"the input width of {layer}")
    return _by_text_width(
        ModelType.LoRA,
        ModelFormat.LyCORIS,
        None,
        "a cross-attention (attn2 to_k) or text encoder (mlp fc1) LoRA layer to read the text width from",
    )


def _probe_embedding_folder(file: Path) -> ProbedModel:
    probed = _probe_embedding(read_tensor_shapes(file), ModelFormat.EmbeddingFolder)
    if probed is None:
        raise InvalidModelError(f"{file} holds no textual-inversion embedding, so its folder is not a model")
    return probed


def _probe_embedding(shapes: TensorShapes, format: ModelFormat = ModelFormat.EmbeddingFile) -> ProbedModel | None:
    """A textual-inversion embedding: SDXL's two parts (`clip_l`, `clip_g`), Automatic1111's (`emb_params`,
    `string_to_param.*`) or diffusers' (one vector or matrix, named by its token); else None."""
    if "clip_l" in shapes and "clip_g" in shapes:
        return ProbedModel(ModelType.TextualInversion, format, BaseModelType.StableDiffusionXL)
    vectors = shapes.get("emb_params") or next(
        (shape for name, shape in shapes.items() if name.startswith("string_to_param.")), None
    )
    # diffusers names its one tensor by the token (`<cat-toy>`): no layer's dotted path.
    if vectors is None and len(shapes) == 1 and "." not in next(iter(shapes)):
        vectors = next(iter(shapes.values()))
    if vectors is None or len(vectors) not in (1, 2):
        return None
    return _by_text_width(ModelType.TextualInversion, format, vectors[-1], "the embedding's width")
