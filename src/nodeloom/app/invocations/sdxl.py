"""SDXL's model nodes, with InvokeAI's type and field names: the base's and the refiner's loaders, and a LoRA or a
collection of LoRAs on the UNet and both text encoders.

As the SD-1 nodes, they load nothing: the base's CLIP 1 is its `text_encoder`, CLIP 2 its `text_encoder_2`; the
refiner has only the second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import Input, InputField, ModelIdentifierField, OutputField
from nodeloom.app.invocations.model import (
    CLIPField,
    LoRAField,
    ModelFieldDescriptions,
    UNetField,
    VAEField,
    WrongModelTypeError,
    check_model,
    main_model_parts,
    submodel,
    unique_loras,
    with_lora,
    with_loras,
)
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType, SubModelType

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext


@invocation_output("sdxl_model_loader_output")
class SDXLModelLoaderOutput(BaseInvocationOutput):
    """SDXL base model loader output"""

    unet: UNetField = OutputField(description=ModelFieldDescriptions.unet, title="UNet")
    clip: CLIPField = OutputField(description=ModelFieldDescriptions.clip, title="CLIP 1")
    clip2: CLIPField = OutputField(description=ModelFieldDescriptions.clip, title="CLIP 2")
    vae: VAEField = OutputField(description=ModelFieldDescriptions.vae, title="VAE")


@invocation_output("sdxl_refiner_model_loader_output")
class SDXLRefinerModelLoaderOutput(BaseInvocationOutput):
    """SDXL refiner model loader output"""

    unet: UNetField = OutputField(description=ModelFieldDescriptions.unet, title="UNet")
    clip2: CLIPField = OutputField(description=ModelFieldDescriptions.clip, title="CLIP 2")
    vae: VAEField = OutputField(description=ModelFieldDescriptions.vae, title="VAE")


def _sdxl_parts(
    context: InvocationContext, model: ModelIdentifierField, base: BaseModelType
) -> tuple[UNetField, CLIPField, CLIPField, VAEField]:
    """The UNet, first and second CLIP and VAE fields of an installed SDXL main model of `base` (a refiner has no
    first CLIP: its field is made, and left unused)."""
    check_model(context, model, ModelType.Main)
    if model.base != base:
        raise WrongModelTypeError(f"'{model.name}' is a {model.base.value} model, where an {base.value} one is needed")
    unet, clip, vae = main_model_parts(model)
    clip2 = clip.model_copy(
        update={
            "tokenizer": submodel(model, SubModelType.Tokenizer2),
            "text_encoder": submodel(model, SubModelType.TextEncoder2),
        }
    )
    return unet, clip, clip2, vae


@invocation("sdxl_model_loader", title="Main Model - SDXL", tags=["model", "sdxl"], category="model", version="1.0.4")
class SDXLModelLoaderInvocation(BaseInvocation):
    """Loads an sdxl base model, outputting its submodels."""

    model: ModelIdentifierField = InputField(description="SDXL Main model (UNet, VAE, CLIP1, CLIP2) to load")

    def invoke(self, context: InvocationContext) -> SDXLModelLoaderOutput:
        unet, clip, clip2, vae = _sdxl_parts(context, self.model, BaseModelType.StableDiffusionXL)
        return SDXLModelLoaderOutput(unet=unet, clip=clip, clip2=clip2, vae=vae)


@invocation(
    "sdxl_refiner_model_loader",
    title="Refiner Model - SDXL",
    tags=["model", "sdxl", "refiner"],
    category="model",
    version="1.0.4",
)
class SDXLRefinerModelLoaderInvocation(BaseInvocation):
    """Loads an sdxl refiner model, outputting its submodels."""

    model: ModelIdentifierField = InputField(description="SDXL Refiner Main Model (UNet, VAE, CLIP2) to load")

    def invoke(self, context: InvocationContext) -> SDXLRefinerModelLoaderOutput:
        unet, _, clip2, vae = _sdxl_parts(context, self.model, BaseModelType.StableDiffusionXLRefiner)
        return SDXLRefinerModelLoaderOutput(unet=unet, clip2=clip2, vae=vae)


@invocation_output("sdxl_lora_loader_output")
class SDXLLoRALoaderOutput(BaseInvocationOutput):
    """SDXL LoRA Loader Output"""

    unet: UNetField | None = OutputField(default=None, description=ModelFieldDescriptions.unet, title="UNet")
    clip: CLIPField | None = OutputField(default=None, description=ModelFieldDescriptions.clip, title="CLIP 1")
    clip2: CLIPField | None = OutputField(default=None, description=ModelFieldDescriptions.clip, title="CLIP 2")


@invocation("sdxl_lora_loader", title="Apply LoRA - SDXL", tags=["lora", "model"], category="model", version="1.0.5")
class SDXLLoRALoaderInvocation(BaseInvocation):
    """Apply selected lora to unet and text_encoder.

    As `lora_loader`, the LoRA is recorded on each field given; the UNet and each text encoder get its weights
    only while a node runs them.
    """

    lora: ModelIdentifierField = InputField(description=ModelFieldDescriptions.lora_model, title="LoRA")
    weight: float = InputField(default=0.75, description=ModelFieldDescriptions.lora_weight)
    unet: UNetField | None = InputField(
        default=None, description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet"
    )
    clip: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 1"
    )
    clip2: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 2"
    )

    def invoke(self, context: InvocationContext) -> SDXLLoRALoaderOutput:
        check_model(context, self.lora, ModelType.LoRA)
        applied = LoRAField(lora=self.lora, weight=self.weight)
        fields = {"unet": self.unet, "clip": self.clip, "clip2": self.clip2}
        return SDXLLoRALoaderOutput.model_validate(with_lora(fields, applied))


@invocation(
    "sdxl_lora_collection_loader",
    title="Apply LoRA Collection - SDXL",
    tags=["model"],
    category="model",
    version="1.1.3",
)
class SDXLLoRACollectionLoader(BaseInvocation):
    """Applies a collection of SDXL LoRAs to the provided UNet and CLIP models.

    As `lora_collection_loader`, on each of the UNet and both CLIP fields given; a LoRA twice in the collection is
    applied once, at its first weight.
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
    clip2: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP 2"
    )

    def invoke(self, context: InvocationContext) -> SDXLLoRALoaderOutput:
        added = unique_loras(context, self.loras)
        fields = {"unet": self.unet, "clip": self.clip, "clip2": self.clip2}
        return SDXLLoRALoaderOutput.model_validate(with_loras(fields, added))
