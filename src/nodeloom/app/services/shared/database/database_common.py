"""Exceptions and the migration model shared by the database port, its adapters and the migrator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.shared.database.database_base import DbCursor


class DatabaseError(NodeloomError):
    """The database failed to run a statement."""


class DatabaseIntegrityError(DatabaseError):
    """A statement violated a constraint (unique, foreign key, not null or check)."""


class MigrationError(NodeloomError):
    """The database schema could not be migrated."""


class SchemaTooNewError(MigrationError):
    """The database's schema is newer than this version of nodeloom knows."""

    def __init__(self, database_version: int, known_version: int) -> None:
        super().__init__(
            f"The database's schema is at version {database_version}, but this nodeloom knows "
            f"versions up to {known_version}: upgrade nodeloom to open this database."
        )
        self.database_version = database_version
        self.known_version = known_version


@dataclass(frozen=True)
class Migration:
    """One numbered schema change; `up` runs its statements inside the migration's transaction."""

    version: int
    description: str
    up: Callable[[DbCursor], None]
