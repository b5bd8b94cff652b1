"""The embedded adapter: one SQLite file, one connection shared by every thread behind one lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NoReturn

from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow, Listener, Params
from nodeloom.app.services.shared.database.database_common import (
    DatabaseError,
    DatabaseIntegrityError,
    TransactionBlock,
)


def _raise_translated(error: sqlite3.Error) -> NoReturn:
    if isinstance(error, sqlite3.IntegrityError):
        raise DatabaseIntegrityError(str(error)) from error
    raise DatabaseError(str(error)) from error


def _bindable(params: Params) -> Sequence[Any] | dict[str, Any]:
    # sqlite3 binds names from a dict only, not from any other mapping.
    if isinstance(params, Mapping) and not isinstance(params, dict):
        return dict(params)
    return params


class _SqliteCursor:
    """A `DbCursor` over one sqlite3 cursor that turns driver errors into `DatabaseError`."""

    def __init__(self, cursor: sqlite3.Cursor, block: TransactionBlock) -> None:
        self._cursor = cursor
        self._block = block

    @property
    def dialect(self) -> Literal["sqlite"]:
        return "sqlite"

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def execute(self, sql: str, params: Params = ()) -> None:
        try:
            self._cursor.execute(sql, _bindable(params))
        except sqlite3.Error as error:
            self._fail(error)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> None:
        try:
            self._cursor.executemany(sql, map(_bindable, seq_of_params))
        except sqlite3.Error as error:
            self._fail(error)

    def fetchone(self) -> DbRow | None:
        try:
            row: DbRow | None = self._cursor.fetchone()
        except sqlite3.Error as error:
            self._fail(error)
        return row

    def fetchall(self) -> list[DbRow]:
        try:
            return self._cursor.fetchall()
        except sqlite3.Error as error:
            self._fail(error)

    def _fail(self, error: sqlite3.Error) -> NoReturn:
        # PostgreSQL aborts a transaction after any failed statement; doing the same here keeps a
        # service that swallows the error from committing half its work, and its SQL ready for PostgreSQL.
        self._block.doomed = True
        _raise_translated(error)


class SqliteDatabase(DatabaseBase):
    """SQLite in WAL mode; `path` may be ":memory:" for tests.

    One connection serves every thread, guarded by one re-entrant lock: `transaction()` and
    `read()` hold it for their whole block, so at most one block runs at a time in this process,
    and a thread nesting blocks joins its own outermost one instead of deadlocking. Other processes
    on the same file are kept out by `BEGIN IMMEDIATE` and wait up to `busy_timeout_s` for it.
    """

    def __init__(self, path: Path | str, busy_timeout_s: float = 5.0) -> None:
        self._lock = threading.RLock()
        # Touched only by the thread holding the lock.
        self._block: TransactionBlock | None = None
        try:
            # isolation_level=None stops the driver from opening transactions on its own: every
            # BEGIN, COMMIT and ROLLBACK below is explicit.
            self._connection = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            _raise_translated(error)
        self._connection.row_factory = sqlite3.Row
        try:
            self._run("PRAGMA journal_mode = WAL")
            self._run("PRAGMA synchronous = NORMAL")
            self._run("PRAGMA foreign_keys = ON")
        except DatabaseError:
            self._connection.close()
            raise

    @property
    def dialect(self) -> Literal["sqlite"]:
        return "sqlite"

    @contextmanager
    def transaction(self) -> Generator[DbCursor, None, None]:
        with self._lock:
            if self._block is None:
                yield from self._outermost(write=True)
            else:
                yield from self._block.join(self._cursor(self._block))

    @contextmanager
    def read(self) -> Generator[DbCursor, None, None]:
        with self._lock:
            outer = self._block
            if outer is not None and not outer.write:
                yield from self._cursor(outer)
                return
            # query_only makes a write inside read() fail, as it would in a read-only PostgreSQL
            # transaction: a service cannot write where it only meant to read.
            self._run("PRAGMA query_only = ON")
            try:
                if outer is None:
                    yield from self._outermost(write=False)
                else:
                    # A read wrote nothing to undo, so an exception escaping it, such as a service's
                    # "not found", leaves the outer transaction free to go on.
                    yield from self._cursor(outer)
            finally:
                self._run("PRAGMA query_only = OFF")

    def listen(self, channel: str) -> Listener | None:
        return None

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _outermost(self, write: bool) -> Generator[DbCursor, None, None]:
        # IMMEDIATE takes the file's write lock at BEGIN, so no other process can write between
        # this transaction's select and its update.
        self._run("BEGIN IMMEDIATE" if write else "BEGIN")
        block = self._block = TransactionBlock(write=write)
        try:
            yield from self._cursor(block)
            block.check_committable()
            self._run("COMMIT")
        except BaseException:
            if self._connection.in_transaction:
                self._run("ROLLBACK")
            raise
        finally:
            self._block = None

    def _cursor(self, block: TransactionBlock) -> Generator[DbCursor, None, None]:
        try:
            cursor = self._connection.cursor()
        except sqlite3.Error as error:
            _raise_translated(error)
        try:
            yield _SqliteCursor(cursor, block)
        finally:
            # An unfinished SELECT would otherwise stay open across the COMMIT.
            cursor.close()

    def _run(self, sql: str) -> None:
        try:
            self._connection.execute(sql)
        except sqlite3.Error as error:
            _raise_translated(error)
