"""Model nodes: a main model's parts, LoRAs, a VAE, and seamless tiling, with InvokeAI's type and field names.

These nodes load nothing: they pass model identifiers (and the LoRAs and seamless axes to apply) to the nodes
that run the models, which load them through `context.models` and patch them only while they hold them.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from nodeloom.app.services.model_records.model_records_common import UnknownModelError
from nodeloom.backend.model_manager.taxonomy import ModelType, SubModelType
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext
    from nodeloom.backend.stable_diffusion.lora import LoRA

SeamlessAxis = Literal["x", "y"]


class ModelFieldDescriptions:
    """Descriptions the model and diffusion nodes share, InvokeAI's wording."""

    unet = "UNet (scheduler, LoRAs)"
    clip = "CLIP (tokenizer, text encoder, LoRAs) and skipped layer count"
    vae = "VAE"
    main_model = "Main model (UNet, VAE, CLIP) to load"
    vae_model = "VAE model to load"
    lora_model = "LoRA model to load"
    lora_weight = "The weight at which the LoRA is applied to each model"


class WrongModelTypeError(NodeloomError):
    """The model chosen for a node is of another type than the node loads."""


class LoRAField(BaseModel):
    lora: ModelIdentifierField = Field(description="Info to load lora model")
    weight: float = Field(description="Weight to apply to lora model")


class UNetField(BaseModel):
    unet: ModelIdentifierField = Field(description="Info to load unet submodel")
    scheduler: ModelIdentifierField = Field(description="Info to load scheduler submodel")
    loras: list[LoRAField] = Field(description="LoRAs to apply on model loading")
    seamless_axes: list[SeamlessAxis] = Field(
        default_factory=list, description='Axes("x" and "y") to which apply seamless'
    )


class CLIPField(BaseModel):
    tokenizer: ModelIdentifierField = Field(description="Info to load tokenizer submodel")
    text_encoder: ModelIdentifierField = Field(description="Info to load text_encoder submodel")
    skipped_layers: int = Field(description="Number of skipped layers in text_encoder")
    loras: list[LoRAField] = Field(description="LoRAs to apply on model loading")


class VAEField(BaseModel):
    vae: ModelIdentifierField = Field(description="Info to load vae submodel")
    seamless_axes: list[SeamlessAxis] = Field(
        default_factory=list, description='Axes("x" and "y") to which apply seamless'
    )


def check_model(context: InvocationContext, model: ModelIdentifierField, model_type: ModelType) -> None:
    """Raises `UnknownModelError` unless the model is installed, `WrongModelTypeError` unless it is a `model_type`."""
    if not context.models.exists(model.key):
        raise UnknownModelError(model.key)
    if model.type != model_type:
        raise WrongModelTypeError(
            f"'{model.name}' is a {model.type.value} model, where a {model_type.value} model is needed"
        )


def lock_loras(context: InvocationContext, stack: ExitStack, loras: list[LoRAField]) -> list[LoRA]:
    """Each LoRA's tensors, locked in the model cache until `stack` closes, with its weight."""
    return [(stack.enter_context(context.models.load(lora.lora)), lora.weight) for lora in loras]


def unique_loras(context: InvocationContext, loras: LoRAField | list[LoRAField] | None) -> list[LoRAField]:
    """The LoRAs of a collection input, each checked to be an installed LoRA; as in InvokeAI, a LoRA that appears
    twice is applied once, at its first weight."""
    given = loras if isinstance(loras, list) else [] if loras is None else [loras]
    applied: dict[str, LoRAField] = {}
    for lora in given:
        check_model(context, lora.lora, ModelType.LoRA)
        applied.setdefault(lora.lora.key, lora)
    return list(applied.values())


def with_loras(
    fields: Mapping[str, UNetField | CLIPField | None], added: list[LoRAField]
) -> dict[str, UNetField | CLIPField | None]:
    """Each field given with `added` after the LoRAs it has; a field not given (None) stays None."""
    return {
        name: None if field is None else field.model_copy(update={"loras": [*field.loras, *added]})
        for name, field in fields.items()
    }


def with_lora(
    fields: Mapping[str, UNetField | CLIPField | None], lora: LoRAField
) -> dict[str, UNetField | CLIPField | None]:
    """`with_loras` for one LoRA, refused where a field given has that LoRA already."""
    for name, field in fields.items():
        if field is not None and any(applied.lora.key == lora.lora.key for applied in field.loras):
            raise ValueError(f'LoRA "{lora.lora.name}" already applied to {name}')
    return with_loras(fields, [lora])


def submodel(model: ModelIdentifierField, submodel_type: SubModelType) -> ModelIdentifierField:
    """The identifier of one part of `model`."""
    return model.model_copy(update={"submodel_type": submodel_type})


def main_model_parts(model: ModelIdentifierField) -> tuple[UNetField, CLIPField, VAEField]:
    """The UNet, CLIP and VAE fields of a main model: its submodels, with no LoRA and no skipped layer."""
    unet = UNetField(
        unet=submodel(model, SubModelType.UNet), scheduler=submodel(model, SubModelType.Scheduler), loras=[]
    )
    clip = CLIPField(
        tokenizer=submodel(model, SubModelType.Tokenizer),
        text_encoder=submodel(model, SubModelType.TextEncoder),
        skipped_layers=0,
        loras=[],
    )
    return unet, clip, VAEField(vae=submodel(model, SubModelType.VAE))


@invocation_output("unet_output")
class UNetOutput(BaseInvocationOutput):
    """Base class for invocations that output a UNet field."""

    unet: UNetField = OutputField(description=ModelFieldDescriptions.unet, title="UNet")


@invocation_output("vae_output")
class VAEOutput(BaseInvocationOutput):
    """Base class for invocations that output a VAE field"""

    vae: VAEField = OutputField(description=ModelFieldDescriptions.vae, title="VAE")


@invocation_output("clip_output")
class CLIPOutput(BaseInvocationOutput):
    """Base class for invocations that output a CLIP field"""

    clip: CLIPField = OutputField(description=ModelFieldDescriptions.clip, title="CLIP")


@invocation_output("model_loader_output")
class ModelLoaderOutput(UNetOutput, CLIPOutput, VAEOutput):
    """Model loader output"""


@invocation("main_model_loader", title="Main Model", tags=["model"], category="model", version="1.0.3")
class MainModelLoaderInvocation(BaseInvocation):
    """Loads a main model, outputting its submodels."""

    model: ModelIdentifierField = InputField(description=ModelFieldDescriptions.main_model)

    def invoke(self, context: InvocationContext) -> ModelLoaderOutput:
        check_model(context, self.model, ModelType.Main)
        unet, clip, vae = main_model_parts(self.model)
        return ModelLoaderOutput(unet=unet, clip=clip, vae=vae)


@invocation_output("lora_loader_output")
class LoRALoaderOutput(BaseInvocationOutput):
    """Model loader output"""

    unet: UNetField | None = OutputField(default=None, description=ModelFieldDescriptions.unet, title="UNet")
    clip: CLIPField | None = OutputField(default=None, description=ModelFieldDescriptions.clip, title="CLIP")


@invocation("lora_loader", title="LoRA", tags=["model"], category="model", version="1.0.3")
class LoRALoaderInvocation(BaseInvocation):
    """Apply selected lora to unet and text_encoder.

    The LoRA is recorded on the fields; the nodes that run the UNet (denoise_latents) and the text encoder
    (compel) add its weights while they hold the model and take them off after, so the cached model stays clean.
    """

    lora: ModelIdentifierField = InputField(description=ModelFieldDescriptions.lora_model, title="LoRA")
    weight: float = InputField(default=0.75, description=ModelFieldDescriptions.lora_weight)
    unet: UNetField | None = InputField(
        default=None, description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet"
    )
    clip: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP"
    )

    def invoke(self, context: InvocationContext) -> LoRALoaderOutput:
        check_model(context, self.lora, ModelType.LoRA)
        applied = LoRAField(lora=self.lora, weight=self.weight)
        return LoRALoaderOutput.model_validate(with_lora({"unet": self.unet, "clip": self.clip}, applied))


@invocation_output("lora_selector_output")
class LoRASelectorOutput(BaseInvocationOutput):
    """Model loader output"""

    lora: LoRAField = OutputField(description="LoRA model and weight", title="LoRA")


@invocation("lora_selector", title="Select LoRA", tags=["model"], category="model", version="1.0.3")
class LoRASelectorInvocation(BaseInvocation):
    """Selects a LoRA model and weight."""

    lora: ModelIdentifierField = InputField(description=ModelFieldDescriptions.lora_model, title="LoRA")
    weight: float = InputField(default=0.75, description=ModelFieldDescriptions.lora_weight)

    def invoke(self, context: InvocationContext) -> LoRASelectorOutput:
        return LoRASelectorOutput(lora=LoRAField(lora=self.lora, weight=self.weight))


@invocation(
    "lora_collection_loader", title="Apply LoRA Collection - SD1.5", tags=["model"], category="model", version="1.1.3"
)
class LoRACollectionLoader(BaseInvocation):
    """Applies a collection of LoRAs to the provided UNet and CLIP models.

    As in InvokeAI, a LoRA that appears twice in the collection is applied once, at its first weight.
    """

    loras: LoRAField | list[LoRAField] | None = InputField(
        default=None, description="LoRA models and weights. May be a single LoRA or collection.", title="LoRAs"
    )
    unet: UNetField | None = InputField(
        default=None, description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet"
    )
    clip: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP"
    )

    def invoke(self, context: InvocationContext) -> LoRALoaderOutput:
        added = unique_loras(context, self.loras)
        return LoRALoaderOutput.model_validate(with_loras({"unet": self.unet, "clip": self.clip}, added))


@invocation("vae_loader", title="VAE", tags=["vae", "model"], category="model", version="1.0.3")
class VAELoaderInvocation(BaseInvocation):
    """Loads a VAE model, outputting a VaeLoaderOutput"""

    vae_model: ModelIdentifierField = InputField(description=ModelFieldDescriptions.vae_model, title="VAE")

    def invoke(self, context: InvocationContext) -> VAEOutput:
        check_model(context, self.vae_model, ModelType.VAE)
        return VAEOutput(vae=VAEField(vae=self.vae_model))


@invocation_output("seamless_output")
class SeamlessModeOutput(BaseInvocationOutput):
    """Modified Seamless Model output"""

    unet: UNetField | None = OutputField(default=None, description=ModelFieldDescriptions.unet, title="UNet")
    vae: VAEField | None = OutputField(default=None, description=ModelFieldDescriptions.vae, title="VAE")


@invocation("seamless", title="Seamless", tags=["seamless", "model"], category="model", version="1.0.1")
class SeamlessModeInvocation(BaseInvocation):
    """Applies the seamless transformation to the Model UNet and VAE.

    The axes are recorded on the fields; denoise_latents and l2i make the convolutions wrap while they run.
    """

    unet: UNetField | None = InputField(
        default=None, description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet"
    )
    vae: VAEField | None = InputField(
        default=None, description=ModelFieldDescriptions.vae_model, input=Input.Connection, title="VAE"
    )
    seamless_y: bool = InputField(default=True, input=Input.Any, description="Specify whether Y axis is seamless")
    seamless_x: bool = InputField(default=True, input=Input.Any, description="Specify whether X axis is seamless")

    def invoke(self, context: InvocationContext) -> SeamlessModeOutput:
        axes: list[SeamlessAxis] = []
        if self.seamless_x:
            axes.append("x")
        if self.seamless_y:
            axes.append("y")
        unet = None if self.unet is None else self.unet.model_copy(update={"seamless_axes": axes})
        vae = None if self.vae is None else self.vae.model_copy(update={"seamless_axes": axes})
        return SeamlessModeOutput(unet=unet, vae=vae)
