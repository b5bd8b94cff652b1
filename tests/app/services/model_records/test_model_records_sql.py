"""The model records on a real SQLite file, migrated as the server migrates it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.database_engines import OpenDatabase

from nodeloom.app.services.model_records.model_records_common import (
    DuplicateModelError,
    ModelRecordChanges,
    UnknownModelError,
)
from nodeloom.app.services.model_records.model_records_sql import SqlModelRecordService
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.backend.model_manager.configs import (
    InvalidModelConfigError,
    LoRALyCORISConfig,
    MainDiffusersConfig,
    MainModelDefaultSettings,
    VAEDiffusersConfig,
)
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType, SubModelType


@pytest.fixture
def store(open_db: OpenDatabase) -> Iterator[SqlModelRecordService]:
    db = open_db()
    Migrator(db, MIGRATIONS).run()
    yield SqlModelRecordService(db)
    db.close()


def common(name: str, base: BaseModelType = BaseModelType.StableDiffusion1, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base": base,
        "path": f"/models/{name}",
        "source": f"/models/{name}",
        "hash": f"blake2b:{name}",
        "file_size": 1234,
        **fields,
    }


def main_model(name: str, base: BaseModelType = BaseModelType.StableDiffusion1, **fields: Any) -> MainDiffusersConfig:
    return MainDiffusersConfig(**common(name, base, submodels=[SubModelType.UNet, SubModelType.VAE], **fields))


def test_a_config_round_trips_with_its_timestamps(store: SqlModelRecordService) -> None:
    config = main_model("dream", default_settings=MainModelDefaultSettings(steps=30, cfg_scale=7.5, scheduler="euler"))
    added = store.add_model(config)
    assert added.created_at is not None and added.created_at == added.updated_at
    assert added.model_dump(exclude={"created_at", "updated_at"}) == config.model_dump(
        exclude={"created_at", "updated_at"}
    )
    fetched = store.get_model(config.key)
    assert fetched == added
    assert isinstance(fetched, MainDiffusersConfig)
    assert fetched.submodels == [SubModelType.UNet, SubModelType.VAE]
    assert fetched.default_settings == MainModelDefaultSettings(steps=30, cfg_scale=7.5, scheduler="euler")
    assert store.exists(config.key) and not store.exists("nope")


def test_each_kind_comes_back_as_its_class(store: SqlModelRecordService) -> None:
    lora = store.add_model(LoRALyCORISConfig(**common("ink")))
    vae = store.add_model(VAEDiffusersConfig(**common("vae", BaseModelType.StableDiffusionXL)))
    assert isinstance(store.get_model(lora.key), LoRALyCORISConfig)
    assert isinstance(store.get_model(vae.key), VAEDiffusersConfig)


def test_search_filters_by_each_attribute_and_lists_by_type_base_and_name(store: SqlModelRecordService) -> None:
    b = store.add_model(main_model("b"))
    a = store.add_model(main_model("a"))
    xl = store.add_model(main_model("xl", BaseModelType.StableDiffusionXL))
    lora = store.add_model(LoRALyCORISConfig(**common("ink")))
    keys = [config.key for config in store.search_by_attr()]
    assert keys == [lora.key, a.key, b.key, xl.key]
    assert [c.key for c in store.search_by_attr(model_name="a")] == [a.key]
    assert [c.key for c in store.search_by_attr(base_model=BaseModelType.StableDiffusionXL)] == [xl.key]
    assert [c.key for c in store.search_by_attr(model_type=ModelType.LoRA)] == [lora.key]
    assert [c.key for c in store.search_by_attr(model_format=ModelFormat.LyCORIS)] == [lora.key]
    assert store.search_by_attr(model_name="a", base_model=BaseModelType.StableDiffusionXL) == []
    assert [c.key for c in store.search_by_path("/models/b")] == [b.key]


def test_a_second_model_at_the_same_path_is_refused_naming_the_first(store: SqlModelRecordService) -> None:
    first = store.add_model(main_model("dream"))
    with pytest.raises(DuplicateModelError, match=rf"/models/dream is installed already, as 'dream' \(key {first.key}"):
        store.add_model(main_model("dream"))
    assert len(store.search_by_attr()) == 1


def test_update_applies_the_changes_given_and_keeps_the_rest(store: SqlModelRecordService) -> None:
    added = store.add_model(main_model("dream", description="old"))
    updated = store.update_model(
        added.key,
        ModelRecordChanges(name="dream 2", base=BaseModelType.StableDiffusion2, default_settings={"width": 768}),
    )
    assert isinstance(updated, MainDiffusersConfig)
    assert (updated.name, updated.base, updated.description) == ("dream 2", BaseModelType.StableDiffusion2, "old")
    assert updated.default_settings == MainModelDefaultSettings(width=768)
    assert updated.created_at == added.created_at
    assert updated.updated_at is not None and added.updated_at is not None and updated.updated_at > added.updated_at
    assert store.get_model(added.key) == updated


def test_an_update_that_makes_an_invalid_config_is_refused_and_changes_nothing(store: SqlModelRecordService) -> None:
    lora = store.add_model(LoRALyCORISConfig(**common("ink")))
    with pytest.raises(InvalidModelConfigError, match="default_settings: Extra inputs are not permitted"):
        store.update_model(lora.key, ModelRecordChanges(default_settings={"steps": 20}))
    with pytest.raises(InvalidModelConfigError, match="No kind of model has this type and format"):
        store.update_model(lora.key, ModelRecordChanges(type=ModelType.Main))
    assert store.get_model(lora.key) == lora


def test_unknown_keys_are_refused(store: SqlModelRecordService) -> None:
    for action in (
        lambda: store.get_model("nope"),
        lambda: store.del_model("nope"),
        lambda: store.update_model("nope", ModelRecordChanges(name="x")),
    ):
        with pytest.raises(UnknownModelError, match="No model has the key 'nope'"):
            action()


def test_delete_removes_the_record(store: SqlModelRecordService) -> None:
    added = store.add_model(main_model("dream"))
    store.del_model(added.key)
    assert store.search_by_attr() == []
    with pytest.raises(UnknownModelError):
        store.get_model(added.key)
