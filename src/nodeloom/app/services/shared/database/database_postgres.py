"""The shared adapter: PostgreSQL through a pool of psycopg connections, one per running block."""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Generator, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow, Params
from nodeloom.app.services.shared.database.database_common import (
    DatabaseError,
    DatabaseIntegrityError,
    DatabaseValueError,
    TransactionBlock,
)

URL_SCHEMES = ("postgresql://", "postgres://")
"""How a database URL that names PostgreSQL starts."""

# A `:name` placeholder, but not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """The statement with the port's `?` and `:name` placeholders written as psycopg's `%s` and `%(name)s`."""
    escaped = sql.replace("%", "%%")
    return _NAMED.sub(r"%(\1)s", escaped).replace("?", "%s")


def _raise_translated(error: psycopg.Error) -> NoReturn:
    if isinstance(error, psycopg.IntegrityError):
        raise DatabaseIntegrityError(str(error)) from error
    if isinstance(error, psycopg.DataError):
        raise DatabaseValueError(str(error)) from error
    raise DatabaseError(str(error)) from error


def _bindable(params: Params) -> tuple[Any, ...] | dict[str, Any]:
    return dict(params) if isinstance(params, Mapping) else tuple(params)


def _describe(url: str) -> str:
    """The server and database a URL names, without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise DatabaseError(f"The database URL is not a valid PostgreSQL URL: {error}".strip()) from error
    host = parts.get("host") or "localhost"
    port = parts.get("port") or 5432
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


@dataclass
class _Block(TransactionBlock):
    """A thread's running outermost block, with the connection it borrowed from the pool."""

    connection: psycopg.Connection[DictRow]


class _PostgresCursor:
    """A `DbCursor` over one psycopg cursor that rewrites placeholders and turns driver errors into `DatabaseError`."""

    def __init__(self, cursor: psycopg.Cursor[DictRow], block: _Block) -> None:
        self._cursor = cursor
        self._block = block

    @property
    def dialect(self) -> Literal["postgres"]:
        return "postgres"

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def execute(self, sql: str, params: Params = ()) -> None:
        try:
            self._cursor.execute(to_psycopg(sql), _bindable(params))
        except psycopg.Error as error:
            self._fail(error)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> None:
        try:
            self._cursor.executemany(to_psycopg(sql), [_bindable(params) for params in seq_of_params])
        except psycopg.Error as error:
            self._fail(error)

    def fetchone(self) -> DbRow | None:
        try:
            return self._cursor.fetchone()
        except psycopg.Error as error:
            self._fail(error)

    def fetchall(self) -> list[DbRow]:
        try:
            return list(self._cursor.fetchall())
        except psycopg.Error as error:
            self._fail(error)

    def _fail(self, error: psycopg.Error) -> NoReturn:
        # PostgreSQL has already aborted the transaction; marking it keeps the block from trying to commit.
        self._block.doomed = True
        _raise_translated(error)


class PostgresDatabase(DatabaseBase):
    """PostgreSQL at `url` (postgresql://user@host:port/dbname), shared by any number of processes.

    Each thread's outermost `transaction()` or `read()` borrows a connection from a pool of at most
    `max_connections` for its whole block; blocks it nests join that one. Unlike SQLite, transactions run
    concurrently (READ COMMITTED), so a select-then-update must be atomic in its SQL; a `read()` sees one
    snapshot (REPEATABLE READ, read-only).
    """

    def __init__(self, url: str, max_connections: int = 8, connect_timeout_s: float = 5.0) -> None:
        where = _describe(url)
        # One plain connection first: the pool would retry an unreachable server in the background instead of
        # saying why it cannot connect.
        try:
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout_s))).close()
        except psycopg.Error as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise DatabaseError(f"Cannot connect to PostgreSQL at {where}: {reason}") from error
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        # autocommit: every BEGIN, COMMIT and ROLLBACK below is explicit, as in the SQLite adapter.
        self._pool: ConnectionPool[psycopg.Connection[DictRow]] = ConnectionPool(
            url,
            connection_class=psycopg.Connection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=max_connections,
            open=False,
            name=f"nodeloom {where}",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg.Error as error:
            self._pool.close()
            raise DatabaseError(f"Cannot connect to PostgreSQL at {where}: {error}") from error

    @property
    def dialect(self) -> Literal["postgres"]:
        return "postgres"

    @contextmanager
    def transaction(self) -> Generator[DbCursor, None, None]:
        block: _Block | None = getattr(self._local, "block", None)
        if block is None:
            yield from self._outermost(write=True)
        else:
            yield from block.join(self._cursor(block))

    @contextmanager
    def read(self) -> Generator[DbCursor, None, None]:
        block: _Block | None = getattr(self._local, "block", None)
        if block is None:
            yield from self._outermost(write=False)
        else:
            # A read wrote nothing to undo, so an exception escaping it, such as a service's "not found", leaves
            # the outer transaction free to go on (a failed statement has doomed it already).
            yield from self._cursor(block)

    @contextmanager
    def statement(self) -> Generator[DbCursor, None, None]:
        block: _Block | None = getattr(self._local, "block", None)
        if block is not None:
            yield from block.join(self._cursor(block))
            return
        # The pool's connections run in autocommit: the statement commits by itself.
        with self._pool.connection() as connection:
            block = self._local.block = _Block(connection, write=True)
            try:
                yield from self._cursor(block)
            finally:
                self._local.block = None

    def listen(self, channel: str) -> PostgresListener:
        return PostgresListener(self._url, channel, self._connect_timeout_s)

    def close(self) -> None:
        self._pool.close()

    def _outermost(self, write: bool) -> Generator[DbCursor, None, None]:
        with self._pool.connection() as connection:
            self._run(connection, "BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            block = self._local.block = _Block(connection, write=write)
            try:
                yield from self._cursor(block)
                block.check_committable()
                self._run(connection, "COMMIT")
            except BaseException:
                # On a broken connection the ROLLBACK fails too; the pool discards that connection, and the
                # original exception is the one worth raising.
                with contextlib.suppress(DatabaseError):
                    self._run(connection, "ROLLBACK")
                raise
            finally:
                self._local.block = None

    def _cursor(self, block: _Block) -> Generator[DbCursor, None, None]:
        try:
            cursor = block.connection.cursor()
        except psycopg.Error as error:
            _raise_translated(error)
        try:
            yield _PostgresCursor(cursor, block)
        finally:
            cursor.close()

    @staticmethod
    def _run(connection: psycopg.Connection[DictRow], sql: str) -> None:
        try:
            connection.execute(sql)
        except psycopg.Error as error:
            _raise_translated(error)


class PostgresListener:
    """A connection outside the pool that LISTENs on one channel."""

    def __init__(self, url: str, channel: str, connect_timeout_s: float) -> None:
        try:
            self._connection = psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(connect_timeout_s)))
            self._connection.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        except psycopg.Error as error:
            _raise_translated(error)

    def wait(self, timeout_s: float) -> None:
        try:
            for _ in self._connection.notifies(timeout=timeout_s, stop_after=1):
                pass
        except psycopg.Error as error:
            _raise_translated(error)

    def close(self) -> None:
        self._connection.close()
