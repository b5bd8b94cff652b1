"""Prompts to conditioning tensors through compel, which reads weighting syntax ("a (red)1.3 cat", "cat--")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from compel import Compel
from transformers import CLIPTextModel, CLIPTokenizer


@dataclass(frozen=True)
class TextConditioning:
    """One prompt's embeddings, `(1, tokens, width)`; tokens are a multiple of the tokenizer's 77 for a long prompt.

    Stored as `{"embeds": tensor}`: the object store keeps tensors in plain containers, never class instances.
    """

    embeds: torch.Tensor

    def to_stored(self) -> dict[str, torch.Tensor]:
        return {"embeds": self.embeds}

    @classmethod
    def from_stored(cls, stored: Any) -> TextConditioning:
        embeds = stored.get("embeds") if isinstance(stored, dict) else None
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3:
            raise ValueError("The stored object is not text conditioning: a dict with a 3-D 'embeds' tensor")
        return cls(embeds=embeds)


@contextmanager
def skip_clip_layers(text_encoder: CLIPTextModel, count: int) -> Iterator[None]:
    """Runs the text encoder without its last `count` layers ("CLIP skip"), putting them back on exit.

    The final layer norm still applies, as in diffusers' `clip_skip` and InvokeAI.
    """
    if count == 0:
        yield
        return
    # transformers 4 wraps the encoder in `text_model`; transformers 5 has it at the top.
    encoder = getattr(text_encoder, "text_model", text_encoder).encoder
    layers = encoder.layers
    if count >= len(layers):
        raise ValueError(f"Cannot skip {count} layers of a text encoder that has {len(layers)}")
    encoder.layers = torch.nn.ModuleList(list(layers)[:-count])
    try:
        yield
    finally:
        encoder.layers = layers


def encode_prompt(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompt: str, skipped_layers: int = 0
) -> TextConditioning:
    """The prompt's embeddings on the CPU, computed where the text encoder is.

    Long prompts are not truncated: compel encodes them in 77-token chunks, as InvokeAI does. An unweighted prompt
    gives exactly the embeddings of diffusers' `encode_prompt`.
    """
    with torch.no_grad(), skip_clip_layers(text_encoder, skipped_layers):
        compel = Compel(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            dtype_for_device_getter=lambda device: text_encoder.dtype,
            truncate_long_prompts=False,
        )
        embeds = compel(prompt)
    return TextConditioning(embeds=embeds.detach().to("cpu"))
