"""The database port: what every record service writes its SQL against, once, for every engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]

Params = Sequence[Any] | Mapping[str, Any]
"""A statement's parameters: a sequence for `?` placeholders, a mapping by name for `:name` ones."""


class DbRow(Protocol):
    """A result row, read by column name: `row["status"]`; `dict(row)` gives a plain dict."""

    def __getitem__(self, key: str, /) -> Any:
        """The value of the column named `key`."""

    def keys(self) -> Iterable[str]:
        """The column names, in select-list order."""


class DbCursor(Protocol):
    """Runs statements inside one `transaction()` or `read()` block; valid only inside that block."""

    @property
    def dialect(self) -> Dialect:
        """The engine this cursor talks to, for the rare statement that differs (DDL in migrations)."""

    @property
    def rowcount(self) -> int:
        """The rows changed by the last INSERT, UPDATE or DELETE (not meaningful after a SELECT)."""

    def execute(self, sql: str, params: Params = ()) -> None:
        """Runs one statement with its placeholders bound to `params`."""

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> None:
        """Runs one statement once for each set of parameters."""

    def fetchone(self) -> DbRow | None:
        """The next row of the last query, or None when there is none left."""

    def fetchall(self) -> list[DbRow]:
        """The remaining rows of the last query."""


class DatabaseBase(ABC):
    """The port every record service runs its SQL through, with `transaction()` and `read()`.

    Its adapters are `SqliteDatabase` and `PostgresDatabase`. The SQL is written for both, so that a
    service holds it once:

    - Placeholders are `?`, bound to a sequence, or `:name`, bound to a mapping by name; one kind per
      statement. Both are portable: a PostgreSQL adapter rewrites `?` to `%s` and `:name` to psycopg's
      `%(name)s`, so never put a literal `?`, `%` or `:` in the SQL text: pass such values (LIKE
      patterns, timestamps) as parameters. Name the parameters of a wide statement, so that its row is
      a dict by column rather than a long tuple whose order must match the SQL's.
    - Rows are read by column name only, never by index. Write names in lowercase snake_case and
      alias every computed column (`SELECT COUNT(*) AS total`): the engines name them differently.
    - Get generated keys with `INSERT ... RETURNING`, and upsert with `INSERT ... ON CONFLICT`;
      both engines support them. There is no `lastrowid`.
    - Where a statement truly differs, branch on `dialect`. Only the schema's DDL does (identity columns,
      `WITHOUT ROWID`), naming PostgreSQL's variant already because a released migration never changes.

    Transactions:

    - `transaction()` commits when its block ends and rolls back on any exception, which then
      propagates unchanged. Driver errors surface as `DatabaseError` (`DatabaseIntegrityError` for
      a violated constraint), with the driver's exception as `__cause__`.
    - A failed statement dooms its transaction, as PostgreSQL does: catching the `DatabaseError`
      inside the block does not save it, the block ends with a rollback and a `DatabaseError`.
      Upsert with ON CONFLICT rather than catching a unique violation.
    - Nested blocks on the same thread join the outermost one. An exception escaping a nested
      `transaction()` dooms the whole transaction even if an outer block catches it; one escaping
      a nested `read()` does not, as a read writes nothing (SQLite refuses writes in any `read()`
      block). `read()` may nest in `transaction()`, not the other way round.
    - On SQLite, `transaction()` holds the process's one writer lock and takes the file's write
      lock at once, so select-then-update inside one block is atomic. PostgreSQL runs transactions
      concurrently (READ COMMITTED): there a claim is atomic in the SQL itself
      (`FOR UPDATE SKIP LOCKED`).
    """

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """The engine: "sqlite" or "postgres"."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[DbCursor]:
        """A cursor in a write transaction that commits on success and rolls back on any exception."""

    @abstractmethod
    def read(self) -> AbstractContextManager[DbCursor]:
        """A cursor in a read-only transaction, so that several queries see one snapshot."""

    def statement(self) -> AbstractContextManager[DbCursor]:
        """A cursor for a write of exactly one statement, which commits when it ends and is a transaction of its
        own: where the engine allows (PostgreSQL), with no BEGIN nor COMMIT sent around it, two round trips fewer.
        Nested in a transaction, it joins it."""
        return self.transaction()

    @abstractmethod
    def listen(self, channel: str) -> Listener | None:
        """A listener for the notifications that committed transactions of any process send on `channel`
        (PostgreSQL's `pg_notify`); None on an engine that has none (SQLite), where a reader polls instead."""

    @abstractmethod
    def close(self) -> None:
        """Waits for the running transaction, then releases every connection; safe to call twice."""


class Listener(Protocol):
    """A connection of its own that waits for notifications on one channel."""

    def wait(self, timeout_s: float) -> None:
        """Returns at the first notification not waited for yet, or after `timeout_s`."""

    def close(self) -> None:
        """Stops listening and closes the connection."""
