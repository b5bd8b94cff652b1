"""The model install service: probes local files and folders and records them in the model records."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeloom.app.services.model_install.model_install_base import ModelInstallServiceBase
from nodeloom.app.services.model_install.model_install_common import (
    ModelBaseUnknownError,
    ModelPathNotAllowedError,
    ModelSettingUnknownError,
    ScanFolderResult,
    ScanTooLargeError,
    SkippedModel,
)
from nodeloom.app.services.model_records.model_records_common import DuplicateModelError
from nodeloom.backend.model_manager.configs import InvalidModelConfigError, validate_model_config
from nodeloom.backend.model_manager.errors import InvalidModelError, ModelFileError, ModelPathNotFoundError
from nodeloom.backend.model_manager.model_files import WEIGHTS_SUFFIXES, hash_model, size_on_disk
from nodeloom.backend.model_manager.probe import is_model_folder, probe_model
from nodeloom.backend.model_manager.taxonomy import BaseModelType

if TYPE_CHECKING:
    from nodeloom.app.services.model_records.model_records_base import ModelRecordServiceBase
    from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
    from nodeloom.backend.model_manager.configs import AnyModelConfig

logger = logging.getLogger(__name__)

MAX_SCAN_ENTRIES = 10_000
"""The most files and folders a scan looks at: a scan of a whole disk is refused instead of running for hours."""

# What one model failing to install during a scan may raise, and the scan reports as its reason to skip it.
_SKIPPABLE = (InvalidModelError, ModelPathNotFoundError, ModelFileError, DuplicateModelError, InvalidModelConfigError)


class ModelInstallService(ModelInstallServiceBase):
    """Records models in `store`; copies, when asked for, go to `models_path/{base}/{type}/{name}`, recorded by
    their path relative to `models_path`.

    Installs read only under `models_path` and `install_roots`, once every symlink is resolved: a path elsewhere
    is refused with `ModelPathNotAllowedError` before anything looks at it, so a client learns nothing of the
    server's other files, not even whether they exist.
    """

    def __init__(self, *, store: ModelRecordServiceBase, models_path: Path, install_roots: Sequence[Path] = ()) -> None:
        self._store = store
        self._models_path = models_path
        self._roots = [root.resolve() for root in (models_path, *install_roots)]

    def _allowed(self, path: Path | str) -> Path:
        """`path` absolute with its symlinks resolved; `ModelPathNotAllowedError` when that is outside the roots."""
        if "\0" in str(path):
            raise ModelPathNotFoundError(f"{str(path)!r} holds a NUL character, so it names no file")
        try:
            resolved = Path(path).expanduser().resolve()
        except (OSError, RuntimeError) as error:
            # RuntimeError: a symlink loop. Where it leads cannot be told, so it is not known to be inside.
            raise ModelPathNotAllowedError() from error
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise ModelPathNotAllowedError()
        return resolved

    def _existing(self, path: Path | str) -> Path:
        """`path` made absolute inside the roots; `ModelPathNotFoundError` when nothing can be found there."""
        resolved = self._allowed(path)
        try:
            if resolved.exists():
                return resolved
        except OSError as error:
            raise ModelPathNotFoundError(f"Cannot look at {resolved}: {error.strerror}") from error
        raise ModelPathNotFoundError(f"Nothing exists at {resolved}")

    def install_path(
        self, path: Path | str, config_overrides: ModelRecordChanges | None = None, inplace: bool = True
    ) -> AnyModelConfig:
        source = self._existing(path)
        try:
            probed = probe_model(source)
        except OSError as error:
            raise InvalidModelError(f"Cannot read {error.filename or source}: {error.strerror or error}") from error
        fields: dict[str, Any] = {
            "type": probed.type,
            "format": probed.format,
            "base": probed.base,
            "name": source.stem if source.is_file() else source.name,
            **probed.extra_fields,
        }
        if config_overrides is not None:
            fields |= config_overrides.model_dump(exclude_none=True)
        if "config_path" in fields:
            # The configs are read when the model loads: from the same roots as models, for the same reason.
            fields["config_path"] = str(self._existing(fields["config_path"]))
        if fields["base"] is None:
            raise ModelBaseUnknownError(
                f"Cannot tell the base of the {probed.type.value} model at {source}: {probed.unknown_base_reason}. "
                f"Install it again with a base override ({', '.join(base.value for base in BaseModelType)})"
            )
        for name, reason in probed.undecided.items():
            if fields.get(name) is None:
                raise ModelSettingUnknownError(
                    f"Cannot tell the {name} of the {probed.type.value} model at {source}: {reason}. "
                    f"Install it again with a {name} override"
                )
        if inplace:
            return self._record(source, source, str(source), fields)
        destination = self._models_path / str(fields["base"]) / str(fields["type"]) / source.name
        if destination.exists():
            raise DuplicateModelError(f"{destination} exists already: remove the model installed there first")
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copy2(source, destination)
            return self._record(source, destination, destination.relative_to(self._models_path).as_posix(), fields)
        except BaseException:
            _remove(destination)
            raise

    def _record(self, source: Path, files: Path, stored_path: str, fields: dict[str, Any]) -> AnyModelConfig:
        """Records the model whose `files` are stored at `stored_path`, after checking it is not installed yet."""
        # Checked before hashing, which takes minutes for a large model; the insert checks again.
        existing = self._store.search_by_path(stored_path)
        if existing:
            raise DuplicateModelError(
                f"{stored_path} is installed already, as '{existing[0].name}' (key {existing[0].key}): "
                "remove that model first to install it again"
            )
        config = validate_model_config(
            fields
            | {"path": stored_path, "source": str(source), "hash": hash_model(files), "file_size": size_on_disk(files)}
        )
        installed = self._store.add_model(config)
        logger.info("Installed the %s %s model '%s' from %s", installed.base, installed.type, installed.name, source)
        return installed

    def scan_folder(self, path: Path | str) -> ScanFolderResult:
        folder = self._existing(path)
        if not folder.is_dir():
            raise ModelPathNotFoundError(f"{folder} is not a folder")
        installed: list[AnyModelConfig] = []
        skipped: list[SkippedModel] = []
        for candidate in self._find_models(folder, skipped):
            try:
                installed.append(self.install_path(candidate))
            except _SKIPPABLE as error:
                skipped.append(SkippedModel(path=str(candidate), reason=str(error)))
        return ScanFolderResult(installed=installed, skipped=skipped)

    def delete(self, key: str) -> None:
        config = self._store.get_model(key)
        self._store.del_model(key)
        if not Path(config.path).is_absolute():
            _remove(self._models_path / config.path)
        logger.info("Deleted the model '%s' (%s)", config.name, key)

    def _find_models(self, folder: Path, skipped: list[SkippedModel]) -> list[Path]:
        """The model folders and weights files under `folder`, in path order; hidden entries and other files are
        left out, nothing inside a model folder is looked at, and the folders that cannot be listed and the links
        that lead outside the roots go to `skipped`."""
        found: list[Path] = []
        pending = [folder]
        seen = 0
        while pending:
            current = pending.pop()
            try:
                entries = list(current.iterdir())
            except OSError as error:
                skipped.append(SkippedModel(path=str(current), reason=f"Cannot list the folder: {error.strerror}"))
                continue
            for entry in entries:
                seen += 1
                if seen > MAX_SCAN_ENTRIES:
                    raise ScanTooLargeError(
                        f"{folder} holds more than {MAX_SCAN_ENTRIES} files and folders: scan a narrower folder"
                    )
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    try:
                        self._allowed(entry)
                    except ModelPathNotAllowedError as error:
                        skipped.append(SkippedModel(path=str(entry), reason=str(error)))
                        continue
                if entry.is_dir():
                    if is_model_folder(entry):
                        found.append(entry)
                    else:
                        pending.append(entry)
                elif entry.suffix.lower() in WEIGHTS_SUFFIXES:
                    found.append(entry)
        return sorted(found)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
