"""Invocations (the node types of a graph), their outputs and the registry that knows them all."""

from __future__ import annotations

import builtins
import functools
import inspect
import re
import sys
import typing
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, PydanticSerializationError, core_schema, to_json

from nodeloom.app.invocations.fields import FieldKind, Input
from nodeloom.app.invocations.limits import NodeLimits, check_limit
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
    from nodeloom.app.services.shared.invocation_context import InvocationContext

_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class InvocationRegistryError(NodeloomError):
    """The invocation registry refused a registration."""


class UnknownInvocationTypeError(NodeloomError):
    """No invocation is registered under that type."""


class MissingInputError(NodeloomError):
    """A required input has no value."""

    def __init__(self, node_id: str, field: str, connection_only: bool) -> None:
        source = "connected to an output" if connection_only else "set or connected"
        super().__init__(f"Node '{node_id}': required input '{field}' must be {source}")
        self.node_id = node_id
        self.field = field


class CanceledException(NodeloomError):
    """The session was canceled while this node ran."""


class UnstorableOutputError(NodeloomError):
    """A node's output does not survive the trip to JSON and back, so its session could not be stored."""


@dataclass(frozen=True)
class InputInfo:
    """What the engine needs to know about one input of a node type."""

    name: str
    annotation: Any
    input: Input
    required: bool
    not_supported: str | None = None
    """The InvokeAI feature this input belongs to, where nodeloom does not implement it yet."""


class BaseInvocationOutput(BaseModel):
    """The output of an invocation. Subclasses are registered with `@invocation_output`.

    Floats must be finite, in outputs as in nodes: JSON has no infinity, so pydantic would store one as null, and
    the session holding it could not be read back.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = ""

    output_type: ClassVar[str] = ""

    @classmethod
    def output_fields(cls) -> dict[str, Any]:
        """The output fields (every field but `type`) and their annotations."""
        return {name: f.annotation for name, f in cls.model_fields.items() if name != "type"}


class BaseInvocation(ABC, BaseModel):
    """A node type. Subclasses are registered with `@invocation` and implement `invoke`."""

    model_config = ConfigDict(extra="forbid", validate_default=False, allow_inf_nan=False)

    id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        description="The id of this node. Must be unique among all nodes of a graph.",
    )
    is_intermediate: bool = Field(
        default=False,
        description="Whether this node's output is an intermediate result, to be cleaned up",
        json_schema_extra={"field_kind": FieldKind.NodeAttribute.value},
    )
    use_cache: bool = Field(
        default=True,
        description="Whether this node's output may be served from the invocation cache",
        json_schema_extra={"field_kind": FieldKind.NodeAttribute.value},
    )
    type: str = ""

    invocation_type: ClassVar[str] = ""
    title: ClassVar[str] = ""
    tags: ClassVar[tuple[str, ...]] = ()
    category: ClassVar[str] = ""
    version: ClassVar[str] = "1.0.0"

    @abstractmethod
    def invoke(self, context: InvocationContext) -> BaseInvocationOutput:
        """Does this node's work."""

    @classmethod
    def inputs(cls) -> dict[str, InputInfo]:
        """The node type's inputs by name."""
        return _inputs_of(cls)

    @classmethod
    def output_class(cls) -> builtins.type[BaseInvocationOutput]:
        """The output model `invoke` returns, read from its return annotation."""
        return _output_class_of(cls)

    @model_validator(mode="after")
    def _refuse_unsupported_values(self) -> Self:
        """Refuses a value other than the default for an input that is not supported yet: dropping it would
        make another image than the client asked for."""
        for info in self.inputs().values():
            if info.not_supported is None:
                continue
            default = type(self).model_fields[info.name].get_default(call_default_factory=True)
            if getattr(self, info.name) != default:
                raise ValueError(
                    f"input '{info.name}' ({info.not_supported}) is not supported yet; "
                    f"leave it unset or {to_json(default).decode()}"
                )
        return self

    def check_required_inputs(self) -> None:
        """Raises `MissingInputError` for a required input left without a value."""
        for info in self.inputs().values():
            if info.required and getattr(self, info.name) is None:
                raise MissingInputError(self.id, info.name, info.input is Input.Connection)

    def check_limits(self, limits: NodeLimits) -> None:
        """Raises `LimitExceededError` when an input asks for more work than `limits` allow.

        Checks every text input's length and every collection input's size; a node whose work grows with another
        input extends this. An input left None (an edge fills it when the node runs) is not checked.
        """
        for name in self.inputs():
            value = getattr(self, name)
            if isinstance(value, str):
                self._check_text(name, value, limits)
            elif isinstance(value, list):
                what = f"The size of input '{name}' of node {describe_node(self)}"
                check_limit(what, len(value), limits.max_collection_size, "max_collection_size")
                for item in value:
                    if isinstance(item, str):
                        self._check_text(name, item, limits)

    def _check_text(self, name: str, text: str, limits: NodeLimits) -> None:
        what = f"The length of text input '{name}' of node {describe_node(self)}"
        check_limit(what, len(text), limits.max_string_length, "max_string_length")

    def invoke_internal(
        self, context: InvocationContext, cache: InvocationCacheBase | None = None
    ) -> BaseInvocationOutput:
        """Runs the node the way the engine does: inputs checked (against the limits of the server's settings,
        where there is a server), then the cache, then `invoke`, whose output must be storable."""
        self.check_required_inputs()
        if context.config is not None:
            self.check_limits(context.config)
        if cache is None or not self.use_cache:
            return self._invoke_storable(context)
        key = cache.create_key(self)
        cached = cache.get(key)
        if cached is not None:
            return cached
        output = self._invoke_storable(context)
        cache.save(key, output)
        return output

    def _invoke_storable(self, context: InvocationContext) -> BaseInvocationOutput:
        """`invoke`'s output, once it has survived the trip to JSON and back that storing its session takes.

        An output that would not (an integer of more digits than JSON parsers read, say) fails its node here:
        stored, it would make its session, and every listing holding it, unreadable.
        """
        output = self.invoke(context)
        try:
            type(output).model_validate_json(output.model_dump_json())
        except (ValidationError, PydanticSerializationError) as error:
            raise UnstorableOutputError(
                f"Node {describe_node(self)}: its output cannot be stored, as it does not read back from JSON: "
                f"{describe_error(error)}"
            ) from error
        return output


def describe_node(node: BaseInvocation) -> str:
    """The node's id and type, as messages name a node."""
    return f"'{node.id}' ({node.invocation_type})"


def describe_error(error: ValueError) -> str:
    """A validation error's problems on one line, each with where it is; any other error's message."""
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(
        f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" if problem["loc"] else problem["msg"]
        for problem in error.errors(include_url=False)
    )


@functools.cache
def _inputs_of(cls: type[BaseInvocation]) -> dict[str, InputInfo]:
    inputs: dict[str, InputInfo] = {}
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or extra.get("field_kind") != FieldKind.Input.value:
            continue
        inputs[name] = InputInfo(
            name=name,
            annotation=field.annotation,
            input=Input(str(extra["input"])),
            required=bool(extra.get("orig_required", False)),
            not_supported=typing.cast("str | None", extra.get("not_supported")),
        )
    return inputs


@functools.cache
def _output_class_of(cls: type[BaseInvocation]) -> type[BaseInvocationOutput]:
    # Only the return annotation is resolved: the context's type is imported for type checkers only.
    hint = inspect.get_annotations(cls.invoke).get("return")
    if isinstance(hint, str):
        hint = eval(hint, vars(sys.modules[cls.__module__]))
    if not (isinstance(hint, type) and issubclass(hint, BaseInvocationOutput)):
        raise InvocationRegistryError(
            f"Invocation '{cls.invocation_type}': invoke() must be annotated to return "
            f"a BaseInvocationOutput subclass, not {hint!r}"
        )
    return hint


InvocationT = TypeVar("InvocationT", bound=BaseInvocation)
OutputT = TypeVar("OutputT", bound=BaseInvocationOutput)


class InvocationRegistry:
    """Every node type and output type by its `type` string.

    The module-level `registry` is the one the decorators use; a fresh instance can be made for a test.
    """

    def __init__(self) -> None:
        self._invocations: dict[str, type[BaseInvocation]] = {}
        self._outputs: dict[str, type[BaseInvocationOutput]] = {}
        self._unions: dict[str, Any] = {}

    def register_invocation(self, cls: type[BaseInvocation]) -> None:
        self._register(self._invocations, cls.invocation_type, cls)

    def register_output(self, cls: type[BaseInvocationOutput]) -> None:
        self._register(self._outputs, cls.output_type, cls)

    def _register(self, table: dict[str, Any], type_: str, cls: type) -> None:
        existing = table.get(type_)
        if existing is not None:
            raise InvocationRegistryError(
                f"Type '{type_}' is already registered by {existing.__module__}.{existing.__qualname__}; "
                f"refusing {cls.__module__}.{cls.__qualname__}"
            )
        table[type_] = cls
        self._unions.clear()

    def get_invocation(self, type_: str) -> type[BaseInvocation]:
        try:
            return self._invocations[type_]
        except KeyError:
            raise UnknownInvocationTypeError(f"Unknown node type '{type_}'") from None

    def get_output(self, type_: str) -> type[BaseInvocationOutput]:
        try:
            return self._outputs[type_]
        except KeyError:
            raise UnknownInvocationTypeError(f"Unknown output type '{type_}'") from None

    def invocation_classes(self) -> list[type[BaseInvocation]]:
        return list(self._invocations.values())

    def invocation_union(self) -> Any:
        """The discriminated union of every node type, rebuilt after a registration."""
        return self._union("invocations", self._invocations)

    def output_union(self) -> Any:
        """The discriminated union of every output type, rebuilt after a registration."""
        return self._union("outputs", self._outputs)

    def _union(self, name: str, table: dict[str, Any]) -> Any:
        union = self._unions.get(name)
        if union is None:
            members = tuple(table.values())
            inner = members[0] if len(members) == 1 else typing.cast("Any", typing.Union)[members]
            union = typing.Annotated[inner, Field(discriminator="type")]
            self._unions[name] = union
        return union

    def json_schema(self) -> dict[str, Any]:
        """The JSON schemas of the union of every node type and of the union of every output type."""
        return {
            "invocations": TypeAdapter(self.invocation_union()).json_schema(),
            "outputs": TypeAdapter(self.output_union()).json_schema(),
        }

    def validate_invocation(self, data: Any) -> BaseInvocation:
        """A node from its JSON form, typed by its `type`."""
        if isinstance(data, BaseInvocation):
            return data
        if not isinstance(data, dict):
            raise ValueError("a node must be an object with a 'type'")
        type_ = data.get("type")
        if not isinstance(type_, str):
            raise ValueError("a node needs a 'type' string")
        return self.get_invocation(type_).model_validate(data)

    def validate_output(self, data: Any) -> BaseInvocationOutput:
        """An output from its JSON form, typed by its `type`."""
        if isinstance(data, BaseInvocationOutput):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValueError("an output must be an object with a 'type' string")
        return self.get_output(data["type"]).model_validate(data)


registry = InvocationRegistry()


def _add_type_field(cls: type[BaseModel], type_: str) -> None:
    annotation = typing.cast("Any", Literal)[type_]
    cls.__annotations__["type"] = annotation
    cls.__pydantic_fields__["type"] = FieldInfo.from_annotated_attribute(annotation, type_)


def _relax_connectable_inputs(cls: type[BaseInvocation]) -> None:
    """Lets a graph omit a required input that an edge may fill: it is checked before the node runs."""
    for field in cls.__pydantic_fields__.values():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or extra.get("field_kind") != FieldKind.Input.value:
            continue
        if extra["input"] == Input.Direct.value or not field.is_required():
            continue
        extra["orig_required"] = True
        field.default = None
        field.default_factory = None
        # None must also validate, not only be the default: a stored graph holds the input as null until the
        # engine fills it.
        field.annotation = typing.cast("Any", typing.Optional)[field.annotation]


def _check_type_string(type_: str, what: str) -> None:
    if not _TYPE_PATTERN.match(type_):
        raise InvocationRegistryError(
            f"{what} type '{type_}' must start with a lowercase letter and hold only a-z, 0-9 and '_'"
        )


def invocation(
    invocation_type: str,
    *,
    title: str | None = None,
    tags: list[str] | None = None,
    category: str | None = None,
    version: str = "1.0.0",
    use_cache: bool = True,
    registry_: InvocationRegistry | None = None,
) -> Callable[[type[InvocationT]], type[InvocationT]]:
    """Registers a node type under `invocation_type`."""
    target = registry_ or registry

    def wrapper(cls: type[InvocationT]) -> type[InvocationT]:
        _check_type_string(invocation_type, "Invocation")
        if not re.match(r"^\d+\.\d+\.\d+$", version):
            raise InvocationRegistryError(f"Invocation '{invocation_type}': version '{version}' is not semver")
        cls.invocation_type = invocation_type
        cls.title = title or cls.__name__
        cls.tags = tuple(tags or ())
        cls.category = category or ""
        cls.version = version
        _add_type_field(cls, invocation_type)
        cls.__pydantic_fields__["use_cache"].default = use_cache
        _relax_connectable_inputs(cls)
        cls.model_config["json_schema_extra"] = {
            "title": cls.title,
            "tags": list(cls.tags),
            "category": cls.category,
            "version": version,
            "class": "invocation",
        }
        cls.model_rebuild(force=True)
        target.register_invocation(cls)
        return cls

    return wrapper


def invocation_output(
    output_type: str, *, registry_: InvocationRegistry | None = None
) -> Callable[[type[OutputT]], type[OutputT]]:
    """Registers an output type under `output_type`."""
    target = registry_ or registry

    def wrapper(cls: type[OutputT]) -> type[OutputT]:
        _check_type_string(output_type, "Output")
        cls.output_type = output_type
        _add_type_field(cls, output_type)
        cls.model_config["json_schema_extra"] = {"class": "output"}
        cls.model_rebuild(force=True)
        target.register_output(cls)
        return cls

    return wrapper


def _typed(validate: Callable[[Any], BaseModel]) -> Callable[[Any], BaseModel]:
    def validator(value: Any) -> BaseModel:
        try:
            return validate(value)
        except UnknownInvocationTypeError as e:
            raise PydanticCustomError("unknown_type", str(e)) from None

    return validator


def _dump(value: BaseModel, info: core_schema.SerializationInfo) -> Any:
    return value.model_dump(mode=info.mode, exclude_none=bool(info.exclude_none))


@dataclass(frozen=True)
class _AnyRegistered:
    """A node or an output of any registered type: validated by its `type`, serialised with all of its fields.

    `validate` and `union` are the registry's own, read each time, so a type registered later is known.
    """

    validate: Callable[[Any], BaseModel]
    union: Callable[[], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _typed(self.validate),
            serialization=core_schema.plain_serializer_function_ser_schema(_dump, info_arg=True),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(TypeAdapter(self.union()).core_schema)


AnyInvocation = Annotated[BaseInvocation, _AnyRegistered(registry.validate_invocation, registry.invocation_union)]
AnyInvocationOutput = Annotated[BaseInvocationOutput, _AnyRegistered(registry.validate_output, registry.output_union)]
