"""Which board an image is on, over HTTP, with InvokeAI's paths and operation ids. An image is on one board at most:
adding it to a board moves it off the one it was on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import Services
from nodeloom.app.api.routers.images import ImageNames
from nodeloom.app.services.image_records.image_records_common import ImageRecordNotFoundError
from nodeloom.app.services.names.names_common import validate_image_name

board_images_router = APIRouter(prefix="/v1/board_images", tags=["boards"])

BoardIdBody = Body(description="The id of the board")


class AddImagesToBoardResult(BaseModel):
    board_id: str = Field(description="The id of the board the images were added to")
    added_image_names: list[str] = Field(description="The names of the images that were added to the board")


class RemoveImagesFromBoardResult(BaseModel):
    removed_image_names: list[str] = Field(description="The names of the images that were taken off their board")


def valid_image_name_body(image_name: str = Body(embed=True, description="The name of the image")) -> str:
    return validate_image_name(image_name)


ImageName = Annotated[str, Depends(valid_image_name_body)]


def _remove_from_board(services: Services, image_name: str) -> bool:
    """Takes the image off its board; False if it was on none. Raises `ImageRecordNotFoundError` for an unknown one."""
    if services.images.get_dto(image_name).board_id is None:
        return False
    services.boards.remove_image_from_board(image_name)
    return True


@board_images_router.post("/", operation_id="add_image_to_board", status_code=201)
def add_image_to_board(
    services: Services, image_name: ImageName, board_id: str = BoardIdBody
) -> AddImagesToBoardResult:
    """Puts the image on the board."""
    services.boards.add_image_to_board(board_id, image_name)
    return AddImagesToBoardResult(board_id=board_id, added_image_names=[image_name])


@board_images_router.delete("/", operation_id="remove_image_from_board")
def remove_image_from_board(services: Services, image_name: ImageName) -> RemoveImagesFromBoardResult:
    """Takes the image off its board, if it is on one."""
    removed = _remove_from_board(services, image_name)
    return RemoveImagesFromBoardResult(removed_image_names=[image_name] if removed else [])


@board_images_router.post("/batch", operation_id="add_images_to_board", status_code=201)
def add_images_to_board(
    services: Services, image_names: ImageNames, board_id: str = BoardIdBody
) -> AddImagesToBoardResult:
    """Puts each image on the board; unknown names are skipped."""
    # Looked up first, so that an unknown board is a 404 rather than a list of skipped images.
    services.boards.get_dto(board_id)
    added: list[str] = []
    for image_name in image_names:
        try:
            services.boards.add_image_to_board(board_id, image_name)
        except ImageRecordNotFoundError:
            continue
        added.append(image_name)
    return AddImagesToBoardResult(board_id=board_id, added_image_names=added)


@board_images_router.post("/batch/delete", operation_id="remove_images_from_board")
def remove_images_from_board(services: Services, image_names: ImageNames) -> RemoveImagesFromBoardResult:
    """Takes each image off its board; unknown names and images on no board are skipped."""
    removed: list[str] = []
    for image_name in image_names:
        try:
            if _remove_from_board(services, image_name):
                removed.append(image_name)
        except ImageRecordNotFoundError:
            continue
    return RemoveImagesFromBoardResult(removed_image_names=removed)
