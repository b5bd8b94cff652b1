"""LoRA weights added to a UNet's or text encoder's layers while a model is in use, and taken off after.

Two ways LoRA files name layers are read: kohya's (`lora_unet_down_blocks_0_..._to_q.lora_down.weight`, with an
`.alpha` beside), whose names are the diffusers module path with underscores for dots, and diffusers/PEFT's
(`unet.down_blocks.0....to_q.lora_A.weight`). Each patched layer gets `weight * (alpha / rank) * up @ down` added;
its weight as it was is copied aside first and copied back on exit, so the cached model is restored bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch

LoRATarget = Literal["unet", "text_encoder", "text_encoder_2"]

# kohya names SDXL's first text encoder `lora_te1_` where SD-1's single one is `lora_te_`.
_KOHYA_PREFIXES: Mapping[LoRATarget, tuple[str, ...]] = {
    "unet": ("lora_unet_",),
    "text_encoder": ("lora_te_", "lora_te1_"),
    "text_encoder_2": ("lora_te2_",),
}
_PEFT_PREFIXES: Mapping[LoRATarget, str] = {
    "unet": "unet.",
    "text_encoder": "text_encoder.",
    "text_encoder_2": "text_encoder_2.",
}
_DOWN = ("lora_down.weight", "lora_A.weight")
_UP = ("lora_up.weight", "lora_B.weight")

LoRA = tuple[Mapping[str, torch.Tensor], float]
"""A LoRA's tensors by name, and the weight to apply it with."""


@dataclass
class _LayerLoRA:
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None

    def delta(self, layer_name: str, shape: torch.Size) -> torch.Tensor:
        """The change to the layer's weight at weight 1: `(alpha / rank) * up @ down`, for linear and conv layers
        alike (a conv's up is `(out, rank, 1, 1)`, its down `(rank, in, kh, kw)`)."""
        if self.down is None or self.up is None:
            raise ValueError(f"The LoRA's layer '{layer_name}' lacks its down or up weights")
        rank = self.down.shape[0]
        scale = 1.0 if self.alpha is None else self.alpha / rank
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()
        if product.numel() != shape.numel():
            raise ValueError(f"The LoRA's layer '{layer_name}' does not fit the model's, of shape {tuple(shape)}")
        return (product * scale).reshape(shape)


def _layers(state_dict: Mapping[str, torch.Tensor], target: LoRATarget) -> dict[str, _LayerLoRA]:
    """The LoRA's layers that patch `target`, by the layer's name as the file spells it."""
    layers: dict[str, _LayerLoRA] = {}
    prefixes = (*_KOHYA_PREFIXES[target], _PEFT_PREFIXES[target])
    for name, tensor in state_dict.items():
        if not name.startswith(prefixes):
            continue
        layer_name, _, part = name.partition(".lora_") if ".lora_" in name else name.rpartition(".")
        layer = layers.setdefault(layer_name, _LayerLoRA())
        if f"lora_{part}" in _DOWN:
            layer.down = tensor
        elif f"lora_{part}" in _UP:
            layer.up = tensor
        elif part == "alpha":
            layer.alpha = float(tensor.item())
    return layers


Layer = torch.nn.Linear | torch.nn.Conv2d


def _modules_by_lora_name(model: torch.nn.Module, target: LoRATarget) -> dict[str, Layer]:
    """The model's layers under both spellings of their LoRA names.

    LoRA files name a CLIP text encoder's layers from `text_model.`, where transformers 4 put them; transformers 5
    has them at the top of `CLIPTextModel`, so they are also found under that prefix.
    """
    outer = "text_model." if target != "unet" and not hasattr(model, "text_model") else ""
    modules: dict[str, Layer] = {}
    for path, module in model.named_modules():
        if isinstance(module, Layer):
            # The projection of SDXL's second text encoder sits beside `text_model`, not in it.
            inner = path if path.startswith("text_projection") else outer + path
            for kohya in _KOHYA_PREFIXES[target]:
                modules[kohya + inner.replace(".", "_")] = module
            modules[_PEFT_PREFIXES[target] + inner] = module
    return modules


@contextmanager
def apply_loras(model: torch.nn.Module, loras: Iterable[LoRA], target: LoRATarget) -> Iterator[None]:
    """Adds each LoRA's `target` layers, times its weight, to the model while inside; restores the weights on exit.

    A LoRA layer that names no layer of the model is an error: the LoRA is for another architecture.
    """
    originals: dict[Layer, torch.Tensor] = {}
    try:
        with torch.no_grad():
            modules = _modules_by_lora_name(model, target)
            for state_dict, weight in loras:
                for layer_name, layer in _layers(state_dict, target).items():
                    module = modules.get(layer_name)
                    if module is None:
                        raise ValueError(f"The LoRA's layer '{layer_name}' matches no layer of the {target}")
                    parameter = module.weight
                    originals.setdefault(module, parameter.detach().clone())
                    delta = layer.delta(layer_name, parameter.shape) * weight
                    parameter.add_(delta.to(device=parameter.device, dtype=parameter.dtype))
        yield
    finally:
        with torch.no_grad():
            for module, original in originals.items():
                module.weight.copy_(original)
