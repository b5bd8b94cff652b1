"""The ordered names of a gallery (`get_image_names`): order, counts, filters, search, and the index they walk."""

from __future__ import annotations

import pytest
from tests.app.services.image_stack import ImageStack
from tests.database_engines import sqlite_only

from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    ImageCategory,
    ImageNamesQuery,
    ImageRecordChanges,
    ResourceOrigin,
)
from nodeloom.app.services.image_records.image_records_sql import NAMES_ORDERS, SELECT_NAMES, names_source
from nodeloom.app.services.names.names_default import SimpleNameService

NAMES = SimpleNameService()


def save(stack: ImageStack, starred: bool = False, is_intermediate: bool = False, board_id: str | None = None) -> str:
    name = NAMES.create_image_name()
    stack.image_records.save(
        name, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, 8, 8, False, is_intermediate, starred
    )
    if board_id is not None:
        stack.board_image_records.add_image_to_board(board_id, name)
    return name


def names(stack: ImageStack, **query: object) -> list[str]:
    return stack.image_records.get_image_names(ImageNamesQuery.model_validate(query)).image_names


def test_starred_first_then_newest_first_with_the_counts(stack: ImageStack) -> None:
    made = [save(stack, starred=i in (1, 3)) for i in range(5)]

    result = stack.image_records.get_image_names(ImageNamesQuery())

    assert result.image_names == [made[3], made[1], made[4], made[2], made[0]]
    assert (result.starred_count, result.total_count) == (2, 5)


def test_each_order(stack: ImageStack) -> None:
    made = [save(stack, starred=i in (1, 3)) for i in range(5)]

    assert names(stack, order_dir="ASC") == [made[1], made[3], made[0], made[2], made[4]]
    assert names(stack, starred_first=False) == made[::-1]
    assert names(stack, starred_first=False, order_dir="ASC") == made
    # As in InvokeAI, the starred are counted only when they come first.
    assert stack.image_records.get_image_names(ImageNamesQuery(starred_first=False)).starred_count == 0


def test_filters_by_board_none_and_intermediate(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    on_board = [save(stack, board_id=board) for _ in range(2)]
    loose = save(stack)
    intermediate = save(stack, is_intermediate=True)

    assert names(stack, board_id=board) == on_board[::-1]
    assert names(stack, board_id=BOARD_ID_NONE) == [intermediate, loose]
    assert names(stack, board_id=BOARD_ID_NONE, is_intermediate=False) == [loose]
    assert names(stack, categories=[ImageCategory.MASK]) == []
    assert names(stack, categories=[]) == []


def test_the_search_term_matches_the_name_or_the_creation_time(stack: ImageStack) -> None:
    made = [save(stack) for _ in range(3)]
    stack.image_records.update(made[0], ImageRecordChanges(starred=True))
    created = stack.image_records.get(made[1]).created_at

    assert names(stack, search_term=made[2][9:18]) == [made[2]]
    assert names(stack, search_term=made[2][9:18].upper()) == [made[2]]
    assert names(stack, search_term=created) == [made[1]]
    assert names(stack, search_term=created[:10]) == [made[0], made[2], made[1]]
    assert names(stack, search_term="nothing like it") == []


@pytest.mark.parametrize("term", ["%", "_", "\\"])
def test_like_wildcards_in_the_search_term_are_taken_literally(stack: ImageStack, term: str) -> None:
    save(stack)
    assert names(stack, search_term=term) == []


@pytest.mark.parametrize("search_term", [None, "2026"])
@sqlite_only
@pytest.mark.parametrize("board_id", ["a-board", BOARD_ID_NONE])
def test_the_gallery_order_walks_the_board_index_without_sorting(
    stack: ImageStack, board_id: str, search_term: str | None
) -> None:
    """InvokeAI's gallery asks for a board (or none), not intermediates, starred and newest first: the names come
    out of `ix_images_board_order` in order, no row read and nothing sorted, so 10,000 images cost one index walk."""
    board = stack.board_records.save("Board").board_id
    for i in range(30):
        save(stack, starred=i % 5 == 0, board_id=board if i % 2 else None)
    query = ImageNamesQuery(
        board_id=board if board_id == "a-board" else board_id, is_intermediate=False, search_term=search_term
    )
    source, params = names_source(query)

    with stack.db.read() as cursor:
        cursor.execute(
            f"EXPLAIN QUERY PLAN {SELECT_NAMES.format(source=source, order=NAMES_ORDERS[True, 'DESC'])}", params
        )
        plan = [str(row["detail"]) for row in cursor.fetchall()]

    assert plan == ["SEARCH images USING COVERING INDEX ix_images_board_order (board_id=? AND is_intermediate=?)"]


@sqlite_only
def test_other_orders_sort_only_the_names_read_from_the_index(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    for i in range(30):
        save(stack, starred=i % 5 == 0, board_id=board)
    source, params = names_source(ImageNamesQuery(board_id=board, is_intermediate=False))

    for order in (NAMES_ORDERS[True, "ASC"], NAMES_ORDERS[False, "DESC"], NAMES_ORDERS[False, "ASC"]):
        with stack.db.read() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {SELECT_NAMES.format(source=source, order=order)}", params)
            plan = [str(row["detail"]) for row in cursor.fetchall()]
        assert plan[0] == "SEARCH images USING COVERING INDEX ix_images_board_order (board_id=? AND is_intermediate=?)"
        assert len(plan) == 2 and "TEMP B-TREE" in plan[1], plan
