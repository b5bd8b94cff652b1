from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from tests.database_engines import OpenDatabase

from nodeloom.app.services.board_image_records.board_image_records_sql import SqlBoardImageRecordStorage
from nodeloom.app.services.board_records.board_records_sql import SqlBoardRecordStorage
from nodeloom.app.services.image_records.image_records_sql import SqlImageRecordStorage
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, Dialect, Listener
from nodeloom.app.services.shared.database.database_common import (
    DatabaseError,
    Migration,
    MigrationError,
    SchemaTooNewError,
)
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS, migration_4
from nodeloom.app.services.shared.database.migrator import Migrator


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "nodeloom.db"


@pytest.fixture
def db(path: Path) -> Iterator[SqliteDatabase]:
    db = SqliteDatabase(path)
    yield db
    db.close()


def statements(version: int, description: str, *sql: str, runs: Counter[int] | None = None) -> Migration:
    def up(cursor: DbCursor) -> None:
        if runs is not None:
            runs[version] += 1
        for statement in sql:
            cursor.execute(statement)

    return Migration(version=version, description=description, up=up)


def first(runs: Counter[int] | None = None) -> Migration:
    return statements(
        1, "create boards", "CREATE TABLE boards (board_id TEXT PRIMARY KEY, name TEXT NOT NULL)", runs=runs
    )


def second(runs: Counter[int] | None = None) -> Migration:
    return statements(2, "add board colours", "ALTER TABLE boards ADD COLUMN colour TEXT", runs=runs)


def recorded(db: DatabaseBase) -> list[tuple[int, str]]:
    with db.read() as cursor:
        cursor.execute("SELECT version, description, applied_at FROM migrations ORDER BY version")
        rows = cursor.fetchall()
    assert all(row["applied_at"] for row in rows)
    return [(row["version"], row["description"]) for row in rows]


def tables(db: SqliteDatabase) -> set[str]:
    with db.read() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row["name"] for row in cursor.fetchall()}


def columns(db: SqliteDatabase, table: str) -> list[str]:
    with db.read() as cursor:
        cursor.execute("SELECT name FROM pragma_table_info(?)", (table,))
        return [row["name"] for row in cursor.fetchall()]


def test_migrations_apply_to_an_empty_file_in_order(db: SqliteDatabase) -> None:
    Migrator(db, [second(), first()]).run()

    assert recorded(db) == [(1, "create boards"), (2, "add board colours")]
    assert columns(db, "boards") == ["board_id", "name", "colour"]


def test_running_again_applies_nothing(db: SqliteDatabase) -> None:
    runs: Counter[int] = Counter()
    Migrator(db, [first(runs), second(runs)]).run()
    Migrator(db, [first(runs), second(runs)]).run()

    assert runs == {1: 1, 2: 1}
    assert recorded(db) == [(1, "create boards"), (2, "add board colours")]


def test_only_pending_migrations_run(db: SqliteDatabase) -> None:
    runs: Counter[int] = Counter()
    Migrator(db, [first(runs)]).run()
    Migrator(db, [first(runs), second(runs)]).run()

    assert runs == {1: 1, 2: 1}
    assert recorded(db) == [(1, "create boards"), (2, "add board colours")]


def raise_after_a_statement(cursor: DbCursor) -> None:
    cursor.execute("CREATE TABLE images (image_name TEXT PRIMARY KEY)")
    raise ValueError("bad migration code")


def bad_sql_after_a_statement(cursor: DbCursor) -> None:
    cursor.execute("CREATE TABLE images (image_name TEXT PRIMARY KEY)")
    cursor.execute("INSERT INTO nowhere VALUES (1)")


@pytest.mark.parametrize(
    ("up", "cause"),
    [(raise_after_a_statement, ValueError), (bad_sql_after_a_statement, DatabaseError)],
    ids=["python-error", "sql-error"],
)
def test_a_failed_migration_leaves_the_database_as_it_was_before_it(
    db: SqliteDatabase, up: Callable[[DbCursor], None], cause: type[Exception]
) -> None:
    failing = Migration(version=2, description="create images", up=up)

    with pytest.raises(MigrationError, match=r"Migration 2 \(create images\) failed") as raised:
        Migrator(db, [first(), failing]).run()

    assert isinstance(raised.value.__cause__, cause)
    assert recorded(db) == [(1, "create boards")]
    assert tables(db) == {"migrations", "boards"}


def test_a_newer_schema_is_refused(db: SqliteDatabase) -> None:
    Migrator(db, [first(), second()]).run()

    with pytest.raises(SchemaTooNewError, match=r"version 2.*up to 1: upgrade nodeloom") as raised:
        Migrator(db, [first()]).run()

    assert (raised.value.database_version, raised.value.known_version) == (2, 1)
    assert recorded(db) == [(1, "create boards"), (2, "add board colours")]


@pytest.mark.parametrize("versions", [[1, 3], [2], [1, 1], [0, 1]], ids=str)
def test_a_list_that_is_not_numbered_from_one_without_gaps_is_refused(db: SqliteDatabase, versions: list[int]) -> None:
    migrations = [statements(version, f"migration {version}") for version in versions]

    with pytest.raises(MigrationError, match=r"numbered 1, 2, 3"):
        Migrator(db, migrations)

    assert tables(db) == set()


def test_processes_starting_together_apply_each_migration_once(open_db: OpenDatabase) -> None:
    runs: Counter[int] = Counter()
    migrations = [first(runs), second(runs)]
    databases = [open_db() for _ in range(4)]
    barrier = threading.Barrier(len(databases))

    def start(db: DatabaseBase) -> None:
        barrier.wait()
        Migrator(db, migrations).run()

    try:
        with ThreadPoolExecutor(max_workers=len(databases)) as pool:
            for future in [pool.submit(start, db) for db in databases]:
                future.result(timeout=60)
        assert runs == {1: 1, 2: 1}
        assert recorded(databases[0]) == [(1, "create boards"), (2, "add board colours")]
    finally:
        for db in databases:
            db.close()


class AnotherProcessMigratesFirst(DatabaseBase):
    """Lets another process migrate between this one reading the schema version and its first migration."""

    def __init__(self, db: SqliteDatabase, other: Migrator) -> None:
        self._db = db
        self._other = other
        self._transactions = 0

    @property
    def dialect(self) -> Dialect:
        return self._db.dialect

    def transaction(self) -> AbstractContextManager[DbCursor]:
        self._transactions += 1
        if self._transactions == 2:
            self._other.run()
        return self._db.transaction()

    def read(self) -> AbstractContextManager[DbCursor]:
        return self._db.read()

    def listen(self, channel: str) -> Listener | None:
        return self._db.listen(channel)

    def close(self) -> None:
        self._db.close()


def test_a_migration_applied_by_another_process_meanwhile_is_skipped(path: Path) -> None:
    runs: Counter[int] = Counter()
    migrations = [first(runs), second(runs)]
    db, other = SqliteDatabase(path), SqliteDatabase(path)
    try:
        Migrator(AnotherProcessMigratesFirst(db, Migrator(other, migrations)), migrations).run()

        assert runs == {1: 1, 2: 1}
        assert recorded(db) == [(1, "create boards"), (2, "add board colours")]
    finally:
        db.close()
        other.close()


def test_the_application_migrations_apply_to_an_empty_file(db: SqliteDatabase) -> None:
    Migrator(db, MIGRATIONS).run()
    Migrator(db, MIGRATIONS).run()

    assert [version for version, _ in recorded(db)] == list(range(1, len(MIGRATIONS) + 1))


def test_the_image_boards_migration_carries_each_images_board_over(db: SqliteDatabase) -> None:
    """A database made before the boards moved onto the image rows keeps every image on its board."""
    version = next(migration.version for migration in MIGRATIONS if migration.up is migration_4.up)
    Migrator(db, [migration for migration in MIGRATIONS if migration.version < version]).run()
    now = "2024-01-01T00:00:00.000000+00:00"
    boards = {"board-a": ["a1.png", "a2.png"], "board-b": ["b1.png"]}
    loose = ["loose.png"]
    with db.transaction() as cursor:
        for board_id in boards:
            cursor.execute(
                "INSERT INTO boards (board_id, board_name, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (board_id, board_id, now, now),
            )
        for image_name in [*loose, *(name for names in boards.values() for name in names)]:
            cursor.execute(
                "INSERT INTO images (image_name, image_origin, image_category, width, height, created_at, updated_at) "
                "VALUES (?, 'internal', 'general', 8, 8, ?, ?)",
                (image_name, now, now),
            )
        for board_id, names in boards.items():
            for image_name in names:
                cursor.execute(
                    "INSERT INTO board_images (image_name, board_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (image_name, board_id, now, now),
                )

    Migrator(db, MIGRATIONS).run()

    assert [number for number, _ in recorded(db)] == list(range(1, len(MIGRATIONS) + 1))
    assert "board_images" not in tables(db)
    links = SqlBoardImageRecordStorage(db)
    assert {name: links.get_board_for_image(name) for name in ["loose.png", "a1.png", "a2.png", "b1.png"]} == {
        "loose.png": None,
        "a1.png": "board-a",
        "a2.png": "board-a",
        "b1.png": "board-b",
    }
    assert sorted(links.get_all_board_image_names_for_board("board-a")) == ["a1.png", "a2.png"]
    # The column's foreign key works on a migrated database: deleting a board leaves its images on no board.
    SqlBoardRecordStorage(db).delete("board-b")
    assert links.get_board_for_image("b1.png") is None
    assert SqlImageRecordStorage(db).get("b1.png").image_name == "b1.png"
