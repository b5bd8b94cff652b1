from __future__ import annotations

import pytest
from pydantic import ValidationError
from tests.app.services.image_stack import ImageStack

from nodeloom.app.services.board_records.board_records_common import (
    BoardChanges,
    BoardRecordNotFoundError,
    InvalidBoardNameError,
)
from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    ImageListQuery,
    ImageRecordChanges,
    ImageRecordNotFoundError,
)
from nodeloom.app.services.names.names_common import InvalidImageNameError
from nodeloom.app.services.names.names_default import SimpleNameService


def test_create_get_rename_archive(stack: ImageStack) -> None:
    board = stack.boards.create("Portraits")
    assert (board.board_name, board.archived, board.image_count, board.cover_image_name) == (
        "Portraits",
        False,
        0,
        None,
    )
    assert stack.boards.get_dto(board.board_id) == board
    renamed = stack.boards.update(board.board_id, BoardChanges(board_name="Faces"))
    assert renamed.board_name == "Faces"
    assert renamed.updated_at > board.updated_at
    archived = stack.boards.update(board.board_id, BoardChanges(archived=True))
    assert (archived.board_name, archived.archived) == ("Faces", True)
    assert stack.boards.update(board.board_id, BoardChanges(archived=False)).archived is False


@pytest.mark.parametrize("name", ["", "   ", "x" * 301])
def test_bad_board_names_are_refused(stack: ImageStack, name: str) -> None:
    with pytest.raises(InvalidBoardNameError):
        stack.boards.create(name)
    board = stack.boards.create("Fine")
    with pytest.raises(ValidationError):
        BoardChanges(board_name=name)
    assert stack.boards.get_dto(board.board_id).board_name == "Fine"


def test_unknown_boards_are_not_found(stack: ImageStack) -> None:
    with pytest.raises(BoardRecordNotFoundError, match="nope"):
        stack.boards.get_dto("nope")
    with pytest.raises(BoardRecordNotFoundError):
        stack.boards.update("nope", BoardChanges(board_name="x"))
    with pytest.raises(BoardRecordNotFoundError):
        stack.boards.delete("nope")
    with pytest.raises(BoardRecordNotFoundError):
        stack.boards.get_all_image_names_for_board("nope")


def test_listing_newest_first_with_archived_on_request(stack: ImageStack) -> None:
    first, second, third = (stack.boards.create(name) for name in ("first", "second", "third"))
    stack.boards.update(second.board_id, BoardChanges(archived=True))

    assert [b.board_name for b in stack.boards.get_all()] == ["third", "first"]
    assert [b.board_name for b in stack.boards.get_all(include_archived=True)] == ["third", "second", "first"]
    page = stack.boards.get_many(offset=1, limit=1, include_archived=True)
    assert (page.total, [b.board_name for b in page.items]) == (3, ["second"])
    assert stack.boards.get_many().total == 2
    assert first.board_id in {b.board_id for b in stack.boards.get_many().items}
    assert third.board_id != first.board_id


def test_counts_and_cover_are_the_boards_gallery_images(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    empty = stack.boards.create("Empty").board_id
    oldest = stack.create(board_id=board)
    newest = stack.create(board_id=board)
    stack.create(board_id=board, is_intermediate=True)
    stack.create()
    # Starring an older image does not make it the cover: the cover is the newest.
    stack.images.update(oldest.image_name, ImageRecordChanges(starred=True))

    listed = {b.board_id: b for b in stack.boards.get_all()}
    assert (listed[board].image_count, listed[board].cover_image_name) == (2, newest.image_name)
    assert (listed[empty].image_count, listed[empty].cover_image_name) == (0, None)
    assert stack.boards.get_dto(board) == listed[board]


def test_an_image_is_on_one_board_at_most(stack: ImageStack) -> None:
    first = stack.boards.create("First").board_id
    second = stack.boards.create("Second").board_id
    image = stack.create(board_id=first)
    assert image.board_id == first

    stack.boards.add_image_to_board(second, image.image_name)
    assert stack.boards.get_all_image_names_for_board(first) == []
    assert stack.boards.get_all_image_names_for_board(second) == [image.image_name]
    assert stack.images.get_dto(image.image_name).board_id == second
    assert {b.board_id: b.image_count for b in stack.boards.get_all()} == {first: 0, second: 1}

    stack.boards.remove_image_from_board(image.image_name)
    assert stack.images.get_dto(image.image_name).board_id is None
    assert [i.image_name for i in stack.images.get_many(ImageListQuery(board_id=BOARD_ID_NONE)).items] == [
        image.image_name
    ]
    stack.boards.remove_image_from_board(image.image_name)


def test_adding_needs_a_known_board_and_image(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    image = stack.create()
    with pytest.raises(BoardRecordNotFoundError):
        stack.boards.add_image_to_board("nope", image.image_name)
    with pytest.raises(ImageRecordNotFoundError):
        stack.boards.add_image_to_board(board, SimpleNameService().create_image_name())
    with pytest.raises(InvalidImageNameError):
        stack.boards.add_image_to_board(board, "../etc/passwd")
    assert stack.boards.get_all_image_names_for_board(board) == []


def test_image_names_of_a_board_in_gallery_order(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    names = [stack.create(board_id=board).image_name for _ in range(3)]
    stack.images.update(names[0], ImageRecordChanges(starred=True))
    assert stack.boards.get_all_image_names_for_board(board) == [names[0], names[2], names[1]]


def test_deleting_a_board_keeps_its_images_unless_asked(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    images = [stack.create(board_id=board) for _ in range(2)]
    files_before = stack.files_on_disk()

    result = stack.boards.delete(board)
    assert set(result.deleted_board_images) == {i.image_name for i in images}
    assert result.deleted_images == []
    assert stack.boards.get_all(include_archived=True) == []
    assert stack.files_on_disk() == files_before
    for image in images:
        assert stack.images.get_dto(image.image_name).board_id is None
    assert stack.images.get_many(ImageListQuery(board_id=BOARD_ID_NONE)).total == 2


def test_deleting_a_board_with_its_images_leaves_nothing_behind(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    doomed = [stack.create(board_id=board) for _ in range(2)]
    kept = stack.create()

    result = stack.boards.delete(board, delete_images=True)
    assert set(result.deleted_images) == {i.image_name for i in doomed}
    assert stack.image_records.get_all_names() == {kept.image_name}
    assert stack.files_on_disk() == {
        f"images/{kept.image_name}",
        f"images/thumbnails/{kept.image_name.removesuffix('.png')}.webp",
    }
    assert stack.images.check_consistency().is_consistent
