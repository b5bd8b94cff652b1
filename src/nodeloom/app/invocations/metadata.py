"""Metadata nodes, with InvokeAI's type strings, field names and outputs.

`core_metadata` gathers a generation's settings into one `MetadataField`, which an image node embeds in its PNG
(its `metadata` input, see `mixins`); `metadata_item`, `metadata` and `merge_metadata` build metadata of any
shape; the `metadata_to_*` nodes read a value back out of it, so that a graph can be rebuilt from an image's
settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nodeloom import __version__
from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import ImageField, Input, InputField, ModelIdentifierField, OutputField
from nodeloom.app.invocations.mixins import WithMetadata
from nodeloom.app.invocations.model import (
    CLIPField,
    LoRAField,
    LoRALoaderOutput,
    ModelFieldDescriptions,
    UNetField,
    VAEField,
    VAEOutput,
    main_model_parts,
)
from nodeloom.app.invocations.primitives import BooleanOutput, FloatOutput, IntegerOutput, StringOutput
from nodeloom.app.services.images.images_common import MetadataField
from nodeloom.app.services.model_records.model_records_common import UnknownModelError
from nodeloom.backend.model_manager.taxonomy import ModelType, SubModelType
from nodeloom.backend.stable_diffusion.schedulers import SCHEDULER_NAME_VALUES

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext

APP_VERSION_KEY = "app_version"
"""The key under which the metadata nodes record the version of the server that made the metadata."""

LABEL = "Label for this metadata item"
VALUE = "The value for this metadata item (may be any type)"

CONTROLNET_MODE_VALUES = Literal["balanced", "more_prompt", "more_control", "unbalanced"]
CONTROLNET_RESIZE_VALUES = Literal["just_resize", "crop_resize", "fill_resize", "just_resize_simple"]

GENERATION_MODES = Literal[
    "txt2img",
    "img2img",
    "inpaint",
    "outpaint",
    "sdxl_txt2img",
    "sdxl_img2img",
    "sdxl_inpaint",
    "sdxl_outpaint",
    "flux_txt2img",
    "flux_img2img",
    "flux_inpaint",
    "flux_outpaint",
    "sd3_txt2img",
    "sd3_img2img",
    "sd3_inpaint",
    "sd3_outpaint",
    "cogview4_txt2img",
    "cogview4_img2img",
    "cogview4_inpaint",
    "cogview4_outpaint",
]


class MetadataItemField(BaseModel):
    label: str = Field(description=LABEL)
    value: Any = Field(description=VALUE)


class LoRAMetadataField(BaseModel):
    """LoRA Metadata Field"""

    model: ModelIdentifierField = Field(description=ModelFieldDescriptions.lora_model)
    weight: float = Field(description=ModelFieldDescriptions.lora_weight)


class IPAdapterMetadataField(BaseModel):
    """IP Adapter Field, minus the CLIP Vision Encoder model"""

    image: ImageField = Field(description="The IP-Adapter image prompt.")
    ip_adapter_model: ModelIdentifierField = Field(description="The IP-Adapter model.")
    clip_vision_model: Literal["ViT-H", "ViT-G"] = Field(description="The CLIP Vision model")
    method: Literal["full", "style", "composition"] = Field(description="Method to apply IP Weights with")
    weight: float | list[float] = Field(description="The weight given to the IP-Adapter")
    begin_step_percent: float = Field(description="When the IP-Adapter is first applied (% of total steps)")
    end_step_percent: float = Field(description="When the IP-Adapter is last applied (% of total steps)")


class T2IAdapterMetadataField(BaseModel):
    image: ImageField = Field(description="The control image.")
    processed_image: ImageField | None = Field(default=None, description="The control image, after processing.")
    t2i_adapter_model: ModelIdentifierField = Field(description="The T2I-Adapter model to use.")
    weight: float | list[float] = Field(default=1, description="The weight given to the T2I-Adapter")
    begin_step_percent: float = Field(
        default=0, ge=0, le=1, description="When the T2I-Adapter is first applied (% of total steps)"
    )
    end_step_percent: float = Field(
        default=1, ge=0, le=1, description="When the T2I-Adapter is last applied (% of total steps)"
    )
    resize_mode: CONTROLNET_RESIZE_VALUES = Field(default="just_resize", description="The resize mode to use")


class ControlNetMetadataField(BaseModel):
    image: ImageField = Field(description="The control image")
    processed_image: ImageField | None = Field(default=None, description="The control image, after processing.")
    control_model: ModelIdentifierField = Field(description="The ControlNet model to use")
    control_weight: float | list[float] = Field(default=1, description="The weight given to the ControlNet")
    begin_step_percent: float = Field(
        default=0, ge=0, le=1, description="When the ControlNet is first applied (% of total steps)"
    )
    end_step_percent: float = Field(
        default=1, ge=0, le=1, description="When the ControlNet is last applied (% of total steps)"
    )
    control_mode: CONTROLNET_MODE_VALUES = Field(default="balanced", description="The control mode to use")
    resize_mode: CONTROLNET_RESIZE_VALUES = Field(default="just_resize", description="The resize mode to use")


def _versioned(data: MetadataField) -> MetadataField:
    return {**data, APP_VERSION_KEY: __version__}


@invocation_output("metadata_item_output")
class MetadataItemOutput(BaseInvocationOutput):
    """Metadata Item Output"""

    item: MetadataItemField = OutputField(description="Metadata Item")


@invocation("metadata_item", title="Metadata Item", tags=["metadata"], category="metadata", version="1.0.1")
class MetadataItemInvocation(BaseInvocation):
    """Used to create an arbitrary metadata item. Provide "label" and make a connection to "value" to store that
    data as the value."""

    label: str = InputField(description=LABEL)
    value: Any = InputField(description=VALUE, ui_type="AnyField")

    def invoke(self, context: InvocationContext) -> MetadataItemOutput:
        return MetadataItemOutput(item=MetadataItemField(label=self.label, value=self.value))


@invocation_output("metadata_output")
class MetadataOutput(BaseInvocationOutput):
    metadata: MetadataField = OutputField(description="Metadata Dict")


@invocation("metadata", title="Metadata", tags=["metadata"], category="metadata", version="1.0.1")
class MetadataInvocation(BaseInvocation):
    """Takes a MetadataItem or collection of MetadataItems and outputs a MetadataDict."""

    items: list[MetadataItemField] | MetadataItemField = InputField(
        description="A single metadata item or collection of metadata items"
    )

    def invoke(self, context: InvocationContext) -> MetadataOutput:
        items = [self.items] if isinstance(self.items, MetadataItemField) else self.items
        return MetadataOutput(metadata=_versioned({item.label: item.value for item in items}))


@invocation("merge_metadata", title="Metadata Merge", tags=["metadata"], category="metadata", version="1.0.1")
class MergeMetadataInvocation(BaseInvocation):
    """Merged a collection of MetadataDict into a single MetadataDict.

    Where two hold the same key, the later one in the collection wins, as in InvokeAI.
    """

    collection: list[MetadataField] = InputField(description="Collection of Metadata")

    def invoke(self, context: InvocationContext) -> MetadataOutput:
        merged: MetadataField = {}
        for metadata in self.collection:
            merged.update(metadata)
        return MetadataOutput(metadata=merged)


@invocation("core_metadata", title="Core Metadata", tags=["metadata"], category="metadata", version="2.0.0")
class CoreMetadataInvocation(BaseInvocation):
    """Used internally by Invoke to collect metadata for generations.

    Fields it does not know are kept, not refused: InvokeAI's UI adds settings to this node between versions,
    and they belong in the image's metadata all the same.
    """

    model_config = ConfigDict(extra="allow")

    generation_mode: GENERATION_MODES | None = InputField(
        default=None, description="The generation mode that output this image"
    )
    positive_prompt: str | None = InputField(default=None, description="The positive prompt parameter")
    negative_prompt: str | None = InputField(default=None, description="The negative prompt parameter")
    width: int | None = InputField(default=None, description="The width parameter")
    height: int | None = InputField(default=None, description="The height parameter")
    seed: int | None = InputField(default=None, description="The seed used for noise generation")
    rand_device: str | None = InputField(default=None, description="The device used for random number generation")
    cfg_scale: float | None = InputField(default=None, description="The classifier-free guidance scale parameter")
    cfg_rescale_multiplier: float | None = InputField(
        default=None, description="Rescale multiplier for CFG guidance, used for models trained with zero-terminal SNR"
    )
    steps: int | None = InputField(default=None, description="The number of steps used for inference")
    scheduler: str | None = InputField(default=None, description="The scheduler used for inference")
    seamless_x: bool | None = InputField(default=None, description="Whether seamless tiling was used on the X axis")
    seamless_y: bool | None = InputField(default=None, description="Whether seamless tiling was used on the Y axis")
    clip_skip: int | None = InputField(default=None, description="The number of skipped CLIP layers")
    model: ModelIdentifierField | None = InputField(default=None, description="The main model used for inference")
    controlnets: list[ControlNetMetadataField] | None = InputField(
        default=None, description="The ControlNets used for inference"
    )
    ipAdapters: list[IPAdapterMetadataField] | None = InputField(
        default=None, description="The IP Adapters used for inference"
    )
    t2iAdapters: list[T2IAdapterMetadataField] | None = InputField(
        default=None, description="The IP Adapters used for inference"
    )
    loras: list[LoRAMetadataField] | None = InputField(default=None, description="The LoRAs used for inference")
    strength: float | None = InputField(default=None, description="The strength used for latents-to-latents")
    init_image: str | None = InputField(default=None, description="The name of the initial image")
    vae: ModelIdentifierField | None = InputField(
        default=None, description="The VAE used for decoding, if the main model's default was not used"
    )
    hrf_enabled: bool | None = InputField(default=None, description="Whether or not high resolution fix was enabled.")
    hrf_method: str | None = InputField(default=None, description="The high resolution fix upscale method.")
    hrf_strength: float | None = InputField(
        default=None, description="The high resolution fix img2img strength used in the upscale pass."
    )
    positive_style_prompt: str | None = InputField(default=None, description="The positive style prompt parameter")
    negative_style_prompt: str | None = InputField(default=None, description="The negative style prompt parameter")
    refiner_model: ModelIdentifierField | None = InputField(default=None, description="The SDXL Refiner model used")
    refiner_cfg_scale: float | None = InputField(
        default=None, description="The classifier-free guidance scale parameter used for the refiner"
    )
    refiner_steps: int | None = InputField(default=None, description="The number of steps used for the refiner")
    refiner_scheduler: str | None = InputField(default=None, description="The scheduler used for the refiner")
    refiner_positive_aesthetic_score: float | None = InputField(
        default=None, description="The aesthetic score used for the refiner"
    )
    refiner_negative_aesthetic_score: float | None = InputField(
        default=None, description="The aesthetic score used for the refiner"
    )
    refiner_start: float | None = InputField(default=None, description="The start value used for refiner denoising")

    def invoke(self, context: InvocationContext) -> MetadataOutput:
        settings = self.model_dump(
            mode="json", exclude_none=True, exclude={"id", "type", "is_intermediate", "use_cache"}
        )
        return MetadataOutput(metadata=_versioned(settings))


@invocation("metadata_from_image", title="Metadata From Image", tags=["metadata"], category="metadata", version="1.0.1")
class MetadataFromImageInvocation(BaseInvocation):
    """The metadata embedded in an image; empty where it has none."""

    image: ImageField = InputField(description="The image to process")

    def invoke(self, context: InvocationContext) -> MetadataOutput:
        return MetadataOutput(metadata=context.images.get_metadata(self.image.image_name) or {})


CUSTOM_LABEL = "* CUSTOM LABEL *"
"""The `label` choice that reads the key named by `custom_label` instead of a core setting."""

CORE_LABELS = Literal[
    "* CUSTOM LABEL *",
    "positive_prompt",
    "positive_style_prompt",
    "negative_prompt",
    "negative_style_prompt",
    "width",
    "height",
    "seed",
    "cfg_scale",
    "cfg_rescale_multiplier",
    "steps",
    "scheduler",
    "clip_skip",
    "model",
    "vae",
    "seamless_x",
    "seamless_y",
    "guidance",
    "cfg_scale_start_step",
    "cfg_scale_end_step",
]
CORE_LABELS_STRING = Literal[
    "* CUSTOM LABEL *", "positive_prompt", "positive_style_prompt", "negative_prompt", "negative_style_prompt"
]
CORE_LABELS_INTEGER = Literal[
    "* CUSTOM LABEL *", "width", "height", "seed", "steps", "clip_skip", "cfg_scale_start_step", "cfg_scale_end_step"
]
CORE_LABELS_FLOAT = Literal["* CUSTOM LABEL *", "cfg_scale", "cfg_rescale_multiplier", "guidance"]
CORE_LABELS_BOOL = Literal["* CUSTOM LABEL *", "seamless_x", "seamless_y"]
CORE_LABELS_SCHEDULER = Literal["* CUSTOM LABEL *", "scheduler"]
CORE_LABELS_MODEL = Literal["* CUSTOM LABEL *", "model"]
CORE_LABELS_VAE = Literal["* CUSTOM LABEL *", "vae"]


class _LabelledMetadata(BaseInvocation, WithMetadata):
    """A node that reads or writes one key of its metadata: a core setting's `label`, or its `custom_label`."""

    label: str
    custom_label: str | None = InputField(default=None, description=LABEL, input=Input.Direct)

    @model_validator(mode="after")
    def _custom_label_given(self) -> _LabelledMetadata:
        if self.label == CUSTOM_LABEL and not (self.custom_label or "").strip():
            raise ValueError("You must enter a Custom Label")
        return self

    @property
    def key(self) -> str:
        return str(self.custom_label) if self.label == CUSTOM_LABEL else self.label

    def read(self, default: Any) -> Any:
        """The value under the node's key, or `default` where the metadata has none."""
        return (self.metadata or {}).get(self.key, default)


@invocation(
    "metadata_item_linked", title="Metadata Item Linked", tags=["metadata"], category="metadata", version="1.0.1"
)
class MetadataItemLinkedInvocation(_LabelledMetadata):
    """Used to Create/Add/Update a value into a metadata label"""

    label: CORE_LABELS = InputField(default=CUSTOM_LABEL, description=LABEL, input=Input.Direct)
    value: Any = InputField(description=VALUE, ui_type="AnyField")

    def invoke(self, context: InvocationContext) -> MetadataOutput:
        # A VAE is recorded as its model, which is what `metadata_to_vae` reads back.
        value = self.value.vae if isinstance(self.value, VAEField) else self.value
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        return MetadataOutput(metadata=_versioned({**(self.metadata or {}), self.key: value}))


@invocation("metadata_to_string", title="Metadata To String", tags=["metadata"], category="metadata", version="1.0.0")
class MetadataToStringInvocation(_LabelledMetadata):
    """Extracts a string value of a label from metadata"""

    label: CORE_LABELS_STRING = InputField(default=CUSTOM_LABEL, description=LABEL, input=Input.Direct)
    default_value: str = InputField(description="The default string to use if not found in the metadata")

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=str(self.read(self.default_value)))


@invocation("metadata_to_integer", title="Metadata To Integer", tags=["metadata"], category="metadata", version="1.0.0")
class MetadataToIntegerInvocation(_LabelledMetadata):
    """Extracts an integer value of a label from metadata"""

    label: CORE_LABELS_INTEGER = InputField(default=CUSTOM_LABEL, description=LABEL, input=Input.Direct)
    default_value: int = InputField(description="The default integer to use if not found in the metadata")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=int(self.read(self.default_value)))


@invocation("metadata_to_float", title="Metadata To Float", tags=["metadata"], category="metadata", version="1.1.0")
class MetadataToFloatInvocation(_LabelledMetadata):
    """Extracts a Float value of a label from metadata"""

    label: CORE_LABELS_FLOAT = InputField(default=CUSTOM_LABEL, description=LABEL, input=Input.Direct)
    default_value: float = InputField(description="The default float to use if not found in the metadata")

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=float(self.read(self.default_value)))


@invocation("metadata_to_bool", title="Metadata To Bool", tags=["metadata"], category="metadata", version="1.0.0")
class MetadataToBoolInvocation(_LabelledMetadata):
    """Extracts a Boolean value of a label from metadata"""

    label: CORE_LABELS_BOOL = InputField(default=CUSTOM_LABEL, description=LABEL, input=Input.Direct)
    default_value: bool = InputField(description="The default bool to use if not found in the metadata")

    def invoke(self, context: InvocationContext) -> BooleanOutput:
        return BooleanOutput(value=bool(self.read(self.default_value)))


@invocation_output("scheduler_output")
class SchedulerOutput(BaseInvocationOutput):
    scheduler: SCHEDULER_NAME_VALUES = OutputField(description="Scheduler to use during inference")


@invocation(
    "metadata_to_scheduler", title="Metadata To Scheduler", tags=["metadata"], category="metadata", version="1.0.1"
)
class MetadataToSchedulerInvocation(_LabelledMetadata):
    """Extracts a Scheduler value of a label from metadata"""

    label: CORE_LABELS_SCHEDULER = InputField(default="scheduler", description=LABEL, input=Input.Direct)
    default_value: SCHEDULER_NAME_VALUES = InputField(
        default="euler", description="The default scheduler to use if not found in the metadata"
    )

    def invoke(self, context: InvocationContext) -> SchedulerOutput:
        return SchedulerOutput(scheduler=self.read(self.default_value))


def find_model_key(context: InvocationContext, recorded: Any, default_key: str, model_type: ModelType) -> str:
    """The key of the installed model that `recorded` (a model as metadata holds it) names, else `default_key`.

    As in InvokeAI, a model is found by its key first, then by its name, since a model installed again on
    another server has the same name and a new key.
    """
    if not isinstance(recorded, dict):
        return default_key
    key = recorded.get("key")
    if isinstance(key, str) and context.models.exists(key):
        return key
    for name in (recorded.get("name"), recorded.get("model_name")):
        if isinstance(name, str):
            found = context.models.search_by_attrs(name=name, type=model_type)
            if found:
                return found[0].key
    return default_key


def get_model(context: InvocationContext, key: str) -> ModelIdentifierField:
    """The identifier of the installed model `key`; `UnknownModelError` if there is none."""
    if not context.models.exists(key):
        raise UnknownModelError(key)
    return ModelIdentifierField.from_config(context.models.get_config(key))


@invocation_output("metadata_to_model_output")
class MetadataToModelOutput(BaseInvocationOutput):
    """String to main model output"""

    model: ModelIdentifierField = OutputField(description=ModelFieldDescriptions.main_model, title="Model")
    name: str = OutputField(description="Model Name", title="Name")
    unet: UNetField = OutputField(description=ModelFieldDescriptions.unet, title="UNet")
    vae: VAEField = OutputField(description=ModelFieldDescriptions.vae, title="VAE")
    clip: CLIPField = OutputField(description=ModelFieldDescriptions.clip, title="CLIP")


@invocation("metadata_to_model", title="Metadata To Model", tags=["metadata"], category="metadata", version="1.3.0")
class MetadataToModelInvocation(_LabelledMetadata):
    """Extracts a Model value of a label from metadata"""

    label: CORE_LABELS_MODEL = InputField(default="model", description=LABEL, input=Input.Direct)
    default_value: ModelIdentifierField = InputField(
        description="The default model to use if not found in the metadata"
    )

    def invoke(self, context: InvocationContext) -> MetadataToModelOutput:
        key = find_model_key(context, self.read(None), self.default_value.key, ModelType.Main)
        model = get_model(context, key)

        unet, clip, vae = main_model_parts(model)
        return MetadataToModelOutput(model=model, name=f"{model.base}: {model.name}", unet=unet, clip=clip, vae=vae)


@invocation("metadata_to_vae", title="Metadata To VAE", tags=["metadata"], category="metadata", version="1.2.1")
class MetadataToVAEInvocation(_LabelledMetadata):
    """Extracts a VAE value of a label from metadata"""

    label: CORE_LABELS_VAE = InputField(default="vae", description=LABEL, input=Input.Direct)
    default_value: VAEField = InputField(description="The default VAE to use if not found in the metadata")

    def invoke(self, context: InvocationContext) -> VAEOutput:
        key = find_model_key(context, self.read(None), self.default_value.vae.key, ModelType.VAE)
        model = get_model(context, key).model_copy(update={"submodel_type": SubModelType.VAE})
        return VAEOutput(vae=VAEField(vae=model))


def recorded_loras(context: InvocationContext, metadata: MetadataField | None, key: str) -> list[LoRAField]:
    """The installed LoRAs that the metadata's list under `key` names, with their weights; others are skipped."""
    loras: list[LoRAField] = []
    recorded = (metadata or {}).get(key, [])
    for entry in recorded if isinstance(recorded, list) else []:
        if not isinstance(entry, dict):
            continue
        # InvokeAI's UI records a LoRA's model under `model`; older versions under `lora`.
        model_key = find_model_key(context, entry.get("model"), "", ModelType.LoRA) or find_model_key(
            context, entry.get("lora"), "", ModelType.LoRA
        )
        if model_key:
            loras.append(LoRAField(lora=get_model(context, model_key), weight=float(entry["weight"])))
    return loras


@invocation("metadata_to_loras", title="Metadata To LoRAs", tags=["metadata"], category="metadata", version="1.1.1")
class MetadataToLorasInvocation(BaseInvocation, WithMetadata):
    """Extracts a Loras value of a label from metadata"""

    unet: UNetField | None = InputField(
        default=None, description=ModelFieldDescriptions.unet, input=Input.Connection, title="UNet"
    )
    clip: CLIPField | None = InputField(
        default=None, description=ModelFieldDescriptions.clip, input=Input.Connection, title="CLIP"
    )

    def invoke(self, context: InvocationContext) -> LoRALoaderOutput:
        unet, clip = self.unet, self.clip
        for lora in recorded_loras(context, self.metadata, "loras"):
            # A LoRA already applied is left as it is, as in InvokeAI: applying it twice would double it.
            if unet is not None and all(applied.lora.key != lora.lora.key for applied in unet.loras):
                unet = unet.model_copy(update={"loras": [*unet.loras, lora]})
            if clip is not None and all(applied.lora.key != lora.lora.key for applied in clip.loras):
                clip = clip.model_copy(update={"loras": [*clip.loras, lora]})
        return LoRALoaderOutput(unet=unet, clip=clip)


@invocation_output("metadata_to_lora_collection_output")
class MetadataToLorasCollectionOutput(BaseInvocationOutput):
    """Model loader output"""

    lora: list[LoRAField] = OutputField(description="Collection of LoRA model and weights", title="LoRAs")


@invocation(
    "metadata_to_lora_collection",
    title="Metadata To LoRA Collection",
    tags=["metadata"],
    category="metadata",
    version="1.1.0",
)
class MetadataToLorasCollectionInvocation(BaseInvocation, WithMetadata):
    """Extracts Lora(s) from metadata into a collection"""

    custom_label: str = InputField(default="loras", description=LABEL, input=Input.Direct)
    loras: LoRAField | list[LoRAField] | None = InputField(
        default_factory=list, description="LoRA models and weights. May be a single LoRA or collection.", title="LoRAs"
    )

    def invoke(self, context: InvocationContext) -> MetadataToLorasCollectionOutput:
        given = [self.loras] if isinstance(self.loras, LoRAField) else self.loras or []
        collected: dict[str, LoRAField] = {}
        for lora in [*given, *recorded_loras(context, self.metadata, self.custom_label.strip() or "loras")]:
            collected.setdefault(lora.lora.key, lora)
        return MetadataToLorasCollectionOutput(lora=list(collected.values()))
