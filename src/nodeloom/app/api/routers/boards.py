"""Boards over HTTP, with InvokeAI's paths and operation ids."""

from __future__ import annotations

from fastapi import APIRouter, Body, Path, Query

from nodeloom.app.api.dependencies import Services
from nodeloom.app.invocations.limits import INT64_MAX
from nodeloom.app.services.board_records.board_records_common import BoardChanges
from nodeloom.app.services.boards.boards_common import BoardDTO, DeleteBoardResult
from nodeloom.app.services.shared.pagination import MAX_PAGE_SIZE, OffsetPaginatedResults

boards_router = APIRouter(prefix="/v1/boards", tags=["boards"])

BoardId = Path(description="The id of the board")


@boards_router.post("/", operation_id="create_board", status_code=201)
def create_board(
    services: Services, board_name: str = Query(description="The name of the board to create")
) -> BoardDTO:
    """Creates an empty board."""
    return services.boards.create(board_name)


@boards_router.get("/", operation_id="list_boards")
def list_boards(
    services: Services,
    every_board: bool = Query(default=False, alias="all", description="Every board as a list, not a page"),
    offset: int = Query(default=0, ge=0, le=INT64_MAX, description="How many boards to skip"),
    limit: int = Query(default=10, ge=1, le=MAX_PAGE_SIZE, description="The most boards to return"),
    include_archived: bool = Query(default=False, description="Whether to include archived boards"),
) -> OffsetPaginatedResults[BoardDTO] | list[BoardDTO]:
    """A page of boards (or with `all`, every board), newest first, each with its image count and cover."""
    if every_board:
        return services.boards.get_all(include_archived)
    return services.boards.get_many(offset, limit, include_archived)


@boards_router.get("/{board_id}", operation_id="get_board")
def get_board(services: Services, board_id: str = BoardId) -> BoardDTO:
    """The board with its image count and cover."""
    return services.boards.get_dto(board_id)


@boards_router.patch("/{board_id}", operation_id="update_board")
def update_board(
    services: Services,
    board_id: str = BoardId,
    changes: BoardChanges = Body(description="The changes to apply to the board"),
) -> BoardDTO:
    """Renames, archives or unarchives the board."""
    return services.boards.update(board_id, changes)


@boards_router.delete("/{board_id}", operation_id="delete_board")
def delete_board(
    services: Services,
    board_id: str = BoardId,
    include_images: bool = Query(default=False, description="Also delete the board's images, files included"),
) -> DeleteBoardResult:
    """Deletes the board; its images stay, on no board, unless `include_images` is set."""
    return services.boards.delete(board_id, delete_images=include_images)


@boards_router.get("/{board_id}/image_names", operation_id="list_all_board_image_names")
def list_all_board_image_names(services: Services, board_id: str = BoardId) -> list[str]:
    """The names of every image on the board, starred first, newest first."""
    return services.boards.get_all_image_names_for_board(board_id)
