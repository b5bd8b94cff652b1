"""The prompt nodes: text, with compel's weighting syntax, to conditioning that later nodes load by name; SD-1/2's
with one text encoder, SDXL's with two and its size and crop conditioning, the SDXL refiner's with its second
encoder and an aesthetic score."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import Input, InputField, ModelIdentifierField, OutputField
from nodeloom.app.invocations.model import CLIPField, ModelFieldDescriptions, lock_loras
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from nodeloom.app.services.shared.invocation_context import InvocationContext
    from nodeloom.backend.stable_diffusion.textual_inversion import EmbeddingPart


MASK_DESCRIPTION = "A mask defining the region that this conditioning prompt applies to."
ORIGINAL_WIDTH = "The width the image was before it was resized or cropped for training (SDXL's size conditioning)"
ORIGINAL_HEIGHT = "The height the image was before it was resized or cropped for training (SDXL's size conditioning)"
CROP_TOP = "How many pixels were cropped from the top of the original image (SDXL's crop conditioning)"
CROP_LEFT = "How many pixels were cropped from the left of the original image (SDXL's crop conditioning)"


class WrongEmbeddingBaseError(NodeloomError):
    """The prompt names an embedding made for another base model than its text encoder's."""


def _embedding_bases(text_encoder_base: BaseModelType) -> set[BaseModelType]:
    """The bases of the embeddings a text encoder takes: its own, and `any` (the vectors' width is checked still)."""
    # SDXL's refiner has SDXL's second text encoder, so it takes the clip_g part of SDXL embeddings.
    if text_encoder_base == BaseModelType.StableDiffusionXLRefiner:
        return {text_encoder_base, BaseModelType.StableDiffusionXL, BaseModelType.Any}
    return {text_encoder_base, BaseModelType.Any}


def _lock_embeddings(
    context: InvocationContext, stack: ExitStack, clip: CLIPField, prompt: str, part: EmbeddingPart
) -> dict[str, torch.Tensor]:
    """The vectors of each installed embedding the prompt names (`<name>`), locked in the model cache until `stack`
    closes; of an SDXL embedding, those of `part`. A name no embedding has stays text, as in InvokeAI; an embedding
    only for another base is a `WrongEmbeddingBaseError`."""
    from nodeloom.backend.stable_diffusion.textual_inversion import embedding_names, embedding_vectors

    bases = _embedding_bases(clip.text_encoder.base)
    vectors: dict[str, torch.Tensor] = {}
    for name in embedding_names(prompt):
        installed = context.models.search_by_attrs(name=name, type=ModelType.TextualInversion)
        if not installed:
            continue
        fitting = [config for config in installed if config.base in bases]
        if not fitting:
            made_for = ", ".join(sorted({config.base.value for config in installed}))
            raise WrongEmbeddingBaseError(
                f"The embedding '{name}' is for {made_for}, and this prompt goes through a "
                f"{clip.text_encoder.base.value} text encoder"
            )
        state_dict = stack.enter_context(context.models.load(ModelIdentifierField.from_config(fitting[0])))
        try:
            vectors[name] = embedding_vectors(state_dict, part)
        except ValueError as error:
            raise ValueError(f"The embedding '{name}' cannot be used: {error}") from error
    return vectors


def _prompt_encoder(
    context: InvocationContext,
    stack: ExitStack,
    clip: CLIPField,
    prompt: str,
    target: Literal["text_encoder", "text_encoder_2"],
) -> tuple[CLIPTokenizer, CLIPTextModel | CLIPTextModelWithProjection, str]:
    """The tokenizer, text encoder and prompt to encode with, held until `stack` closes: the text encoder with the
    CLIP field's LoRAs on and the prompt's embeddings added, the tokenizer knowing the embeddings' tokens."""
    from nodeloom.backend.stable_diffusion.lora import apply_loras
    from nodeloom.backend.stable_diffusion.textual_inversion import apply_embeddings

    text_encoder = stack.enter_context(context.models.load(clip.text_encoder))
    tokenizer = stack.enter_context(context.models.load(clip.tokenizer))
    stack.enter_context(apply_loras(text_encoder, lock_loras(context, stack, clip.loras), target))
    # An SDXL embedding has vectors for each of its text encoders; other embeddings have one set, whatever the part.
    embeddings = _lock_embeddings(context, stack, clip, prompt, "clip_l" if target == "text_encoder" else "clip_g")
    tokenizer, prompt = stack.enter_context(apply_embeddings(tokenizer, text_encoder, prompt, embeddings))
    return tokenizer, text_encoder, prompt


class TensorField(BaseModel):
    """A tensor primitive field."""

    tensor_name: str = Field(description="The name of a tensor.")


class ConditioningField(BaseModel):
    """A conditioning tensor primitive value"""

    conditioning_name: str = Field(description="The name of conditioning tensor")
    mask: TensorField | None = Field(
        default=None,
        description="The mask associated with this conditioning tensor. Excluded regions should be set to False, "
        "included regions should be set to True.",
    )


@invocation_output("conditioning_output")
class ConditioningOutput(BaseInvocationOutput):
    """Base class for nodes that output a single conditioning tensor"""

    conditioning: ConditioningField = OutputField(description="Conditioning tensor")


@invocation("compel", title="Prompt - SD1.5", tags=["prompt", "compel"], category="conditioning", version="1.2.1")
class CompelInvocation(BaseInvocation):
    """Parse prompt using compel package to conditioning.

    The text encoder runs with the CLIP field's LoRAs added and its skipped layers left out, both undone after.
    """

    prompt: str = InputField(default="", description="Prompt to be parsed by Compel to create a conditioning tensor")
    clip: CLIPField = InputField(title="CLIP", description=ModelFieldDescriptions.clip)
    mask: TensorField | None = InputField(default=None, description=MASK_DESCRIPTION)

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        from nodeloom.backend.stable_diffusion.prompts import encode_prompt

        with ExitStack() as stack:
            tokenizer, text_encoder, prompt = _prompt_encoder(context, stack, self.clip, self.prompt, "text_encoder")
            context.util.signal_progress("Building conditioning")
            conditioning = encode_prompt(tokenizer, text_encoder, prompt, self.clip.skipped_layers)
        name = context.conditioning.save(conditioning.to_stored())
        return ConditioningOutput(conditioning=ConditioningField(conditioning_name=name, mask=self.mask))


@invocation_output("clip_skip_output")
class CLIPSkipInvocationOutput(BaseInvocationOutput):
    """CLIP skip node output"""

    clip: CLIPField | None = OutputField(default=None, description=ModelFieldDescriptions.clip, title="CLIP")


@invocation(
    "clip_skip",
    title="Apply CLIP Skip - SD1.5, SDXL",
    tags=["clipskip", "clip", "skip"],
    category="prompt",
    version="1.1.1",
)
class CLIPSkipInvocation(BaseInvocation):
    """Skip layers in clip text_encoder model.

    The count adds to the layers the CLIP field already skips; compel leaves them out when it encodes.
    """

    clip: CLIPField = InputField(description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP")
    skipped_layers: int = InputField(default=0, ge=0, description="Number of layers to skip in text encoder")

    def invoke(self, context: InvocationContext) -> CLIPSkipInvocationOutput:
        skipped = self.clip.skipped_layers + self.skipped_layers
        return CLIPSkipInvocationOutput(clip=self.clip.model_copy(update={"skipped_layers": skipped}))


def _encode_sdxl_part(
    context: InvocationContext,
    clip: CLIPField,
    prompt: str,
    target: Literal["text_encoder", "text_encoder_2"],
    pooled: bool,
    zero_on_empty: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One SDXL text encoder's embeddings of `prompt` (and its pooled embeddings when `pooled`), with the CLIP
    field's LoRAs on while it runs. With `zero_on_empty`, an empty prompt is zeros, as the SDXL pipeline makes an
    absent negative prompt (`force_zeros_for_empty_prompt`) and InvokeAI makes an empty one."""
    import torch

    from nodeloom.backend.stable_diffusion.prompts import encode_sdxl_prompt_part

    with ExitStack() as stack:
        if zero_on_empty and prompt == "":
            text_encoder = stack.enter_context(context.models.load(clip.text_encoder))
            config = text_encoder.config
            embeds = torch.zeros((1, config.max_position_embeddings, config.hidden_size), dtype=text_encoder.dtype)
            return embeds, torch.zeros((1, config.projection_dim), dtype=embeds.dtype) if pooled else None
        tokenizer, text_encoder, prompt = _prompt_encoder(context, stack, clip, prompt, target)
        return encode_sdxl_prompt_part(tokenizer, text_encoder, prompt, clip.skipped_layers, pooled)


def _save_sdxl_conditioning(
    context: InvocationContext,
    embeds: torch.Tensor,
    pooled: torch.Tensor | None,
    time_ids: Sequence[float],
    mask: TensorField | None,
) -> ConditioningOutput:
    import torch

    from nodeloom.backend.stable_diffusion.prompts import TextConditioning

    assert pooled is not None, "the second text encoder's embeddings are encoded with their pooled ones"
    conditioning = TextConditioning(embeds=embeds, pooled_embeds=pooled, add_time_ids=torch.tensor([time_ids]))
    name = context.conditioning.save(conditioning.to_stored())
    return ConditioningOutput(conditioning=ConditioningField(conditioning_name=name, mask=mask))


@invocation(
    "sdxl_compel_prompt",
    title="Prompt - SDXL",
    tags=["sdxl", "compel", "prompt"],
    category="conditioning",
    version="1.2.1",
)
class SDXLCompelPromptInvocation(BaseInvocation):
    """Parse prompt using compel package to conditioning.

    The prompt goes through both text encoders, the style (the prompt when empty) through the second only; their
    penultimate hidden states are joined along the width, and the second's pooled embeddings and the size and crop
    fields become the UNet's added conditioning.
    """

    prompt: str = InputField(default="", description="Prompt to be parsed by Compel to create a conditioning tensor")
    style: str = InputField(default="", description="Prompt to be parsed by Compel to create a conditioning tensor")
    original_width: int = InputField(default=1024, description=ORIGINAL_WIDTH)
    original_height: int = InputField(default=1024, description=ORIGINAL_HEIGHT)
    crop_top: int = InputField(default=0, description=CROP_TOP)
    crop_left: int = InputField(default=0, description=CROP_LEFT)
    target_width: int = InputField(default=1024, description="The width of the image to make (SDXL's conditioning)")
    target_height: int = InputField(default=1024, description="The height of the image to make (SDXL's conditioning)")
    clip: CLIPField = InputField(description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 1")
    clip2: CLIPField = InputField(description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 2")
    mask: TensorField | None = InputField(default=None, description=MASK_DESCRIPTION)

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        import torch

        context.util.signal_progress("Building conditioning")
        first, _ = _encode_sdxl_part(context, self.clip, self.prompt, "text_encoder", False, True)
        second, pooled = _encode_sdxl_part(
            context, self.clip2, self.style.strip() or self.prompt, "text_encoder_2", True, True
        )
        # A long prompt may take more 77-token chunks in one encoder than in the other: zeros fill the shorter.
        tokens = max(first.shape[1], second.shape[1])
        first, second = (
            torch.nn.functional.pad(embeds, (0, 0, 0, tokens - embeds.shape[1])) for embeds in (first, second)
        )
        time_ids = [
            self.original_height,
            self.original_width,
            self.crop_top,
            self.crop_left,
            self.target_height,
            self.target_width,
        ]
        return _save_sdxl_conditioning(context, torch.cat([first, second], dim=-1), pooled, time_ids, self.mask)


@invocation(
    "sdxl_refiner_compel_prompt",
    title="Prompt - SDXL Refiner",
    tags=["sdxl", "compel", "prompt"],
    category="conditioning",
    version="1.1.2",
)
class SDXLRefinerCompelPromptInvocation(BaseInvocation):
    """Parse prompt using compel package to conditioning.

    The style goes through the refiner's one text encoder (SDXL's second); the original size, crop and aesthetic
    score become its added conditioning.
    """

    style: str = InputField(default="", description="Prompt to be parsed by Compel to create a conditioning tensor")
    original_width: int = InputField(default=1024, description=ORIGINAL_WIDTH)
    original_height: int = InputField(default=1024, description=ORIGINAL_HEIGHT)
    crop_top: int = InputField(default=0, description=CROP_TOP)
    crop_left: int = InputField(default=0, description=CROP_LEFT)
    aesthetic_score: float = InputField(
        default=6.0, description="The aesthetic score to apply to the conditioning tensor"
    )
    clip2: CLIPField = InputField(description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 2")

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        context.util.signal_progress("Building conditioning")
        embeds, pooled = _encode_sdxl_part(context, self.clip2, self.style, "text_encoder_2", True, False)
        time_ids = [self.original_height, self.original_width, self.crop_top, self.crop_left, self.aesthetic_score]
        return _save_sdxl_conditioning(context, embeds, pooled, time_ids, None)
