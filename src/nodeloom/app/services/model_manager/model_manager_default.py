"""The model manager: the three model services, built together by the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodeloom.app.services.model_manager.model_manager_base import ModelManagerServiceBase

if TYPE_CHECKING:
    from nodeloom.app.services.model_install.model_install_base import ModelInstallServiceBase
    from nodeloom.app.services.model_load.model_load_base import ModelLoadServiceBase
    from nodeloom.app.services.model_records.model_records_base import ModelRecordServiceBase


class ModelManagerService(ModelManagerServiceBase):
    """Holds the given services; it adds no behaviour of its own."""

    def __init__(
        self, *, store: ModelRecordServiceBase, install: ModelInstallServiceBase, load: ModelLoadServiceBase
    ) -> None:
        self._store = store
        self._install = install
        self._load = load

    @property
    def store(self) -> ModelRecordServiceBase:
        return self._store

    @property
    def install(self) -> ModelInstallServiceBase:
        return self._install

    @property
    def load(self) -> ModelLoadServiceBase:
        return self._load
