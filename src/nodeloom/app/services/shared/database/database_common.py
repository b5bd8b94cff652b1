"""Exceptions, the migration model and the nesting of blocks, shared by the database port, its adapters and the
migrator."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.shared.database.database_base import DbCursor


class DatabaseError(NodeloomError):
    """The database failed to run a statement."""


class DatabaseIntegrityError(DatabaseError):
    """A statement violated a constraint (unique, foreign key, not null or check)."""


class DatabaseValueError(DatabaseError):
    """A value the engine cannot store, such as text with a NUL character on PostgreSQL: the input's fault."""


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


@dataclass(kw_only=True)
class TransactionBlock:
    """A thread's running outermost `transaction()` or `read()`, which the blocks nested in it join.

    Each adapter keeps one per running outermost block, with what its engine needs besides (a connection).
    """

    write: bool
    doomed: bool = False
    """Set by a failed statement or a failed nested `transaction()`: the block may then only roll back."""

    def join(self, cursors: Generator[DbCursor, None, None]) -> Generator[DbCursor, None, None]:
        """Runs a nested `transaction()` on `cursors`, the adapter's cursor for this block."""
        if not self.write:
            raise DatabaseError("transaction() cannot start inside read(): open the transaction first and read in it")
        try:
            yield from cursors
        except BaseException:
            # The nested block's writes cannot be undone apart from the outer block's, so an outer block catching
            # this exception must not be able to commit them.
            self.doomed = True
            raise

    def check_committable(self) -> None:
        """Raises `DatabaseError` where the block is doomed, before the adapter would commit it."""
        if self.doomed:
            raise DatabaseError("The transaction was rolled back: a statement or a nested block failed inside it")
