"""Names of stored objects, and the errors of the object stores."""

from __future__ import annotations

import re

from nodeloom.app.services.names.names_common import UUID4_PATTERN
from nodeloom.errors import NodeloomError

PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,31}")
"""What a store's name prefix may be: it starts every name the store makes (`{prefix}_{uuid4}`)."""


def object_name_pattern(prefix: str) -> re.Pattern[str]:
    """The only shape a name made by the store with `prefix` has."""
    if PREFIX_PATTERN.fullmatch(prefix) is None:
        raise ValueError(f"Object name prefix {prefix!r} must be 1-32 of a-z and 0-9, starting with a letter")
    return re.compile(f"{prefix}_{UUID4_PATTERN}")


class ObjectSerializerError(NodeloomError):
    """The object store failed."""


class ObjectNotFoundError(ObjectSerializerError):
    """No stored object has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Object '{name}' not found")
        self.name = name


class InvalidObjectNameError(ObjectSerializerError):
    """That is not a name this object store makes."""

    def __init__(self, name: object, prefix: str) -> None:
        super().__init__(f"{name!r} is not an object name: names here are '{prefix}_' followed by a UUID4")
        self.name = name


class UnsupportedObjectError(ObjectSerializerError):
    """The object is neither plain JSON data nor tensors in dicts, lists and tuples, so it cannot be stored."""
