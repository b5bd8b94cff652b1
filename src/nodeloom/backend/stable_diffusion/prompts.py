"""Prompts to conditioning tensors through compel, which reads weighting syntax ("a (red)1.3 cat", "cat--")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from compel import Compel, ReturnedEmbeddingsType
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


@dataclass(frozen=True)
class TextConditioning:
    """One prompt's embeddings, `(1, tokens, width)`; tokens are a multiple of the tokenizer's 77 for a long prompt.

    SDXL's conditioning adds the pooled embeddings of its second text encoder, `(1, projection width)`, and the
    time ids its UNet embeds with them, `(1, 6)` for the base (original size, crop, target size) and `(1, 5)` for
    the refiner (original size, crop, aesthetic score). Stored as a dict of tensors: the object store keeps tensors
    in plain containers, never class instances.
    """

    embeds: torch.Tensor
    pooled_embeds: torch.Tensor | None = None
    add_time_ids: torch.Tensor | None = None

    def to_stored(self) -> dict[str, torch.Tensor]:
        stored = {"embeds": self.embeds}
        if self.pooled_embeds is not None and self.add_time_ids is not None:
            stored |= {"pooled_embeds": self.pooled_embeds, "add_time_ids": self.add_time_ids}
        return stored

    @classmethod
    def from_stored(cls, stored: Any) -> TextConditioning:
        embeds = stored.get("embeds") if isinstance(stored, dict) else None
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3:
            raise ValueError("The stored object is not text conditioning: a dict with a 3-D 'embeds' tensor")
        pooled, time_ids = stored.get("pooled_embeds"), stored.get("add_time_ids")
        if pooled is None and time_ids is None:
            return cls(embeds=embeds)
        if not isinstance(pooled, torch.Tensor) or not isinstance(time_ids, torch.Tensor):
            raise ValueError("The stored SDXL conditioning needs both 'pooled_embeds' and 'add_time_ids' tensors")
        return cls(embeds=embeds, pooled_embeds=pooled, add_time_ids=time_ids)

    @property
    def is_sdxl(self) -> bool:
        return self.pooled_embeds is not None


@contextmanager
def skip_clip_layers(text_encoder: CLIPTextModel | CLIPTextModelWithProjection, count: int) -> Iterator[None]:
    """Runs the text encoder without its last `count` layers ("CLIP skip"), putting them back on exit.

    The final layer norm still applies, as in diffusers' `clip_skip` and InvokeAI.
    """
    if count == 0:
        yield
        return
    # transformers 4 wraps the encoder in `text_model`; transformers 5 has it at the top.
    encoder: Any = getattr(text_encoder, "text_model", text_encoder).encoder
    layers: torch.nn.ModuleList = encoder.layers
    if count >= len(layers):
        raise ValueError(f"Cannot skip {count} layers of a text encoder that has {len(layers)}")
    encoder.layers = torch.nn.ModuleList(list(layers)[:-count])
    try:
        yield
    finally:
        encoder.layers = layers


def _run_compel(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | CLIPTextModelWithProjection,
    prompt: str,
    skipped_layers: int,
    **options: Any,
) -> Any:
    """Compel's output for `prompt` with `options` (long prompts not truncated), computed where the text encoder is,
    without its last `skipped_layers` layers."""
    with torch.no_grad(), skip_clip_layers(text_encoder, skipped_layers):
        compel = Compel(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            dtype_for_device_getter=lambda device: text_encoder.dtype,
            truncate_long_prompts=False,
            **options,
        )
        return compel(prompt)


def encode_prompt(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | CLIPTextModelWithProjection,
    prompt: str,
    skipped_layers: int = 0,
) -> TextConditioning:
    """The prompt's embeddings on the CPU, computed where the text encoder is.

    Long prompts are not truncated: compel encodes them in 77-token chunks, as InvokeAI does. An unweighted prompt
    gives exactly the embeddings of diffusers' `encode_prompt`.
    """
    embeds = _run_compel(tokenizer, text_encoder, prompt, skipped_layers)
    return TextConditioning(embeds=embeds.detach().to("cpu"))


def encode_sdxl_prompt_part(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | CLIPTextModelWithProjection,
    prompt: str,
    skipped_layers: int,
    pooled: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One SDXL text encoder's part of a prompt's conditioning, on the CPU: its penultimate hidden states, not
    normalized, and, when `pooled`, its projected pooled output (the second encoder's), as
    `StableDiffusionXLPipeline.encode_prompt` takes them for an unweighted prompt."""
    output = _run_compel(
        tokenizer,
        text_encoder,
        prompt,
        skipped_layers,
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        requires_pooled=pooled,
    )
    if pooled:
        embeds, pooled_embeds = output
        return embeds.detach().to("cpu"), pooled_embeds.detach().to("cpu")
    return output.detach().to("cpu"), None
