"""LoRA weights added to a UNet's or text encoder's layers while a model is in use, and taken off after.

Each layer a LoRA file names (see `lora_keys` for the names) gets `weight * scale * delta` added to its weight:
`delta` is `up @ down` for a LoRA (through `mid` for a Tucker-decomposed convolution), the elementwise product of two
such products for a LoHa, the Kronecker product of two matrices for a LoKr, and the stored difference for a full
layer (`diff`, and `diff_b` for the bias); `scale` is `alpha / rank` where the file gives an alpha, else 1. The
layers' parameters as they were are copied to the CPU first and copied back on exit, so the cached model is restored
bit for bit. Several LoRAs add up.

A kohya LoRA names a UNet's layers by their diffusers module path, or, as kohya's SDXL LoRAs do, by the original
Stable Diffusion UNet's (`input_blocks_4_1_...`, `middle_block_1_...`, `output_blocks_...`); both are found.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch

from nodeloom.backend.stable_diffusion.lora_keys import (
    DIFFUSERS_PREFIXES,
    KNOWN_PARTS,
    KOHYA_PREFIXES,
    LoRATarget,
    lora_target,
    split_lora_key,
)

LoRA = tuple[Mapping[str, torch.Tensor], float]
"""A LoRA's tensors by name, and the weight to apply it with."""

Layer = torch.nn.Linear | torch.nn.Conv2d

_Parts = dict[str, torch.Tensor]


def _layers(state_dict: Mapping[str, torch.Tensor], target: LoRATarget) -> dict[str, _Parts]:
    """The LoRA's layers that patch `target`, by the layer's name as the file spells it, each with its parts."""
    layers: dict[str, _Parts] = {}
    for name, tensor in state_dict.items():
        if lora_target(name) != target:
            continue
        split = split_lora_key(name)
        if split is None:
            raise ValueError(
                f"The LoRA's tensor '{name}' is of no kind nodeloom applies; the parts known are {KNOWN_PARTS}"
            )
        layer_name, part = split
        layers.setdefault(layer_name, {})[part] = tensor
    return layers


def _tucker(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    """A convolution's weight from a Tucker decomposition, as LyCORIS stores it: a `(rank, rank, kh, kw)` core and
    `(rank, out)` and `(rank, in)` factors."""
    return torch.einsum("abhw,ao,bi->oihw", core, out_factor, in_factor)


def _lora(parts: _Parts) -> tuple[torch.Tensor, int | None]:
    up, down = parts["up"].flatten(1), parts["down"].flatten(1)
    if "mid" in parts:
        # A convolution's kernel sits in `mid`; `up` and `down` are 1x1.
        return torch.einsum("abhw,oa,bi->oihw", parts["mid"], up, down), down.shape[0]
    return up @ down, down.shape[0]


def _loha(parts: _Parts) -> tuple[torch.Tensor, int | None]:
    if "hada_t1" in parts:
        first = _tucker(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"])
        second = _tucker(parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
    else:
        first = parts["hada_w1_a"] @ parts["hada_w1_b"]
        second = parts["hada_w2_a"] @ parts["hada_w2_b"]
    return first * second, parts["hada_w1_b"].shape[0]


def _lokr(parts: _Parts) -> tuple[torch.Tensor, int | None]:
    first = parts["lokr_w1"] if "lokr_w1" in parts else parts["lokr_w1_a"] @ parts["lokr_w1_b"]
    if "lokr_w2" in parts:
        second = parts["lokr_w2"]
    elif "lokr_t2" in parts:
        second = _tucker(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"])
    else:
        second = parts["lokr_w2_a"] @ parts["lokr_w2_b"]
    if second.dim() == 4:
        first = first[:, :, None, None]
    # The rank is that of whichever factor is decomposed; with both whole there is none, and no scale.
    ranks = [parts[name].shape[0] for name in ("lokr_w1_b", "lokr_w2_b") if name in parts]
    # torch.kron refuses the strided view einsum gives for a Tucker-decomposed factor.
    return torch.kron(first, second.contiguous()), ranks[0] if ranks else None


def _full(parts: _Parts) -> tuple[torch.Tensor, int | None]:
    return parts["diff"], None


def _weight_delta(parts: _Parts) -> tuple[torch.Tensor, int | None]:
    """The layer's change to its weight before scaling, and its rank (None where it has none)."""
    if "diff" in parts:
        return _full(parts)
    if "down" in parts or "up" in parts:
        return _lora(parts)
    if any(part.startswith("hada_") for part in parts):
        return _loha(parts)
    if any(part.startswith("lokr_") for part in parts):
        return _lokr(parts)
    raise KeyError("weights")


def _deltas(layer_name: str, parts: _Parts, module: Layer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each parameter of `module` the layer changes, with its change at weight 1, in float32 where it is."""
    weight = module.weight
    parts = {name: tensor.to(device=weight.device, dtype=torch.float32) for name, tensor in parts.items()}
    try:
        product, rank = _weight_delta(parts)
    except KeyError as missing:
        raise ValueError(f"The LoRA's layer '{layer_name}' lacks its {missing.args[0]} tensor") from missing
    if product.numel() != weight.numel():
        raise ValueError(
            f"The LoRA's layer '{layer_name}' does not fit the model's, of shape {tuple(weight.shape)}: it changes "
            f"{product.numel()} numbers"
        )
    scale = parts["alpha"].item() / rank if "alpha" in parts and rank else 1.0
    deltas = [(weight, product.reshape(weight.shape) * scale)]
    if "diff_b" in parts:
        if module.bias is None or module.bias.shape != parts["diff_b"].shape:
            raise ValueError(f"The LoRA's layer '{layer_name}' changes a bias the model's layer does not have")
        deltas.append((module.bias, parts["diff_b"]))
    return deltas


_SGM_TOP_LEVEL = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_out": "out.2",
}
_SGM_RESNET = {
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _sgm_path(path: str, layers_per_block: int, attention_up_blocks: set[int]) -> str | None:
    """The path the original Stable Diffusion UNet gives the diffusers UNet's layer at `path`, or None for one it
    names no differently. Each level of the original has `layers_per_block + 1` input blocks (its resnets, with
    their attentions, and a downsampler) and as many output blocks (the last with the upsampler)."""
    per_level = layers_per_block + 1
    for diffusers, sgm in _SGM_TOP_LEVEL.items():
        if path == diffusers:
            return sgm
    match path.split("."):
        case ["down_blocks", level, "resnets", index, inner]:
            block = f"input_blocks.{1 + int(level) * per_level + int(index)}.0"
            return f"{block}.{_SGM_RESNET.get(inner, inner)}"
        case ["down_blocks", level, "attentions", index, *inner]:
            return ".".join([f"input_blocks.{1 + int(level) * per_level + int(index)}.1", *inner])
        case ["down_blocks", level, "downsamplers", "0", "conv"]:
            return f"input_blocks.{(int(level) + 1) * per_level}.0.op"
        case ["mid_block", "resnets", index, inner]:
            return f"middle_block.{2 * int(index)}.{_SGM_RESNET.get(inner, inner)}"
        case ["mid_block", "attentions", "0", *inner]:
            return ".".join(["middle_block.1", *inner])
        case ["up_blocks", level, "resnets", index, inner]:
            return f"output_blocks.{int(level) * per_level + int(index)}.0.{_SGM_RESNET.get(inner, inner)}"
        case ["up_blocks", level, "attentions", index, *inner]:
            return ".".join([f"output_blocks.{int(level) * per_level + int(index)}.1", *inner])
        case ["up_blocks", level, "upsamplers", "0", "conv"]:
            # The upsampler follows the attention, where the level has one.
            position = 2 if int(level) in attention_up_blocks else 1
            return f"output_blocks.{(int(level) + 1) * per_level - 1}.{position}.conv"
    return None


def _lora_paths(model: torch.nn.Module, target: LoRATarget) -> Iterator[tuple[str, Layer]]:
    """Each patchable layer of the model under every dotted path a LoRA may name it by."""
    if target == "unet":
        config = getattr(model, "config", None)
        layers_per_block = getattr(config, "layers_per_block", None)
        attention_up_blocks = {
            index for index, block in enumerate(getattr(model, "up_blocks", [])) if hasattr(block, "attentions")
        }
        for path, module in model.named_modules():
            if isinstance(module, Layer):
                yield path, module
                sgm = None if layers_per_block is None else _sgm_path(path, layers_per_block, attention_up_blocks)
                if sgm is not None:
                    yield sgm, module
        return
    # LoRA files name a CLIP text encoder's layers from `text_model.`, where transformers 4 put them; transformers 5
    # has them at the top of `CLIPTextModel`.
    outer = "" if hasattr(model, "text_model") else "text_model."
    for path, module in model.named_modules():
        if isinstance(module, Layer):
            # The projection of SDXL's second text encoder sits beside `text_model`, not in it.
            yield (path if path.startswith("text_projection") else outer + path), module


def _modules_by_lora_name(model: torch.nn.Module, target: LoRATarget) -> dict[str, Layer]:
    """The model's layers under every name a LoRA file may give them, kohya's and diffusers'."""
    modules: dict[str, Layer] = {}
    for path, module in _lora_paths(model, target):
        for kohya in KOHYA_PREFIXES[target]:
            modules[kohya + path.replace(".", "_")] = module
        modules[DIFFUSERS_PREFIXES[target] + path] = module
    return modules


@contextmanager
def apply_loras(model: torch.nn.Module, loras: Iterable[LoRA], target: LoRATarget) -> Iterator[None]:
    """Adds each LoRA's `target` layers, times its weight, to the model while inside; restores the weights on exit.

    A LoRA layer that names no layer of the model is an error: the LoRA is for another architecture.
    """
    originals: dict[torch.Tensor, torch.Tensor] = {}
    try:
        with torch.no_grad():
            modules = _modules_by_lora_name(model, target)
            for state_dict, weight in loras:
                for layer_name, parts in _layers(state_dict, target).items():
                    module = modules.get(layer_name)
                    if module is None:
                        raise ValueError(f"The LoRA's layer '{layer_name}' matches no layer of the {target}")
                    for parameter, delta in _deltas(layer_name, parts, module):
                        # Kept in RAM: a LoRA over most of a UNet would otherwise double its layers in VRAM.
                        if parameter not in originals:
                            originals[parameter] = parameter.detach().to("cpu", copy=True)
                        parameter.add_((delta * weight).to(dtype=parameter.dtype))
        yield
    finally:
        with torch.no_grad():
            for parameter, original in originals.items():
                parameter.copy_(original)
