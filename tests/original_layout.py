"""Writing diffusers models in the original single-file layout: LDM's names for SD-1 (`model.diffusion_model.*`,
`first_stage_model.*`, `cond_stage_model.transformer.*`) and SGM's for SDXL (`conditioner.embedders.N.*`, CLIP-L
as transformers names it, OpenCLIP bigG in OpenCLIP's names with fused attention projections).

The mapping is written from the layouts' definitions, apart from nodeloom's loading (which converts with
diffusers' functions), so that a test of the two together checks one against the other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _read(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    (weights,) = folder.glob("*.safetensors")
    return load_file(weights), json.loads((folder / "config.json").read_text())


def _rename(name: str, names: dict[str, str]) -> str:
    """`name` with its leading diffusers part replaced by the original's, when `names` has one for it."""
    for diffusers_name, original in names.items():
        if name.startswith(diffusers_name + "."):
            return original + name[len(diffusers_name) :]
    return name


def unet_to_original(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers UNet's tensors under LDM's names, without the `model.diffusion_model.` prefix."""
    per_block = config["layers_per_block"] + 1
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    up_has_attention = ["CrossAttn" in kind for kind in config["up_block_types"]]
    original: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if (match := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)) is not None:
            block, kind, layer, rest = match.groups()
            index = 1 + int(block) * per_block + int(layer)
            new = _inner(index, kind, rest, "input_blocks")
        elif (match := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", name)) is not None:
            new = f"input_blocks.{(int(match[1]) + 1) * per_block}.0.op.{match[2]}"
        elif (match := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name)) is not None:
            block, kind, layer, rest = match.groups()
            new = _inner(int(block) * per_block + int(layer), kind, rest, "output_blocks")
        elif (match := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", name)) is not None:
            block = int(match[1])
            position = 2 if up_has_attention[block] else 1
            new = f"output_blocks.{block * per_block + per_block - 1}.{position}.conv.{match[2]}"
        elif parts[0] == "mid_block":
            position = {"resnets.0": 0, "attentions.0": 1, "resnets.1": 2}[f"{parts[1]}.{parts[2]}"]
            rest = ".".join(parts[3:])
            new = f"middle_block.{position}.{_rename(rest, _RESNET_NAMES) if parts[1] == 'resnets' else rest}"
        else:
            new = _rename(name, fixed)
            assert new != name, f"no LDM name for the UNet's {name}"
        original[new] = tensor
    return original


def _inner(index: int, kind: str, rest: str, blocks: str) -> str:
    if kind == "resnets":
        return f"{blocks}.{index}.0.{_rename(rest, _RESNET_NAMES)}"
    return f"{blocks}.{index}.1.{rest}"


def vae_to_original(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL's tensors under LDM's names (its attention projections as 1x1 convolutions)."""
    count = len(config["block_out_channels"])
    original: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        if (match := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(.*)", new)) is not None:
            new = f"encoder.down.{match[1]}.block.{match[2]}"
        elif (match := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", new)) is not None:
            new = f"encoder.down.{match[1]}.downsample.{match[2]}"
        elif (match := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(.*)", new)) is not None:
            new = f"decoder.up.{count - 1 - int(match[1])}.block.{match[2]}"
        elif (match := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", new)) is not None:
            new = f"decoder.up.{count - 1 - int(match[1])}.upsample.{match[2]}"
        elif (match := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", new)) is not None:
            new = f"{match[1]}.mid.block_{int(match[2]) + 1}.{match[3]}"
        elif (match := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", new)) is not None:
            new = f"{match[1]}.mid.attn_1.{_rename(match[2], _VAE_ATTENTION_NAMES)}"
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
        original[new] = tensor
    return original


def clip_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder's tensors as the original files hold them: under `text_model.`, with the
    position ids SD-1 files carry."""
    import torch

    original = {name if name.startswith("text_model.") else f"text_model.{name}": t for name, t in state.items()}
    positions = original["text_model.embeddings.position_embedding.weight"].shape[0]
    original["text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return original


def open_clip_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder's tensors (under `text_model.`) under OpenCLIP's names."""
    import torch

    # transformers' CLIPTextModel has no "text_model." level since 5.6; its WithProjection sibling still has.
    state = {
        name if name.startswith(("text_model.", "text_projection.")) else f"text_model.{name}": t
        for name, t in state.items()
    }
    original = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
    }
    # SD-2's encoder is used without its projection: a CLIPTextModel has none.
    if "text_projection.weight" in state:
        original["text_projection"] = state["text_projection.weight"].T.contiguous()
    layers = {int(name.split(".")[3]) for name in state if name.startswith("text_model.encoder.layers.")}
    for layer in sorted(layers):
        source = f"text_model.encoder.layers.{layer}."
        target = f"transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            original[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{projection}_proj.{kind}"] for projection in "qkv"]
            )
        for name, tensor in state.items():
            inner = name[len(source) :]
            fused = inner.startswith("self_attn.") and not inner.startswith("self_attn.out_proj.")
            if name.startswith(source) and not fused:
                original[target + _rename(inner, _OPEN_CLIP_LAYER_NAMES)] = tensor
    return original


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in state.items()}


def original_tensors(parts: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> dict[str, torch.Tensor]:
    """A pipeline's tensors in the original layout, from each part's diffusers tensors and config by part name:
    SD-1's with a `text_encoder` alone, SD-2's with an `open_clip_text_encoder` (OpenCLIP ViT-H), SDXL's with
    `text_encoder` and `text_encoder_2`, the refiner's with `text_encoder_2` alone."""
    tensors = _prefixed("model.diffusion_model.", unet_to_original(*parts["unet"]))
    tensors |= _prefixed("first_stage_model.", vae_to_original(*parts["vae"]))
    if "open_clip_text_encoder" in parts:
        tensors |= _prefixed("cond_stage_model.model.", open_clip_to_original(parts["open_clip_text_encoder"][0]))
    elif "text_encoder_2" not in parts:
        tensors |= _prefixed("cond_stage_model.transformer.", clip_to_original(parts["text_encoder"][0]))
    elif "text_encoder" not in parts:
        tensors |= _prefixed("conditioner.embedders.0.model.", open_clip_to_original(parts["text_encoder_2"][0]))
    else:
        tensors |= _prefixed("conditioner.embedders.0.transformer.", clip_to_original(parts["text_encoder"][0]))
        tensors |= _prefixed("conditioner.embedders.1.model.", open_clip_to_original(parts["text_encoder_2"][0]))
    return tensors


def write_single_file(pipeline: Path, path: Path) -> Path:
    """The SD-1, SDXL base or SDXL refiner diffusers pipeline in `pipeline` saved as one safetensors file in the
    original layout at `path`."""
    from safetensors.torch import save_file

    index = json.loads((pipeline / "model_index.json").read_text())
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    parts = {name: _read(pipeline / name) for name in names if index.get(name, [None])[0] is not None}
    save_file({name: tensor.contiguous() for name, tensor in original_tensors(parts).items()}, path)
    return path


def write_vae_file(vae_folder: Path, path: Path) -> Path:
    """The diffusers VAE in `vae_folder` saved as one safetensors file in the original layout at `path`."""
    from safetensors.torch import save_file

    vae, config = _read(vae_folder)
    save_file({name: tensor.contiguous() for name, tensor in vae_to_original(vae, config).items()}, path)
    return path
