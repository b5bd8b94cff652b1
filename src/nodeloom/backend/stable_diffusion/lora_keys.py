"""How LoRA files name their tensors: which model each tensor patches, which layer, and which part of the layer's
change it is. Names only, no torch: the probe reads them from a file's header.

A tensor's name is a layer's name and a part: `lora_unet_down_blocks_0_..._to_k.lora_down.weight` (kohya: the
module path with underscores for dots, behind a prefix naming the model) or `unet.down_blocks.0....to_k.lora_A.weight`
(diffusers and PEFT: the dotted module path behind `unet.`, `text_encoder.` or `text_encoder_2.`; diffusers' older
attention-processor format names an attention's projections `processor.to_q_lora` in a UNet and `to_q_lora` in a
text encoder). The parts are those of the kinds of layer LyCORIS writes: LoRA (`lora_down`, `lora_up`, optional
`lora_mid`), LoHa (`hada_*`), LoKr (`lokr_*`) and full differences (`diff`, `diff_b`), each with an optional `alpha`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

LoRATarget = Literal["unet", "text_encoder", "text_encoder_2"]

# kohya names SDXL's first text encoder `lora_te1_` where SD-1's single one is `lora_te_`.
KOHYA_PREFIXES: Mapping[LoRATarget, tuple[str, ...]] = {
    "unet": ("lora_unet_",),
    "text_encoder": ("lora_te_", "lora_te1_"),
    "text_encoder_2": ("lora_te2_",),
}
DIFFUSERS_PREFIXES: Mapping[LoRATarget, str] = {
    "unet": "unet.",
    "text_encoder": "text_encoder.",
    "text_encoder_2": "text_encoder_2.",
}

_LYCORIS_PARTS = (
    "alpha",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
    "diff",
    "diff_b",
)
# A plain LoRA's down and up matrices go by four names: kohya's, PEFT's, and two of diffusers' own formats.
_PART_BY_SUFFIX: Mapping[str, str] = {
    **{f"{spelling}.weight": "down" for spelling in ("lora_down", "lora_A", "lora.down", "lora_linear_layer.down")},
    **{f"{spelling}.weight": "up" for spelling in ("lora_up", "lora_B", "lora.up", "lora_linear_layer.up")},
    "lora_mid.weight": "mid",
    **{part: part for part in _LYCORIS_PARTS},
}
KNOWN_PARTS = ", ".join(_PART_BY_SUFFIX)

_PROCESSOR_KEY = re.compile(
    r"(?P<attention>.+?)(\.processor)?\.(?P<projection>to_q|to_k|to_v|to_out)_lora\.(?P<part>down|up)\.weight"
)
# The module each projection of the attention-processor format is, in a UNet's attention and a CLIP encoder's.
_UNET_PROJECTIONS = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}
_TEXT_PROJECTIONS = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}


def lora_target(name: str) -> LoRATarget | None:
    """The model a LoRA tensor patches, by its name's prefix; None for a name with no known prefix."""
    for target in KOHYA_PREFIXES:
        if name.startswith((*KOHYA_PREFIXES[target], DIFFUSERS_PREFIXES[target])):
            return target
    return None


def split_lora_key(name: str) -> tuple[str, str] | None:
    """The layer a LoRA tensor belongs to, as the file names it, and the part it is (`down`, `up`, `mid` or the
    LyCORIS name: `alpha`, `hada_w1_a`, `lokr_w2`, `diff`, ...); None for a name that ends in no known part."""
    processor = _PROCESSOR_KEY.fullmatch(name)
    if processor is not None:
        projections = _UNET_PROJECTIONS if name.startswith(DIFFUSERS_PREFIXES["unet"]) else _TEXT_PROJECTIONS
        return f"{processor['attention']}.{projections[processor['projection']]}", processor["part"]
    for suffix, part in _PART_BY_SUFFIX.items():
        if name.endswith(f".{suffix}"):
            return name[: -len(suffix) - 1], part
    return None


def linear_input_width(parts: Mapping[str, tuple[int, ...]]) -> int | None:
    """The input width of the linear layer a LoRA layer patches, from the shapes of its parts; None when its parts
    do not tell it (a convolution's, or parts missing)."""
    if "down" in parts:
        return parts["down"][-1]
    if "hada_w1_b" in parts:
        return parts["hada_w1_b"][-1]
    if "diff" in parts:
        return parts["diff"][-1]
    # A LoKr's change is the Kronecker product of two matrices, each given whole or as a product of two.
    factors = [parts.get(f"lokr_w{i}") or parts.get(f"lokr_w{i}_b") for i in (1, 2)]
    if factors[0] is not None and factors[1] is not None:
        return factors[0][-1] * factors[1][-1]
    return None
