"""Images over HTTP, with InvokeAI's paths and operation ids: upload, list, files, embedded data, changes, deletion,
and what InvokeAI 6.x's gallery adds: ordered names, DTOs by name, URLs, the images on no board, bulk downloads.

Every route taking an image name checks it against the one shape this server gives names (`validate_image_name`)
before anything builds a path from it, so no request can reach a file outside the outputs folder.
"""

from __future__ import annotations

import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, File, HTTPException, Path, Query, Response, UploadFile
from fastapi.responses import FileResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from nodeloom.app.api.dependencies import Services
from nodeloom.app.services.bulk_download.bulk_download_common import validate_archive_name
from nodeloom.app.services.image_files.image_files_common import (
    EmbeddedText,
    ImageFileNotFoundError,
    embedded_texts,
)
from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    ImageCategory,
    ImageListQuery,
    ImageNamesQuery,
    ImageNamesResult,
    ImageRecordChanges,
    ImageRecordNotFoundError,
    ResourceOrigin,
)
from nodeloom.app.services.images.images_common import ImageDTO, ImageUrlsDTO, MetadataField
from nodeloom.app.services.names.names_common import validate_image_name
from nodeloom.app.services.shared.pagination import OffsetPaginatedResults

images_router = APIRouter(prefix="/v1/images", tags=["images"])

# A name is never given to other pixels, so a client may keep what it fetched for as long as it likes.
IMAGE_CACHE_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable"}

# Only these decoders see uploaded bytes: Pillow's other formats (EPS through Ghostscript among them) stay out of
# reach of anything a client sends.
UPLOAD_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def valid_image_name(image_name: str = Path(description="The name of the image")) -> str:
    return validate_image_name(image_name)


def valid_image_names(
    image_names: list[str] = Body(embed=True, description="The names of the images"),
) -> list[str]:
    return [validate_image_name(image_name) for image_name in image_names]


ImageName = Annotated[str, Depends(valid_image_name)]
ImageNames = Annotated[list[str], Depends(valid_image_names)]


class DeleteImagesFromListResult(BaseModel):
    deleted_images: list[str] = Field(description="The names of the images that were deleted")


class ImagesUpdatedFromListResult(BaseModel):
    updated_image_names: list[str] = Field(description="The names of the images that were updated")


class WorkflowAndGraphResponse(BaseModel):
    workflow: str | None = Field(description="The workflow the image was made with, as JSON text")
    graph: str | None = Field(description="The graph of the session that made the image, as JSON text")


class ClearIntermediatesResult(BaseModel):
    deleted_images: int = Field(description="How many intermediate images were deleted")
    deleted_tensors: int = Field(description="How many stored tensors were deleted")
    deleted_conditioning: int = Field(description="How many stored conditioning objects were deleted")


def _decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=list(UPLOAD_FORMATS.values()))
    except UnidentifiedImageError:
        raise HTTPException(status_code=415, detail="The upload is not a PNG, JPEG or WEBP image") from None
    except Image.DecompressionBombError as error:
        raise HTTPException(status_code=413, detail=f"The image has too many pixels: {error}") from None
    except Exception as error:
        raise _undecodable(error) from None
    # Opening read the header alone: the size is checked before a single pixel is decoded, for a file of a few
    # KB may say 13,000 x 13,000 and decode into a gigabyte.
    width, height = image.size
    if width * height > max_pixels:
        raise HTTPException(
            status_code=413,
            detail=f"The image has too many pixels: {width} x {height} is {width * height:,}, over the limit of "
            f"{max_pixels:,} (max_image_pixels)",
        )
    try:
        image.load()
    except Exception as error:
        raise _undecodable(error) from None
    return image


def _undecodable(error: Exception) -> HTTPException:
    # Pillow's decoders report damaged data as OSError, SyntaxError, ValueError, EOFError or struct.error,
    # depending on the format and where the damage is: each means that this is no image it can read.
    return HTTPException(status_code=415, detail=f"The image could not be decoded: {error}")


def _embedded_metadata(text: str | None) -> MetadataField | None:
    """The metadata a nodeloom or InvokeAI server embedded, if `text` is that; anything else is dropped, not refused."""
    try:
        metadata = None if text is None else json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # deeply nested JSON exhausts the parser's stack
        return None
    return metadata if isinstance(metadata, dict) else None


def upload_image(
    services: Services,
    response: Response,
    file: UploadFile = File(description="A PNG, JPEG or WEBP image"),
    image_category: ImageCategory = Query(default=ImageCategory.USER, description="What the image is for"),
    is_intermediate: bool = Query(default=False, description="Whether the image is an intermediate result"),
    board_id: str | None = Query(default=None, description="The board to put the image on, if any"),
) -> ImageDTO:
    """Stores an uploaded image as a PNG, keeping the graph, workflow and metadata a nodeloom or InvokeAI server
    embedded."""
    content_type = (file.content_type or "").partition(";")[0].strip().lower()
    if content_type not in UPLOAD_FORMATS:
        raise HTTPException(
            status_code=415, detail=f"Uploads must be image/png, image/jpeg or image/webp, not {content_type!r}"
        )
    image = _decode_upload(file.file.read(), services.config.max_image_pixels)
    texts = embedded_texts(image.info)
    image_dto = services.images.create(
        image=image,
        image_origin=ResourceOrigin.EXTERNAL,
        image_category=image_category,
        board_id=board_id,
        is_intermediate=is_intermediate,
        metadata=_embedded_metadata(texts.get(EmbeddedText.metadata)),
        workflow=texts.get(EmbeddedText.workflow),
        graph=texts.get(EmbeddedText.graph),
    )
    response.headers["Location"] = image_dto.image_url
    return image_dto


images_router.add_api_route(
    "/upload",
    upload_image,
    methods=["POST"],
    operation_id="upload_image",
    status_code=201,
    responses={413: {"description": "The upload is too large"}, 415: {"description": "The upload is no image"}},
)


@images_router.get("/", operation_id="list_image_dtos")
def list_image_dtos(services: Services, query: Annotated[ImageListQuery, Query()]) -> OffsetPaginatedResults[ImageDTO]:
    """A page of images, starred first, newest first."""
    return services.images.get_many(query)


@images_router.get("/i/{image_name}", operation_id="get_image_dto")
def get_image_dto(services: Services, image_name: ImageName) -> ImageDTO:
    """The image's record, URLs and board."""
    return services.images.get_dto(image_name)


@images_router.patch("/i/{image_name}", operation_id="update_image")
def update_image(
    services: Services,
    image_name: ImageName,
    image_changes: ImageRecordChanges = Body(description="The changes to apply to the image"),
) -> ImageDTO:
    """Stars or unstars the image, changes its category or its intermediate flag."""
    return services.images.update(image_name, image_changes)


@images_router.delete("/i/{image_name}", operation_id="delete_image")
def delete_image(services: Services, image_name: ImageName) -> DeleteImagesFromListResult:
    """Deletes the image: its record, its board link, its file and its thumbnail."""
    services.images.delete(image_name)
    return DeleteImagesFromListResult(deleted_images=[image_name])


def _image_file(services: Services, image_name: str, thumbnail: bool) -> FileResponse:
    path = services.images.get_path(image_name, thumbnail)
    if not path.is_file():
        raise ImageFileNotFoundError(image_name)
    return FileResponse(
        path,
        media_type="image/webp" if thumbnail else "image/png",
        headers=IMAGE_CACHE_HEADERS,
        filename=path.name,
        content_disposition_type="inline",
    )


@images_router.get(
    "/i/{image_name}/full",
    operation_id="get_image_full",
    response_class=FileResponse,
    responses={200: {"description": "The full image", "content": {"image/png": {}}}},
)
@images_router.head(
    "/i/{image_name}/full",
    operation_id="get_image_full_head",
    response_class=FileResponse,
    responses={200: {"description": "The full image's headers", "content": {"image/png": {}}}},
)
def get_image_full(services: Services, image_name: ImageName) -> FileResponse:
    """The image file: a PNG with its graph, workflow and metadata embedded."""
    return _image_file(services, image_name, thumbnail=False)


@images_router.get(
    "/i/{image_name}/thumbnail",
    operation_id="get_image_thumbnail",
    response_class=FileResponse,
    responses={200: {"description": "The thumbnail", "content": {"image/webp": {}}}},
)
def get_image_thumbnail(services: Services, image_name: ImageName) -> FileResponse:
    """The image's thumbnail, a WEBP."""
    return _image_file(services, image_name, thumbnail=True)


@images_router.get("/i/{image_name}/metadata", operation_id="get_image_metadata")
def get_image_metadata(services: Services, image_name: ImageName) -> MetadataField | None:
    """The metadata embedded in the image, if any."""
    return services.images.get_metadata(image_name)


@images_router.get("/i/{image_name}/workflow", operation_id="get_image_workflow")
def get_image_workflow(services: Services, image_name: ImageName) -> WorkflowAndGraphResponse:
    """The workflow and the graph embedded in the image, each as JSON text, if any."""
    return WorkflowAndGraphResponse(
        workflow=services.images.get_workflow(image_name), graph=services.images.get_graph(image_name)
    )


@images_router.post("/delete", operation_id="delete_images_from_list")
def delete_images_from_list(services: Services, image_names: ImageNames) -> DeleteImagesFromListResult:
    """Deletes each image as `delete_image` does; unknown names are skipped."""
    return DeleteImagesFromListResult(deleted_images=services.images.delete_many(image_names))


def _set_starred(services: Services, image_names: list[str], starred: bool) -> ImagesUpdatedFromListResult:
    updated: list[str] = []
    for image_name in image_names:
        try:
            services.images.update(image_name, ImageRecordChanges(starred=starred))
        except ImageRecordNotFoundError:
            continue
        updated.append(image_name)
    return ImagesUpdatedFromListResult(updated_image_names=updated)


@images_router.post("/star", operation_id="star_images_in_list")
def star_images_in_list(services: Services, image_names: ImageNames) -> ImagesUpdatedFromListResult:
    """Stars each image; unknown names are skipped."""
    return _set_starred(services, image_names, starred=True)


@images_router.post("/unstar", operation_id="unstar_images_in_list")
def unstar_images_in_list(services: Services, image_names: ImageNames) -> ImagesUpdatedFromListResult:
    """Unstars each image; unknown names are skipped."""
    return _set_starred(services, image_names, starred=False)


def _refuse_while_running(services: Services) -> None:
    # The running session may still load an intermediate it stored. (One dequeued right after this check is not
    # protected: delete intermediates when the queue is idle or paused.)
    if services.session_processor.get_status().current_item_id is not None:
        raise HTTPException(
            status_code=409, detail="A session is running and may still need its intermediates: try again when idle"
        )


@images_router.get("/intermediates", operation_id="get_intermediates_count")
def get_intermediates_count(services: Services) -> int:
    """The number of intermediate images."""
    return services.images.get_intermediates_count()


@images_router.delete(
    "/intermediates",
    operation_id="clear_intermediates",
    responses={409: {"description": "A session is running"}},
)
def clear_intermediates(services: Services) -> ClearIntermediatesResult:
    """Deletes every intermediate image and every stored tensor and conditioning object, and clears the invocation
    cache, whose outputs may name what was deleted."""
    _refuse_while_running(services)
    result = ClearIntermediatesResult(
        deleted_images=services.images.delete_intermediates(),
        deleted_tensors=services.tensors.delete_all(),
        deleted_conditioning=services.conditioning.delete_all(),
    )
    services.invocation_cache.clear()
    return result


# InvokeAI 6.x's gallery: it lists a board's image names, then fetches the DTOs of those in view.


class DeleteImagesResult(DeleteImagesFromListResult):
    affected_boards: list[str] = Field(description="The boards the deleted images were on ('none': on no board)")


class ImagesDownloaded(BaseModel):
    response: str | None = Field(default=None, description="A message to show while the archive is made")
    bulk_download_item_name: str | None = Field(
        default=None, description="The name of the archive, carried by its bulk_download_* events and fetched by"
    )


def valid_archive_name(
    bulk_download_item_name: str = Path(description="The name of the bulk download archive"),
) -> str:
    return validate_archive_name(bulk_download_item_name)


ArchiveName = Annotated[str, Depends(valid_archive_name)]


@images_router.get("/names", operation_id="get_image_names")
def get_image_names(
    services: Services,
    image_origin: ResourceOrigin | None = Query(default=None, description="Only images of this origin"),
    categories: list[ImageCategory] | None = Query(default=None, description="Only images of these categories"),
    is_intermediate: bool | None = Query(default=None, description="Only intermediate images, or only others"),
    board_id: str | None = Query(default=None, description="Only images on this board; 'none' for those on none"),
    order_dir: Literal["ASC", "DESC"] = Query(default="DESC", description="Oldest first (ASC) or newest first (DESC)"),
    starred_first: bool = Query(default=True, description="Whether starred images come before the others"),
    search_term: str | None = Query(
        default=None, description="Only images whose name or creation time (ISO 8601) holds this text"
    ),
) -> ImageNamesResult:
    """The names of every image that matches, in the gallery's order, with how many are starred."""
    return services.images.get_image_names(
        ImageNamesQuery(
            image_origin=image_origin,
            categories=categories,
            is_intermediate=is_intermediate,
            board_id=board_id,
            order_dir=order_dir,
            starred_first=starred_first,
            search_term=search_term,
        )
    )


@images_router.post("/images_by_names", operation_id="get_images_by_names")
def get_images_by_names(services: Services, image_names: ImageNames) -> list[ImageDTO]:
    """The DTOs of the images, in the order of their names; unknown names are skipped."""
    dtos: list[ImageDTO] = []
    for image_name in image_names:
        try:
            dtos.append(services.images.get_dto(image_name))
        except ImageRecordNotFoundError:
            continue
    return dtos


@images_router.get("/i/{image_name}/urls", operation_id="get_image_urls")
def get_image_urls(services: Services, image_name: ImageName) -> ImageUrlsDTO:
    """Where to fetch the image and its thumbnail."""
    dto = services.images.get_dto(image_name)
    return ImageUrlsDTO(image_name=image_name, image_url=dto.image_url, thumbnail_url=dto.thumbnail_url)


@images_router.delete(
    "/uncategorized",
    operation_id="delete_uncategorized_images",
    responses={409: {"description": "A session is running"}},
)
def delete_uncategorized_images(services: Services) -> DeleteImagesResult:
    """Deletes every image on no board, intermediates included, as `delete_image` does."""
    # Intermediates are on no board: the running session may still need its own.
    _refuse_while_running(services)
    on_no_board = services.images.get_image_names(ImageNamesQuery(board_id=BOARD_ID_NONE)).image_names
    deleted = services.images.delete_many(on_no_board)
    return DeleteImagesResult(deleted_images=deleted, affected_boards=[BOARD_ID_NONE] if deleted else [])


@images_router.post("/download", operation_id="download_images_from_list", status_code=202)
def download_images_from_list(
    services: Services,
    image_names: list[str] | None = Body(default=None, embed=True, description="The names of the images to zip"),
    board_id: str | None = Body(
        default=None, embed=True, description="The board whose images to zip instead; 'none' for those on none"
    ),
) -> ImagesDownloaded:
    """Starts making a zip of the images in the background; the bulk_download_* events say when it can be fetched."""
    for image_name in image_names or []:
        validate_image_name(image_name)
    return ImagesDownloaded(bulk_download_item_name=services.bulk_download.download(image_names, board_id))


@images_router.get(
    "/download/{bulk_download_item_name}",
    operation_id="get_bulk_download_item",
    response_class=FileResponse,
    responses={200: {"description": "The archive", "content": {"application/zip": {}}}},
)
def get_bulk_download_item(services: Services, bulk_download_item_name: ArchiveName) -> FileResponse:
    """The zip a bulk download made; removed once sent, so it can be fetched once."""
    return FileResponse(
        services.bulk_download.get_path(bulk_download_item_name),
        media_type="application/zip",
        filename=bulk_download_item_name,
        content_disposition_type="inline",
        background=BackgroundTask(services.bulk_download.delete, bulk_download_item_name),
    )
