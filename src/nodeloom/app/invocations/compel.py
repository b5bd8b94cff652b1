"""The prompt node: text, with compel's weighting syntax, to conditioning that later nodes load by name."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import Input, InputField, OutputField
from nodeloom.app.invocations.model import CLIPField, ModelFieldDescriptions, lock_loras

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


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
    mask: TensorField | None = InputField(
        default=None, description="A mask defining the region that this conditioning prompt applies to."
    )

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        from nodeloom.backend.stable_diffusion.lora import apply_loras
        from nodeloom.backend.stable_diffusion.prompts import encode_prompt

        with ExitStack() as stack:
            text_encoder = stack.enter_context(context.models.load(self.clip.text_encoder))
            tokenizer = stack.enter_context(context.models.load(self.clip.tokenizer))
            stack.enter_context(apply_loras(text_encoder, lock_loras(context, stack, self.clip.loras), "text_encoder"))
            context.util.signal_progress("Building conditioning")
            conditioning = encode_prompt(tokenizer, text_encoder, self.prompt, self.clip.skipped_layers)
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
