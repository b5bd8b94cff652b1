"""Model configs on the database port; the `models` table is made by migration 3 (`shared/database/migrations`)."""

from __future__ import annotations

import json
from typing import Any

from nodeloom.app.services.model_records.model_records_base import ModelRecordServiceBase
from nodeloom.app.services.model_records.model_records_common import (
    DuplicateModelError,
    ModelRecordChanges,
    UnknownModelError,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow
from nodeloom.app.services.shared.timestamps import utc_now
from nodeloom.backend.model_manager.configs import AnyModelConfig, AnyModelConfigValidator, validate_model_config
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat, ModelType

_COMMON_FIELDS = (
    "key",
    "name",
    "description",
    "base",
    "type",
    "format",
    "path",
    "hash",
    "file_size",
    "source",
    "created_at",
    "updated_at",
)
_COLUMNS = (*_COMMON_FIELDS, "default_settings", "extra")
_SELECT_COLUMNS = ", ".join(_COLUMNS)
_ORDER = "ORDER BY type, base, name, key"
# ON CONFLICT DO NOTHING instead of catching the unique violation, which would doom the transaction.
_INSERT = (
    f"INSERT INTO models ({_SELECT_COLUMNS}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    f"ON CONFLICT DO NOTHING RETURNING {_SELECT_COLUMNS}"
)
_UPDATE = (
    "UPDATE models SET name = ?, description = ?, base = ?, type = ?, format = ?, default_settings = ?, "
    "extra = ?, updated_at = ? WHERE key = ?"
)
_SELECT_BY_KEY = f"SELECT {_SELECT_COLUMNS} FROM models WHERE key = ?"
_SELECT_BY_PATH = f"SELECT {_SELECT_COLUMNS} FROM models WHERE path = ?"
_DELETE = "DELETE FROM models WHERE key = ?"


def _row_values(config: AnyModelConfig) -> dict[str, Any]:
    """The column values of a config."""
    data = config.model_dump(mode="json")
    values = {field: data.pop(field) for field in _COMMON_FIELDS}
    default_settings = data.pop("default_settings", None)
    values["default_settings"] = None if default_settings is None else json.dumps(default_settings)
    values["extra"] = json.dumps(data)
    return values


def _from_row(row: DbRow) -> AnyModelConfig:
    data: dict[str, Any] = {field: row[field] for field in _COMMON_FIELDS}
    if row["default_settings"] is not None:
        data["default_settings"] = json.loads(row["default_settings"])
    data.update(json.loads(row["extra"]))
    return AnyModelConfigValidator.validate_python(data)


class SqlModelRecordService(ModelRecordServiceBase):
    """Model configs in the `models` table, on any engine the database port speaks."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def add_model(self, config: AnyModelConfig) -> AnyModelConfig:
        now = utc_now()
        values = _row_values(config) | {"created_at": now, "updated_at": now}
        with self._db.transaction() as cursor:
            cursor.execute(_INSERT, [values[column] for column in _COLUMNS])
            row = cursor.fetchone()
            if row is None:
                raise self._duplicate(cursor, config)
        return _from_row(row)

    def del_model(self, key: str) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(_DELETE, (key,))
            if cursor.rowcount == 0:
                raise UnknownModelError(key)

    def update_model(self, key: str, changes: ModelRecordChanges) -> AnyModelConfig:
        with self._db.transaction() as cursor:
            current = _get(cursor, key)
            config = validate_model_config(current.model_dump() | changes.model_dump(exclude_none=True))
            values = _row_values(config)
            cursor.execute(
                _UPDATE,
                [
                    *(values[column] for column in ("name", "description", "base", "type", "format")),
                    values["default_settings"],
                    values["extra"],
                    utc_now(),
                    key,
                ],
            )
            return _get(cursor, key)

    def get_model(self, key: str) -> AnyModelConfig:
        with self._db.read() as cursor:
            return _get(cursor, key)

    def exists(self, key: str) -> bool:
        with self._db.read() as cursor:
            cursor.execute("SELECT 1 AS found FROM models WHERE key = ?", (key,))
            return cursor.fetchone() is not None

    def search_by_path(self, path: str) -> list[AnyModelConfig]:
        return self._select(_SELECT_BY_PATH, [path])

    def search_by_attr(
        self,
        model_name: str | None = None,
        base_model: BaseModelType | None = None,
        model_type: ModelType | None = None,
        model_format: ModelFormat | None = None,
    ) -> list[AnyModelConfig]:
        filters = {"name": model_name, "base": base_model, "type": model_type, "format": model_format}
        given = {column: str(value) for column, value in filters.items() if value is not None}
        where = f" WHERE {' AND '.join(f'{column} = ?' for column in given)}" if given else ""
        return self._select(f"SELECT {_SELECT_COLUMNS} FROM models{where} {_ORDER}", list(given.values()))

    def _select(self, sql: str, params: list[Any]) -> list[AnyModelConfig]:
        with self._db.read() as cursor:
            cursor.execute(sql, params)
            return [_from_row(row) for row in cursor.fetchall()]

    @staticmethod
    def _duplicate(cursor: DbCursor, config: AnyModelConfig) -> DuplicateModelError:
        cursor.execute(_SELECT_BY_PATH, (config.path,))
        row = cursor.fetchone()
        if row is not None:
            return DuplicateModelError(
                f"{config.path} is installed already, as '{row['name']}' (key {row['key']}): "
                "remove that model first to install it again"
            )
        return DuplicateModelError(f"A model with the key {config.key} exists already")


def _get(cursor: DbCursor, key: str) -> AnyModelConfig:
    cursor.execute(_SELECT_BY_KEY, (key,))
    row = cursor.fetchone()
    if row is None:
        raise UnknownModelError(key)
    return _from_row(row)
