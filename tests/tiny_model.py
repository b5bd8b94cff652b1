"""Model files made for tests, since nothing may be downloaded: a tiny Stable Diffusion 1.x-architecture pipeline
built from configs with fixed seeds (about 6 MB), a tiny SDXL base and refiner, LoRAs of each kind, a single-file
checkpoint, and a pickle that runs code.

torch, diffusers and transformers are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

# Read by huggingface_hub when it is first imported: nothing in the tests may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
# Read by MKL when it first computes. MKL may sum a product in another order when an operand's memory is aligned
# otherwise, and weights loaded from two files (a diffusers folder, the single file written from it) sit at
# different alignments: in strict mode the results depend on the values alone, so that the tests can ask for
# exact equality.
os.environ["MKL_CBWR"] = "AUTO,STRICT"

TINY_CROSS_ATTENTION_DIM = 32
"""The text width of the tiny pipeline: no real base has it, so installing it needs a base override."""

SD1_TEXT_WIDTH = 768

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def quiet_torch() -> None:
    """One thread (two on a two-core machine can stall a tiny run for seconds), and no progress bars."""
    import diffusers
    import torch
    import transformers

    torch.set_num_threads(1)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _write_tokenizer_files(folder: Path) -> None:
    """A byte-pair vocabulary of the letters, each alone and word-final, with one merge."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*_LETTERS, "ab"]:
        vocab[token] = len(vocab)
        vocab[f"{token}</w>"] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")


SDXL_TIME_EMBED_DIM = 8
"""The width each of the tiny SDXL UNets' time ids is embedded to."""


def _tiny_scheduler() -> Any:
    """Stable Diffusion's DDIM settings, as its model folders configure them."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _tiny_vae() -> Any:
    import torch
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=16,
        norm_num_groups=32,
    )


def _tiny_clip_config(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_CROSS_ATTENTION_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=TINY_CROSS_ATTENTION_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_sd(folder: Path) -> Path:
    """Saves a tiny StableDiffusionPipeline (UNet, VAE, CLIP text encoder and tokenizer, DDIM scheduler) in
    `folder`, in diffusers layout with safetensors weights, and returns `folder`."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_torch()
    _write_tokenizer_files(folder.parent / f"{folder.name}-tokenizer-source")
    tokenizer = CLIPTokenizer.from_pretrained(folder.parent / f"{folder.name}-tokenizer-source", model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
    scheduler = _tiny_scheduler()
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        # diffusers annotates these two as required, and takes None for them without a safety checker.
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def _tiny_sdxl_unet(cross_attention_dim: int, time_ids: int) -> Any:
    """A UNet with SDXL's added conditioning: `time_ids` numbers, each embedded to `SDXL_TIME_EMBED_DIM`, and the
    second text encoder's pooled projection."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=time_ids * SDXL_TIME_EMBED_DIM + TINY_CROSS_ATTENTION_DIM,
    )


def build_tiny_sdxl(folder: Path) -> tuple[Path, Path]:
    """Saves a tiny SDXL base pipeline (two CLIP text encoders, the second with a projection, a UNet with time
    embeddings, a VAE) in `folder / "base"` and a tiny refiner (the second text encoder alone, with its own UNet)
    in `folder / "refiner"`, in diffusers layout; returns both folders."""
    import torch
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import (
        StableDiffusionXLImg2ImgPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_torch()
    _write_tokenizer_files(folder / "tokenizer-source")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer-source", model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_tiny_clip_config(tokenizer))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_config(tokenizer))
    vae = _tiny_vae()
    scheduler = _tiny_scheduler()
    base = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=_tiny_sdxl_unet(2 * TINY_CROSS_ATTENTION_DIM, time_ids=6),
        scheduler=scheduler,
        add_watermarker=False,
    )
    base.save_pretrained(folder / "base", safe_serialization=True)
    refiner = StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        # diffusers annotates these two as required, and takes None for them in a refiner.
        text_encoder=None,  # type: ignore[arg-type]
        tokenizer=None,  # type: ignore[arg-type]
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        unet=_tiny_sdxl_unet(TINY_CROSS_ATTENTION_DIM, time_ids=5),
        scheduler=scheduler,
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    refiner.save_pretrained(folder / "refiner", safe_serialization=True)
    return folder / "base", folder / "refiner"


def _save_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    save_file({name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}, path)
    return path


def write_lora(path: Path, text_width: int = SD1_TEXT_WIDTH, rank: int = 4) -> Path:
    """A kohya-style LoRA of two UNet attention layers; `text_width` is the input width of their key projection."""
    block = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0"
    return _save_safetensors(
        path,
        {
            f"{block}_attn2_to_k.lora_down.weight": (rank, text_width),
            f"{block}_attn2_to_k.lora_up.weight": (320, rank),
            f"{block}_attn1_to_q.lora_down.weight": (rank, 320),
            f"{block}_attn1_to_q.lora_up.weight": (320, rank),
        },
    )


def write_tiny_lora(path: Path) -> Path:
    """A kohya-style LoRA that fits the tiny pipeline: one UNet cross-attention key and one text encoder query."""
    block = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    text = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    rank = 2
    return _save_safetensors(
        path,
        {
            f"{block}.lora_down.weight": (rank, TINY_CROSS_ATTENTION_DIM),
            f"{block}.lora_up.weight": (TINY_CROSS_ATTENTION_DIM, rank),
            f"{text}.lora_down.weight": (rank, TINY_CROSS_ATTENTION_DIM),
            f"{text}.lora_up.weight": (TINY_CROSS_ATTENTION_DIM, rank),
        },
    )


def write_tiny_sdxl_lora(path: Path) -> Path:
    """A kohya-style LoRA that fits the tiny SDXL base: a UNet cross-attention key and a query of each text
    encoder."""
    rank = 2
    layers = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": 2 * TINY_CROSS_ATTENTION_DIM,
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj": TINY_CROSS_ATTENTION_DIM,
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj": TINY_CROSS_ATTENTION_DIM,
    }
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, width in layers.items():
        shapes[f"{layer}.lora_down.weight"] = (rank, width)
        shapes[f"{layer}.lora_up.weight"] = (TINY_CROSS_ATTENTION_DIM, rank)
    return _save_safetensors(path, shapes)


LoRAKind = Literal["lora", "loha", "lokr", "peft", "full"]
"""kohya's LoRA, LoHa and LoKr, PEFT's LoRA in diffusers' names, and full differences (LyCORIS `diff`)."""
LORA_KINDS: tuple[LoRAKind, ...] = ("lora", "loha", "lokr", "peft", "full")


@dataclass(frozen=True)
class LoRALayerSpec:
    """A linear layer a test LoRA patches: its name in kohya's and in diffusers' spelling, its weight's shape, and
    whether it has a bias (a full difference then changes it too)."""

    kohya: str
    diffusers: str
    shape: tuple[int, int]
    bias: bool = False


TINY_SD1_LORA_LAYERS = (
    LoRALayerSpec(
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
        (32, TINY_CROSS_ATTENTION_DIM),
    ),
    LoRALayerSpec(
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        (TINY_CROSS_ATTENTION_DIM, TINY_CROSS_ATTENTION_DIM),
        bias=True,
    ),
)
"""Layers of the tiny SD-1 pipeline: a UNet cross-attention key and a text encoder query."""

TINY_SDXL_LORA_LAYERS = (
    # kohya's SDXL LoRAs name the UNet's layers as the original Stable Diffusion UNet does: the tiny UNet's first
    # input block after conv_in is its first level's first resnet, with its attention as `.1`.
    LoRALayerSpec(
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
        (32, 2 * TINY_CROSS_ATTENTION_DIM),
    ),
    LoRALayerSpec(
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        (TINY_CROSS_ATTENTION_DIM, TINY_CROSS_ATTENTION_DIM),
        bias=True,
    ),
    LoRALayerSpec(
        "lora_te2_text_model_encoder_layers_1_mlp_fc1",
        "text_encoder_2.text_model.encoder.layers.1.mlp.fc1",
        (37, TINY_CROSS_ATTENTION_DIM),
        bias=True,
    ),
)
"""Layers of the tiny SDXL base: a UNet cross-attention key, a query of the first text encoder and an MLP layer of
the second."""


def _kronecker_factor(size: int) -> int:
    """The size of a LoKr's first (small) factor along a dimension of `size`."""
    return 4 if size % 4 == 0 else 1


def lora_tensors(
    kind: LoRAKind, layers: tuple[LoRALayerSpec, ...], rank: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A LoRA of `kind` for `layers`, random; kohya's kinds with an alpha of half the rank. A LoKr's first factor is
    whole and its second a product of two, so both forms are used."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * 0.5

    tensors: dict[str, torch.Tensor] = {}
    for layer in layers:
        out_width, in_width = layer.shape
        name = layer.diffusers if kind == "peft" else layer.kohya
        if kind == "peft":
            parts = {"lora_A.weight": random(rank, in_width), "lora_B.weight": random(out_width, rank)}
        elif kind == "lora":
            parts = {"lora_down.weight": random(rank, in_width), "lora_up.weight": random(out_width, rank)}
        elif kind == "loha":
            parts = {f"hada_w{i}_a": random(out_width, rank) for i in (1, 2)}
            parts |= {f"hada_w{i}_b": random(rank, in_width) for i in (1, 2)}
        elif kind == "lokr":
            out_factor, in_factor = _kronecker_factor(out_width), _kronecker_factor(in_width)
            parts = {
                "lokr_w1": random(out_factor, in_factor),
                "lokr_w2_a": random(out_width // out_factor, rank),
                "lokr_w2_b": random(rank, in_width // in_factor),
            }
        else:
            parts = {"diff": random(out_width, in_width)} | ({"diff_b": random(out_width)} if layer.bias else {})
        if kind in ("lora", "loha", "lokr"):
            parts["alpha"] = torch.tensor(rank / 2)
        tensors |= {f"{name}.{part}": tensor for part, tensor in parts.items()}
    return tensors


def write_lora_of_kind(path: Path, kind: LoRAKind, layers: tuple[LoRALayerSpec, ...]) -> Path:
    """`lora_tensors` saved as safetensors."""
    from safetensors.torch import save_file

    save_file(lora_tensors(kind, layers), path)
    return path


def write_checkpoint(path: Path, text_width: int = SD1_TEXT_WIDTH) -> Path:
    """A few tensors named as in an original Stable Diffusion single-file checkpoint."""
    return _save_safetensors(
        path,
        {
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, text_width),
            "model.diffusion_model.out.2.bias": (4,),
            "first_stage_model.decoder.conv_in.bias": (8,),
        },
    )


def write_random_safetensors(path: Path) -> Path:
    """Tensors whose names match no model's."""
    return _save_safetensors(path, {"weights": (4, 4), "bias": (4,)})


class _RunsCode:
    """Unpickles into a call of `exec`: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"__import__('pathlib').Path({str(self.marker)!r}).write_text('the pickle ran code')",))


def write_code_running_checkpoint(path: Path, marker: Path) -> Path:
    """A torch checkpoint whose tensors look like a single-file model, and which writes `marker` when unpickled."""
    import torch

    torch.save(
        {"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "callbacks": _RunsCode(marker)}, path
    )
    return path
