"""Objects stored as files: JSON for plain data, `torch.save` for tensors. Never pickle.

Why no pickle: loading a pickle runs whatever code the file names, and anything that can write to the
outputs folder could plant one. Plain data goes to JSON. Tensors, alone or in dicts, lists and tuples, go
through `torch.save` and come back through `torch.load(weights_only=True)`, whose unpickler accepts tensors and
those containers and refuses every other class, so a planted file cannot run code either. Any other object is
refused when it is saved (`UnsupportedObjectError`), not when a later node fails to load it.

torch is imported only on the tensor path: a process that stores no tensor never imports it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import IO, Any, TypeVar

from nodeloom.app.services.object_serializer.object_serializer_base import ObjectSerializerBase
from nodeloom.app.services.object_serializer.object_serializer_common import (
    InvalidObjectNameError,
    ObjectNotFoundError,
    UnsupportedObjectError,
    object_name_pattern,
)
from nodeloom.app.services.shared.atomic_files import remove_temporary_files, write_atomically

T = TypeVar("T")

logger = logging.getLogger(__name__)

_JSON = ".json"
_TORCH = ".pt"
_SCALARS = (str, int, float, bool, type(None))


def _is_json_data(obj: object) -> bool:
    """Whether JSON gives `obj` back equal and of the same types (so no tuples, and only string keys)."""
    if isinstance(obj, _SCALARS):
        return True
    if isinstance(obj, list):
        return all(_is_json_data(item) for item in obj)
    if isinstance(obj, dict):
        return all(isinstance(key, str) and _is_json_data(value) for key, value in obj.items())
    return False


def _is_tensor_tree(obj: object, tensor_type: type) -> bool:
    """Whether `torch.load(weights_only=True)` can give `obj` back: tensors and scalars in dicts, lists, tuples."""
    if isinstance(obj, (tensor_type, *_SCALARS)):
        return True
    if isinstance(obj, list | tuple):
        return all(_is_tensor_tree(item, tensor_type) for item in obj)
    if isinstance(obj, dict):
        return all(isinstance(key, _SCALARS) and _is_tensor_tree(value, tensor_type) for key, value in obj.items())
    return False


class ObjectSerializerDisk(ObjectSerializerBase[T]):
    """Objects as `{folder}/{prefix}_{uuid4}.json` or `.pt`; several stores may share a folder by prefix.

    Each file is written atomically. Tensors load onto the CPU, whatever device they were saved from, so a file
    loads on a machine without that device; a node moves them where it computes.
    """

    def __init__(self, folder: Path, prefix: str) -> None:
        self._name_pattern = object_name_pattern(prefix)
        self._prefix = prefix
        self._folder = folder.resolve()
        self._folder.mkdir(parents=True, exist_ok=True)

    def save(self, obj: T) -> str:
        name = f"{self._prefix}_{uuid.uuid4()}"
        if _is_json_data(obj):
            payload = json.dumps(obj).encode("utf-8")
            write_atomically(self._path(name, _JSON), lambda file: file.write(payload))
            return name
        # A tensor exists only once torch is imported, so without torch in the process this is no tensor tree.
        torch = sys.modules.get("torch")
        if torch is None or not _is_tensor_tree(obj, torch.Tensor):
            raise UnsupportedObjectError(
                f"Cannot store a {type(obj).__module__}.{type(obj).__qualname__}: only JSON data (dicts with "
                "string keys, lists, strings, numbers, booleans, None) or tensors in dicts, lists and tuples"
            )
        write_atomically(self._path(name, _TORCH), lambda file: torch.save(obj, file))
        return name

    def load(self, name: str) -> T:
        self._validate(name)
        try:
            with open(self._path(name, _JSON), "rb") as file:
                loaded: T = json.load(file)
                return loaded
        except FileNotFoundError:
            pass
        try:
            with open(self._path(name, _TORCH), "rb") as file:
                return self._load_tensors(file)
        except FileNotFoundError:
            raise ObjectNotFoundError(name) from None

    def delete(self, name: str) -> None:
        self._validate(name)
        for suffix in (_JSON, _TORCH):
            self._path(name, suffix).unlink(missing_ok=True)

    def delete_all(self) -> int:
        deleted = 0
        with os.scandir(self._folder) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                if suffix in (_JSON, _TORCH) and self._name_pattern.fullmatch(stem):
                    os.unlink(entry.path)
                    deleted += 1
        self.remove_temporary_files()
        return deleted

    def remove_temporary_files(self) -> int:
        removed = remove_temporary_files(self._folder, f"{self._prefix}_")
        if removed:
            logger.warning("Removed %d temporary file(s) of interrupted writes from %s", removed, self._folder)
        return removed

    def _load_tensors(self, file: IO[bytes]) -> T:
        torch: Any = importlib.import_module("torch")
        loaded: T = torch.load(file, weights_only=True, map_location="cpu")
        return loaded

    def _validate(self, name: str) -> None:
        if not isinstance(name, str) or self._name_pattern.fullmatch(name) is None:
            raise InvalidObjectNameError(name, self._prefix)

    def _path(self, name: str, suffix: str) -> Path:
        path = self._folder / f"{name}{suffix}"
        # A symbolic link placed in the folder must not lead a valid name out of it.
        if not path.resolve().is_relative_to(self._folder):
            raise InvalidObjectNameError(name, self._prefix)
        return path
