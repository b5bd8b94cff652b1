from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.app.services.image_stack import ImageStack
from tests.database_engines import sqlite_only

from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    IMAGE_ORDER,
    ImageCategory,
    ImageListQuery,
    ImageRecordChanges,
    ImageRecordNotFoundError,
    ResourceOrigin,
)
from nodeloom.app.services.image_records.image_records_sql import LIST_COUNT, LIST_PAGE, listing_source
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.shared.database.database_common import DatabaseIntegrityError

NAMES = SimpleNameService()


def save(
    stack: ImageStack,
    category: ImageCategory = ImageCategory.GENERAL,
    is_intermediate: bool = False,
    starred: bool = False,
    origin: ResourceOrigin = ResourceOrigin.INTERNAL,
) -> str:
    name = NAMES.create_image_name()
    stack.image_records.save(
        name, origin, category, 8, 4, has_workflow=False, is_intermediate=is_intermediate, starred=starred
    )
    return name


def test_save_and_get(stack: ImageStack) -> None:
    name = NAMES.create_image_name()
    saved = stack.image_records.save(
        name,
        ResourceOrigin.EXTERNAL,
        ImageCategory.CONTROL,
        640,
        480,
        has_workflow=True,
        is_intermediate=True,
        session_id="session-1",
        node_id="node-1",
    )
    assert stack.image_records.get(name) == saved
    assert saved.model_dump(exclude={"created_at", "updated_at"}) == {
        "image_name": name,
        "image_origin": ResourceOrigin.EXTERNAL,
        "image_category": ImageCategory.CONTROL,
        "width": 640,
        "height": 480,
        "session_id": "session-1",
        "node_id": "node-1",
        "is_intermediate": True,
        "starred": False,
        "has_workflow": True,
        "deleted_at": None,
    }
    assert saved.created_at == saved.updated_at
    assert saved.created_at.endswith("+00:00")


def test_a_name_is_saved_once(stack: ImageStack) -> None:
    name = save(stack)
    with pytest.raises(DatabaseIntegrityError):
        stack.image_records.save(name, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, 1, 1, has_workflow=False)


def test_unknown_names_are_not_found(stack: ImageStack) -> None:
    name = NAMES.create_image_name()
    with pytest.raises(ImageRecordNotFoundError, match=name):
        stack.image_records.get(name)
    with pytest.raises(ImageRecordNotFoundError):
        stack.image_records.update(name, ImageRecordChanges(starred=True))
    assert stack.image_records.delete(name) is False


def test_update_changes_only_what_it_is_given(stack: ImageStack) -> None:
    name = save(stack)
    before = stack.image_records.get(name)
    starred = stack.image_records.update(name, ImageRecordChanges(starred=True))
    assert starred.starred is True
    assert starred.image_category is ImageCategory.GENERAL
    assert starred.updated_at > before.updated_at
    changed = stack.image_records.update(
        name, ImageRecordChanges(image_category=ImageCategory.MASK, is_intermediate=True)
    )
    assert (changed.starred, changed.image_category, changed.is_intermediate) == (True, ImageCategory.MASK, True)
    assert stack.image_records.update(name, ImageRecordChanges()) == changed


def test_changes_accept_only_star_category_and_intermediate() -> None:
    with pytest.raises(ValidationError):
        ImageRecordChanges.model_validate({"session_id": "other"})
    with pytest.raises(ValidationError):
        ImageRecordChanges.model_validate({"starred": "yes"})
    with pytest.raises(ValidationError):
        ImageRecordChanges.model_validate({"image_category": "poster"})


def test_delete_and_delete_many(stack: ImageStack) -> None:
    names = [save(stack) for _ in range(4)]
    assert stack.image_records.delete(names[0]) is True
    unknown = NAMES.create_image_name()
    assert stack.image_records.delete_many([names[1], unknown, names[2]]) == [names[1], names[2]]
    assert stack.image_records.get_all_names() == {names[3]}


def test_intermediates(stack: ImageStack) -> None:
    intermediates = {save(stack, is_intermediate=True) for _ in range(3)}
    save(stack)
    assert set(stack.image_records.get_intermediates()) == intermediates


def test_listing_orders_starred_first_then_newest_first(stack: ImageStack) -> None:
    names = [save(stack) for _ in range(5)]
    stack.image_records.update(names[1], ImageRecordChanges(starred=True))
    stack.image_records.update(names[3], ImageRecordChanges(starred=True))
    listed = [record.image_name for record in stack.image_records.get_many(ImageListQuery(limit=10)).items]
    assert listed == [names[3], names[1], names[4], names[2], names[0]]


def test_listing_pages(stack: ImageStack) -> None:
    names = [save(stack) for _ in range(7)][::-1]
    pages = [stack.image_records.get_many(ImageListQuery(offset=offset, limit=3)) for offset in (0, 3, 6)]
    assert [page.total for page in pages] == [7, 7, 7]
    assert [record.image_name for page in pages for record in page.items] == names
    assert (pages[2].offset, pages[2].limit) == (6, 3)


def test_listing_filters(stack: ImageStack) -> None:
    general = save(stack)
    mask = save(stack, category=ImageCategory.MASK)
    control = save(stack, category=ImageCategory.CONTROL, is_intermediate=True)
    upload = save(stack, category=ImageCategory.USER, origin=ResourceOrigin.EXTERNAL)

    def listed(**filters: object) -> set[str]:
        page = stack.image_records.get_many(ImageListQuery.model_validate({"limit": 100, **filters}))
        assert page.total == len(page.items)
        return {record.image_name for record in page.items}

    assert listed() == {general, mask, control, upload}
    assert listed(categories=[ImageCategory.MASK, ImageCategory.CONTROL]) == {mask, control}
    assert listed(categories=[]) == set()
    assert listed(is_intermediate=True) == {control}
    assert listed(is_intermediate=False) == {general, mask, upload}
    assert listed(image_origin=ResourceOrigin.EXTERNAL) == {upload}
    assert listed(categories=[ImageCategory.GENERAL, ImageCategory.USER], is_intermediate=False) == {general, upload}


def test_listing_by_board(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    other = stack.board_records.save("Other").board_id
    on_board = [save(stack) for _ in range(3)]
    on_other = save(stack)
    loose = save(stack, category=ImageCategory.MASK)
    for name in on_board:
        stack.board_image_records.add_image_to_board(board, name)
    stack.board_image_records.add_image_to_board(other, on_other)

    page = stack.image_records.get_many(ImageListQuery(limit=2, board_id=board))
    assert page.total == 3
    assert [record.image_name for record in page.items] == on_board[::-1][:2]
    assert {
        record.image_name for record in stack.image_records.get_many(ImageListQuery(board_id=BOARD_ID_NONE)).items
    } == {loose}
    assert stack.image_records.get_many(ImageListQuery(board_id=board, categories=[ImageCategory.MASK])).total == 0


BOARD_LISTINGS = {
    "board": (None, False, "a-board"),
    "no board": (None, False, BOARD_ID_NONE),
    "board by category": ([ImageCategory.GENERAL, ImageCategory.USER], False, "a-board"),
}


@sqlite_only
@pytest.mark.parametrize("name", BOARD_LISTINGS)
def test_board_listing_walks_its_index_in_gallery_order(stack: ImageStack, name: str) -> None:
    """A board's page walks `ix_images_board_order` in order and stops: the board is never sorted, only the page's
    rows are read (by key) and put back in order, and the count reads the same index."""
    board = stack.board_records.save("Board").board_id
    for i in range(20):
        stack.board_image_records.add_image_to_board(board, save(stack, starred=i % 5 == 0))
        save(stack)
    categories, is_intermediate, board_id = BOARD_LISTINGS[name]
    query = ImageListQuery(categories=categories, is_intermediate=is_intermediate, board_id=board_id)
    source, params = listing_source(query)

    def plan(statement: str, params: list[object]) -> list[tuple[int, int, str]]:
        with stack.db.read() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            return [(int(row["id"]), int(row["parent"]), str(row["detail"])) for row in cursor.fetchall()]

    page = plan(LIST_PAGE.format(source=source, order=IMAGE_ORDER), [*params, 10, 30])
    subqueries = {step for step, _, detail in page if detail.startswith("LIST SUBQUERY")}
    walk = [detail for _, parent, detail in page if parent in subqueries]
    outer = [detail for _, parent, detail in page if parent == 0]
    index = "INDEX ix_images_board_order (board_id=? AND is_intermediate=?)"
    assert len(walk) == 1 and walk[0].startswith("SEARCH images USING") and walk[0].endswith(index), page
    assert outer[0] == "SEARCH images USING PRIMARY KEY (image_name=?)", page
    # The one sort is the outer query's, of the page's rows only.
    assert [detail for detail in outer if "TEMP B-TREE" in detail] == ["USE TEMP B-TREE FOR ORDER BY"], page
    count = [detail for _, _, detail in plan(LIST_COUNT.format(source=source), params)]
    assert len(count) == 1 and count[0].startswith("SEARCH images USING") and count[0].endswith(index), count


def test_board_pages_follow_the_gallery_order(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    names = []
    for i in range(10):
        names.append(save(stack, starred=i % 4 == 0))
        stack.board_image_records.add_image_to_board(board, names[-1])
        save(stack, starred=True)
    expected = [name for i, name in reversed(list(enumerate(names))) if i % 4 == 0]
    expected += [name for i, name in reversed(list(enumerate(names))) if i % 4 != 0]

    pages = [
        stack.image_records.get_many(ImageListQuery(offset=offset, limit=3, is_intermediate=False, board_id=board))
        for offset in range(0, 12, 3)
    ]

    assert [record.image_name for page in pages for record in page.items] == expected
    assert {page.total for page in pages} == {10}


def test_listing_on_no_board_and_by_category(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    on_board = save(stack)
    loose = save(stack)
    loose_mask = save(stack, category=ImageCategory.MASK)
    starred_loose = save(stack, starred=True)
    save(stack, is_intermediate=True)
    stack.board_image_records.add_image_to_board(board, on_board)

    def names(board_id: str, categories: list[ImageCategory] | None = None) -> list[str]:
        page = stack.image_records.get_many(
            ImageListQuery(board_id=board_id, is_intermediate=False, categories=categories)
        )
        return [record.image_name for record in page.items]

    assert names(BOARD_ID_NONE) == [starred_loose, loose_mask, loose]
    assert names(BOARD_ID_NONE, [ImageCategory.MASK]) == [loose_mask]
    assert names(board, [ImageCategory.MASK]) == []
    assert names(board, [ImageCategory.GENERAL]) == [on_board]
    stack.board_image_records.remove_image_from_board(on_board)
    assert stack.image_records.get_many(ImageListQuery(board_id=BOARD_ID_NONE, is_intermediate=False)).total == 4
    assert stack.image_records.get_many(ImageListQuery(board_id=board)).total == 0


def test_deleting_a_record_removes_its_board_link(stack: ImageStack) -> None:
    board = stack.board_records.save("Board").board_id
    name = save(stack)
    stack.board_image_records.add_image_to_board(board, name)
    stack.image_records.delete(name)
    assert stack.board_image_records.get_board_for_image(name) is None
    assert stack.board_image_records.get_all_board_image_names_for_board(board) == []
