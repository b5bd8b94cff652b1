"""Textual-inversion embeddings in prompts: `<name>` stands for an installed embedding's vectors.

For one prompt, a copy of the tokenizer gets a token per vector (`<name>`, `<name>_1`, ...), the prompt spells the
embedding as those tokens, and the text encoder gets a larger token embedding with the vectors as the new tokens'
rows. On exit the text encoder gets its own token embedding back, the very module, so the cached model is unchanged;
the cached tokenizer is never touched.

Embedding files come in three layouts: Automatic1111's (`string_to_param.*` in a `.pt`, `emb_params` in a
`.safetensors`), diffusers' (one tensor, named by its token), and SDXL's two-part one (`clip_l` for the first text
encoder, `clip_g` for the second).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

EmbeddingPart = Literal["clip_l", "clip_g"]
"""Which of SDXL's text encoders an embedding's vectors are for: the first (`clip_l`) or the second (`clip_g`)."""

# InvokeAI's trigger syntax: the name between angle brackets, of letters, digits, spaces and `.,_-`.
_TRIGGER = re.compile(r"<([\w., -]+)>")


def embedding_names(prompt: str) -> list[str]:
    """The names between angle brackets in the prompt, each once, in order: those of installed embeddings stand for
    them, the others stay text."""
    return list(dict.fromkeys(_TRIGGER.findall(prompt)))


def embedding_vectors(state_dict: Mapping[str, torch.Tensor], part: EmbeddingPart) -> torch.Tensor:
    """An embedding file's vectors, `(count, width)`; of an SDXL embedding, those of `part`."""
    if "clip_l" in state_dict or "clip_g" in state_dict:
        if part not in state_dict:
            raise ValueError(f"The SDXL embedding has no {part} vectors, for the text encoder this prompt goes through")
        vectors = state_dict[part]
    elif "emb_params" in state_dict:
        vectors = state_dict["emb_params"]
    else:
        candidates = [tensor for name, tensor in state_dict.items() if name.startswith("string_to_param.")]
        candidates = candidates or list(state_dict.values())
        if len(candidates) != 1:
            raise ValueError(f"The embedding holds {len(candidates)} tensors where one holds its vectors")
        vectors = candidates[0]
    if vectors.dim() not in (1, 2):
        raise ValueError(f"The embedding's vectors have shape {tuple(vectors.shape)}: neither one vector nor a matrix")
    return vectors.reshape(-1, vectors.shape[-1])


def _tokens(name: str, count: int) -> list[str]:
    return [f"<{name}>", *(f"<{name}>_{index}" for index in range(1, count))]


@contextmanager
def apply_embeddings(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel | CLIPTextModelWithProjection,
    prompt: str,
    embeddings: Mapping[str, torch.Tensor],
) -> Iterator[tuple[CLIPTokenizer, str]]:
    """The tokenizer and prompt to encode with the embeddings (vectors by name) while inside, the text encoder taking
    their vectors for their tokens; the text encoder restored on exit."""
    if not embeddings:
        yield tokenizer, prompt
        return
    original = text_encoder.get_input_embeddings()
    assert isinstance(original, torch.nn.Embedding), "CLIP text encoders embed tokens with an nn.Embedding"
    session_tokenizer = copy.deepcopy(tokenizer)
    rows: dict[str, torch.Tensor] = {}
    for name, vectors in embeddings.items():
        if vectors.shape[-1] != original.embedding_dim:
            raise ValueError(
                f"The embedding '{name}' has vectors {vectors.shape[-1]} wide, and the text encoder's tokens are "
                f"{original.embedding_dim} wide: it is for another model"
            )
        tokens = _tokens(name, vectors.shape[0])
        rows.update(zip(tokens, vectors, strict=True))
        prompt = prompt.replace(f"<{name}>", " ".join(tokens))
    session_tokenizer.add_tokens(list(rows))
    ids = session_tokenizer.convert_tokens_to_ids(list(rows))
    assert isinstance(ids, list), "a list of tokens converts to a list of ids"
    weight = original.weight
    extended = torch.nn.Embedding(
        max(original.num_embeddings, max(ids) + 1), original.embedding_dim, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        extended.weight[: original.num_embeddings] = weight
        extended.weight[ids] = torch.stack(list(rows.values())).to(device=weight.device, dtype=weight.dtype)
    text_encoder.set_input_embeddings(extended)
    try:
        yield session_tokenizer, prompt
    finally:
        text_encoder.set_input_embeddings(original)
