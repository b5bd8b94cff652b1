"""Input and output field declarations for invocations."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import PydanticUndefined

from nodeloom.backend.model_manager.configs import AnyModelConfig
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelType, SubModelType


class Input(StrEnum):
    """Where an input's value may come from."""

    Connection = "connection"
    """Only from an edge."""
    Direct = "direct"
    """Only from a value set on the node."""
    Any = "any"
    """From either."""


class FieldKind(StrEnum):
    Input = "input"
    Output = "output"
    NodeAttribute = "node_attribute"


class FieldDescriptions:
    """Descriptions shared by many nodes, so the same field reads the same everywhere."""

    value = "The value"
    collection = "The collection of values"
    num_1 = "The first number"
    num_2 = "The second number"
    item = "The item being collected"
    seed = "The seed for the random number generator"
    decimal_places = "The number of decimal places to round to"
    inclusive_low = "The lower bound, which may be drawn"
    exclusive_high = "The upper bound, which is never drawn"


def _ui_hints(ui_type: str | None, ui_hidden: bool, ui_order: int | None) -> dict[str, Any]:
    """The hints for a UI that an input and an output both take, each only where given."""
    hints: dict[str, Any] = {}
    if ui_type is not None:
        hints["ui_type"] = ui_type
    if ui_hidden:
        hints["ui_hidden"] = True
    if ui_order is not None:
        hints["ui_order"] = ui_order
    return hints


def InputField(
    default: Any = PydanticUndefined,
    *,
    default_factory: Any = PydanticUndefined,
    title: str | None = None,
    description: str | None = None,
    input: Input = Input.Any,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    ui_type: str | None = None,
    ui_hidden: bool = False,
    ui_order: int | None = None,
    ui_choice_labels: dict[str, str] | None = None,
    not_supported: str | None = None,
) -> Any:
    """Declares an invocation input.

    `input` says whether the value comes from an edge, from the node itself, or either. A required input that
    may come from an edge is stored with a `None` default so that a graph can omit it; the engine checks it is
    set before the node runs (see `BaseInvocation.check_required_inputs`).

    `not_supported` names a feature of InvokeAI's node that nodeloom does not implement yet: the input is
    accepted at its default, the value InvokeAI's clients send when they do not use the feature, and any other
    value, or an edge into it, is refused when the graph is enqueued, naming the input and the feature.
    """
    extra: dict[str, Any] = {"field_kind": FieldKind.Input.value, "input": input.value}
    if not_supported is not None:
        extra["not_supported"] = not_supported
    extra.update(_ui_hints(ui_type, ui_hidden, ui_order))
    if ui_choice_labels is not None:
        extra["ui_choice_labels"] = ui_choice_labels
    defaults: dict[str, Any] = {"default": default}
    if default_factory is not PydanticUndefined:
        defaults = {"default_factory": default_factory}
    return Field(
        **defaults,
        title=title,
        description=description,
        ge=ge,
        gt=gt,
        le=le,
        lt=lt,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        json_schema_extra=extra,
    )


def OutputField(
    default: Any = PydanticUndefined,
    *,
    title: str | None = None,
    description: str | None = None,
    ui_type: str | None = None,
    ui_hidden: bool = False,
    ui_order: int | None = None,
) -> Any:
    """Declares an invocation output."""
    extra: dict[str, Any] = {"field_kind": FieldKind.Output.value, **_ui_hints(ui_type, ui_hidden, ui_order)}
    return Field(default=default, title=title, description=description, json_schema_extra=extra)


class ImageField(BaseModel):
    """An image, by name: nodes pass names, never pixels."""

    image_name: str = Field(description="The name of the image")


class BoardField(BaseModel):
    """A board, by id."""

    board_id: str = Field(description="The id of the board")


class ColorField(BaseModel):
    """An RGBA colour, each component from 0 to 255."""

    r: int = Field(ge=0, le=255, description="The red component")
    g: int = Field(ge=0, le=255, description="The green component")
    b: int = Field(ge=0, le=255, description="The blue component")
    a: int = Field(ge=0, le=255, description="The alpha component")

    def tuple(self) -> tuple[int, int, int, int]:
        return (self.r, self.g, self.b, self.a)


class ModelIdentifierField(BaseModel):
    """A model, by key, with what a node needs to know of it without loading its config (InvokeAI's field)."""

    key: str = Field(description="The model's unique key")
    hash: str = Field(description="The model's hash")
    name: str = Field(description="The model's name")
    base: BaseModelType = Field(description="The model's base model type")
    type: ModelType = Field(description="The model's type")
    submodel_type: SubModelType | None = Field(
        default=None, description="The submodel to load, if this is a main model"
    )

    @classmethod
    def from_config(cls, config: AnyModelConfig, submodel_type: SubModelType | None = None) -> ModelIdentifierField:
        return cls(
            key=config.key,
            hash=config.hash,
            name=config.name,
            base=config.base,
            type=config.type,
            submodel_type=submodel_type,
        )
