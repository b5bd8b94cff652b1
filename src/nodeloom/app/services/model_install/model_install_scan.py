"""Finding models on disk: the model folders and weights files under a folder, without looking inside them, and
describing those no record uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodeloom.app.services.model_install.model_install_common import (
    ModelPathNotAllowedError,
    OrphanedModelInfo,
    ScanTooLargeError,
)
from nodeloom.backend.model_manager.model_files import WEIGHTS_SUFFIXES, model_files
from nodeloom.backend.model_manager.probe import is_model_folder

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MAX_SCAN_ENTRIES = 10_000
"""The most files and folders a scan looks at: a scan of a whole disk is refused instead of running for hours."""


def find_models(allowed: Callable[[Path], Path], folder: Path) -> list[Path]:
    """The model folders and weights files under `folder`, in path order, with their symlinks resolved by `allowed`
    (which raises `ModelPathNotAllowedError` for a path outside the install roots); hidden entries (the downloads
    folder among them), other files, folders that cannot be listed and links that lead outside the roots are left
    out, and nothing inside a model folder is looked at."""
    found: list[Path] = []
    pending = [folder]
    seen = 0
    while pending:
        current = pending.pop()
        try:
            entries = list(current.iterdir())
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > MAX_SCAN_ENTRIES:
                raise ScanTooLargeError(
                    f"{folder} holds more than {MAX_SCAN_ENTRIES} files and folders: scan a narrower folder"
                )
            if entry.name.startswith("."):
                continue
            try:
                entry = allowed(entry)
            except ModelPathNotAllowedError:
                continue
            if entry.is_dir():
                if is_model_folder(entry):
                    found.append(entry)
                else:
                    pending.append(entry)
            elif entry.suffix.lower() in WEIGHTS_SUFFIXES:
                found.append(entry)
    return sorted(set(found))


def describe_orphan(models_path: Path, model: Path) -> OrphanedModelInfo:
    """InvokeAI's description of a model in the models folder that is not installed."""
    files = model_files(model)
    return OrphanedModelInfo(
        path=model.relative_to(models_path).as_posix(),
        absolute_path=str(model),
        files=[file.relative_to(model).as_posix() for file in files if file != model] or [model.name],
        size_bytes=sum(file.stat().st_size for file in files),
    )
