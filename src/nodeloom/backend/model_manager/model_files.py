"""Reading model files without ever running code from them: their hash and size, tensor shapes, and weights.

A safetensors file is a JSON header and raw tensor data, read as such. A pickle file (.ckpt, .pt, .pth, .bin) is
read only through torch's weights-only unpickler, which builds tensors and plain containers and refuses any
other Python object; a file that needs one is refused with `UnsafeModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeloom.backend.model_manager.errors import ModelFileError, ModelLinkNotAllowedError, UnsafeModelFileError

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
WEIGHTS_SUFFIXES = PICKLE_SUFFIXES | {SAFETENSORS_SUFFIX}

# The file holding the embedding in a folder diffusers saved a textual inversion in, in the order it looks for them.
_EMBEDDING_FOLDER_FILES = ("learned_embeds.safetensors", "learned_embeds.bin")

TensorShapes = dict[str, tuple[int, ...]]
"""Each tensor's name and shape."""

_HASH_CHUNK = 2**20
# A header is one JSON object naming each tensor: even a model with 100,000 tensors stays far below this, so a
# larger length means the file is not safetensors, and nothing that large is read.
_MAX_HEADER_BYTES = 100 * 2**20
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error: ([^\n]*)")


def model_files(path: Path) -> list[Path]:
    """The file itself, or every file under the folder, sorted by their path relative to it."""
    if path.is_file():
        return [path]
    return sorted((file for file in path.rglob("*") if file.is_file()), key=lambda file: file.relative_to(path))


def copy_model(source: Path, destination: Path, roots: Sequence[Path]) -> None:
    """Copies the model file or folder at `source` to `destination`, each file that a link leads to as a file of
    its own, but only inside `roots` (resolved paths): a link inside the model that leads elsewhere raises
    `ModelLinkNotAllowedError` as the copy reaches it, and what was copied is left for the caller to remove."""
    if source.is_dir():
        # copytree follows links to folders and hands every file, reached through them too, to the copy function.
        shutil.copytree(source, destination, copy_function=lambda file, to: _copy_file(Path(file), to, roots))
    else:
        _copy_file(source, destination, roots)


def _copy_file(source: Path, destination: Path | str, roots: Sequence[Path]) -> None:
    """Copies one file, checked where it really lies as it is copied, so that a link cannot take it elsewhere."""
    try:
        resolved: Path | None = source.resolve(strict=True)
    except (OSError, RuntimeError):
        resolved = None  # a loop, or a link to nothing: where it leads cannot be told
    if resolved is None or not any(resolved.is_relative_to(root) for root in roots):
        raise ModelLinkNotAllowedError(
            f"{source} is reached through a link that leads outside the models folder and the folders of the "
            "model_install_roots setting: put the file it leads to in the model, or install the model in place"
        )
    shutil.copy2(resolved, destination)


def folder_embedding(folder: Path) -> Path | None:
    """The weights file of a textual-inversion embedding's folder (`learned_embeds.*`), or None."""
    return next((folder / name for name in _EMBEDDING_FOLDER_FILES if (folder / name).is_file()), None)


def size_on_disk(path: Path) -> int:
    """The size of the file, or of every file under the folder, in bytes."""
    return sum(file.stat().st_size for file in model_files(path))


def hash_model(path: Path) -> str:
    """'blake2b:' and the hex BLAKE2b-256 digest of the file, or of a folder's files and their relative paths.

    InvokeAI hashes with BLAKE3, which is not available here (no dependency provides it); BLAKE2b comes with
    hashlib and is as fast per byte on one core. The prefix names the algorithm, so the two never get compared.
    Files are streamed in 1 MiB chunks: a model of many GB never sits in memory to be hashed.
    """
    digest = hashlib.blake2b(digest_size=32)
    for file in model_files(path):
        if file != path:
            # The names are hashed too, so that moving weights from one submodel's folder to another changes it.
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    return f"blake2b:{digest.hexdigest()}"


def read_tensor_shapes(path: Path) -> TensorShapes:
    """The name and shape of every tensor in a weights file; raises `ModelFileError` for any other file."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return _safetensors_shapes(path)
    return {name: tuple(tensor.shape) for name, tensor in load_state_dict(path).items()}


def _safetensors_shapes(path: Path) -> TensorShapes:
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise ModelFileError(f"{path} is not a safetensors file: it is only {len(prefix)} bytes long")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER_BYTES:
            raise ModelFileError(f"{path} is not a safetensors file: it does not start with a header")
        try:
            header = json.loads(stream.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{path} is not a safetensors file: its header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a safetensors file: its header is not a JSON object")
    try:
        return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (TypeError, KeyError) as error:
        raise ModelFileError(f"{path} is not a safetensors file: a header entry has no shape") from error


def load_state_dict(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a weights file whose name starts with `prefix`, on the CPU, by name; a checkpoint's nested
    `state_dict` is unwrapped. From a safetensors file only those tensors are read."""
    import torch

    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, framework="pt", device="cpu") as weights:
                # A safe_open handle has keys() but is not iterable.
                names = [name for name in weights.keys() if name.startswith(prefix)]  # noqa: SIM118
                return {name: weights.get_tensor(name) for name in names}
        except SafetensorError as error:
            raise ModelFileError(f"{path} is not a readable safetensors file: {error}") from error
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        suffixes = ", ".join(sorted(WEIGHTS_SUFFIXES))
        raise ModelFileError(f"{path} is not a weights file: its name ends in none of {suffixes}")
    try:
        # mmap spares reading a multi-GB checkpoint into RAM, but only works on torch's zip format.
        data: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise _pickle_error(path, error) from error
    except (EOFError, RuntimeError, KeyError, ValueError, OSError) as error:
        raise ModelFileError(f"{path} is not a torch weights file ({type(error).__name__}: {error})") from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} holds a {type(data).__name__}, not tensors by name")
    # Nested dicts (an embedding's {"string_to_param": {"*": tensor}}) become dotted names; values that are not
    # tensors (a checkpoint's step count) are left out.
    tensors: dict[str, torch.Tensor] = {}
    pending: list[tuple[str, dict[Any, Any]]] = [("", data)]
    while pending:
        dotted, mapping = pending.pop()
        for name, value in mapping.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{dotted}{name}"] = value
            elif isinstance(value, dict):
                pending.append((f"{dotted}{name}.", value))
    return {name: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


def _pickle_error(path: Path, error: pickle.UnpicklingError) -> ModelFileError:
    message = str(error)
    unsupported = _UNSUPPORTED_GLOBAL.search(message)
    if unsupported:
        return UnsafeModelFileError(
            f"{path} is refused: besides tensors it holds the Python object '{unsupported.group(1)}', and loading "
            "it could run code. Only weights are loaded from pickle files; convert it to .safetensors with a tool "
            "you trust, or use a safetensors version of the model"
        )
    detail = _UNPICKLER_ERROR.search(message)
    return ModelFileError(f"{path} is not a torch weights file ({detail.group(1) if detail else message.strip()})")
