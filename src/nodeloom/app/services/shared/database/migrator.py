"""Brings a database's schema up to the newest numbered migration, one transaction per migration."""

from __future__ import annotations

import logging

from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor
from nodeloom.app.services.shared.database.database_common import (
    Migration,
    MigrationError,
    SchemaTooNewError,
)
from nodeloom.app.services.shared.timestamps import utc_now

logger = logging.getLogger(__name__)

# Valid on SQLite and PostgreSQL alike; applied_at is an ISO-8601 UTC string written by Python so
# that both engines store the same text.
_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""
# Processes starting together on a new PostgreSQL database, where transactions run concurrently, take turns: each
# migrating transaction holds this lock until it commits, so that the next finds the work done rather than failing
# on it (a table created twice, a version recorded twice). On SQLite the file's write lock does this already.
_LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(hashtextextended('nodeloom migrations', 0))"
_SELECT_VERSION = "SELECT COALESCE(MAX(version), 0) AS version FROM migrations"
_INSERT_MIGRATION = "INSERT INTO migrations (version, description, applied_at) VALUES (?, ?, ?)"


class Migrator:
    """Applies the pending migrations of a list numbered 1, 2, 3 ... and records each one."""

    def __init__(self, db: DatabaseBase, migrations: list[Migration]) -> None:
        versions = [migration.version for migration in migrations]
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise MigrationError(
                f"Migrations must be numbered 1, 2, 3 ... without gaps or repeats, but they are {versions}"
            )
        self._db = db
        self._migrations = sorted(migrations, key=lambda migration: migration.version)

    def run(self) -> None:
        """Applies every migration newer than the database's schema, refusing a newer schema."""
        with self._db.transaction() as cursor:
            _take_turn(cursor)
            cursor.execute(_CREATE_MIGRATIONS_TABLE)
            current = _recorded_version(cursor)
        known = len(self._migrations)
        if current > known:
            raise SchemaTooNewError(current, known)
        for migration in self._migrations[current:]:
            self._apply(migration)

    def _apply(self, migration: Migration) -> None:
        try:
            with self._db.transaction() as cursor:
                _take_turn(cursor)
                # Another process starting on the same database may have applied it meanwhile.
                if _recorded_version(cursor) >= migration.version:
                    return
                applied_at = utc_now()
                cursor.execute(_INSERT_MIGRATION, (migration.version, migration.description, applied_at))
                migration.up(cursor)
        except Exception as error:
            raise MigrationError(
                f"Migration {migration.version} ({migration.description}) failed and was rolled back: {error}"
            ) from error
        logger.info("Applied migration %d: %s", migration.version, migration.description)


def _take_turn(cursor: DbCursor) -> None:
    if cursor.dialect == "postgres":
        cursor.execute(_LOCK_MIGRATIONS)


def _recorded_version(cursor: DbCursor) -> int:
    cursor.execute(_SELECT_VERSION)
    row = cursor.fetchone()
    assert row is not None, "an aggregate query always returns one row"
    return int(row["version"])
