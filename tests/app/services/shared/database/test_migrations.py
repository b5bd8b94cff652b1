"""Released migrations are frozen: the statements each one runs, on either engine, and the schema a fresh SQLite
file ends with are compared with `released_schema.json`, so that a database made by this nodeloom is the same as
one made by an older one and then upgraded.

A new migration fails its test until it is added to the snapshot, once final:
`python -m tests.app.services.shared.database.test_migrations` adds the migrations the snapshot lacks and never
rewrites one it holds.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from nodeloom.app.services.shared.database.database_base import DbRow, Dialect, Params
from nodeloom.app.services.shared.database.database_common import Migration
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

SNAPSHOT = Path(__file__).with_name("released_schema.json")
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")


class RecordingCursor:
    """Takes down the statements a migration runs for an engine, running none: PostgreSQL's are checked too."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.rowcount = 0
        self.statements: list[str] = []

    def execute(self, sql: str, params: Params = ()) -> None:
        self.statements.append(sql)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> None:
        self.statements.append(sql)

    def fetchone(self) -> DbRow | None:
        return None

    def fetchall(self) -> list[DbRow]:
        return []


def statements(migration: Migration, dialect: Dialect) -> list[str]:
    cursor = RecordingCursor(dialect)
    migration.up(cursor)
    return cursor.statements


def recorded(migration: Migration) -> dict[str, Any]:
    return {
        "version": migration.version,
        "description": migration.description,
        "statements": {dialect: statements(migration, dialect) for dialect in DIALECTS},
    }


def sqlite_master(migrations: list[Migration]) -> list[list[str | None]]:
    """Every table, index and trigger of a fresh SQLite file migrated by `migrations`, with its SQL as stored."""
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteDatabase(Path(folder) / "nodeloom.db")
        try:
            Migrator(db, migrations).run()
            with db.read() as cursor:
                cursor.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
                return [[row["type"], row["name"], row["tbl_name"], row["sql"]] for row in cursor.fetchall()]
        finally:
            db.close()


def load_snapshot() -> dict[str, Any]:
    snapshot: dict[str, Any] = json.loads(SNAPSHOT.read_text())
    return snapshot


@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda migration: f"migration {migration.version}")
def test_a_migration_runs_the_statements_it_was_released_with(migration: Migration) -> None:
    released = {entry["version"]: entry for entry in load_snapshot()["migrations"]}

    assert migration.version in released, (
        f"migration {migration.version} is not in released_schema.json: add it once final (see this module)"
    )
    assert recorded(migration) == released[migration.version]


def test_a_fresh_database_has_the_released_schema() -> None:
    snapshot = load_snapshot()

    assert sqlite_master(MIGRATIONS[: len(snapshot["migrations"])]) == snapshot["sqlite_master"]


def add_new_migrations() -> None:
    """Adds to the snapshot the migrations it lacks, and the schema they make; those it holds are kept as they are."""
    snapshot = load_snapshot()
    held = {entry["version"] for entry in snapshot["migrations"]}
    snapshot["migrations"] += [recorded(migration) for migration in MIGRATIONS if migration.version not in held]
    snapshot["sqlite_master"] = sqlite_master(MIGRATIONS[: len(snapshot["migrations"])])
    SNAPSHOT.write_text(json.dumps(snapshot, indent=2) + "\n")


if __name__ == "__main__":
    add_new_migrations()
