"""Image files on the local disk: PNGs with their embedded texts, and WEBP thumbnails beside them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nodeloom.app.services.image_files.image_files_base import ImageFileStorageBase
from nodeloom.app.services.image_files.image_files_common import (
    EmbeddedText,
    ImageFileNotFoundError,
    ImageFileSaveError,
    embedded_texts,
)
from nodeloom.app.services.names.names_common import (
    IMAGE_EXTENSION,
    InvalidImageNameError,
    is_image_name,
    validate_image_name,
)
from nodeloom.app.services.shared.atomic_files import (
    abandoned,
    remove_temporary_files,
    write_atomically,
    written_atomically,
)

THUMBNAIL_SIZE = 256
"""The longest side of a thumbnail, in pixels."""

_THUMBNAIL_SUFFIX = ".webp"

# The modes a PNG holds as they are. Pillow deprecates writing 32-bit "I" to PNG, and refuses "F", "CMYK" and
# the other colour spaces, so those are stored in the nearest mode a PNG can hold (see `_png_storable`).
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})


def _png_storable(image: Image.Image) -> Image.Image:
    if image.mode in _PNG_MODES:
        return image
    if image.mode in ("I", "F"):
        return image.convert("I;16")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """A copy of `image` in RGB or RGBA (what WEBP holds), no side longer than `size`, the aspect kept."""
    if image.mode in ("I", "I;16", "F"):
        # Pillow converts high bit-depth grey to RGB only through 8-bit grey.
        image = image.convert("L")
    thumbnail = image.convert("RGBA" if image.has_transparency_data else "RGB")
    # A gap of 1 box-reduces by the whole factor first (512 -> 256 is one reduce, no resampling): several
    # times faster than the default gap, for a picture shown at 256 px at most.
    thumbnail.thumbnail((size, size), reducing_gap=1.0)
    return thumbnail


def encode_png(image: Image.Image, file: BinaryIO, texts: Mapping[EmbeddedText, str], compress_level: int) -> None:
    """Writes `image` to `file` as a PNG with each text embedded under its key."""
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key.value, text)
    _png_storable(image).save(file, format="PNG", pnginfo=info, compress_level=compress_level)


def encode_thumbnail(image: Image.Image, file: BinaryIO, size: int = THUMBNAIL_SIZE) -> None:
    """Writes the thumbnail of `image` to `file` as WEBP."""
    # Method 0 is WEBP's fastest encoder effort (about 4x faster than the default, 4) at the same quality
    # setting; the file comes out a little larger, which a gallery never notices.
    make_thumbnail(image, size).save(file, format="WEBP", method=0)


class DiskImageFileStorage(ImageFileStorageBase):
    """Images as `{folder}/{name}` and thumbnails as `{folder}/thumbnails/{stem}.webp`; quarantined files, both
    kinds, in `{folder}/quarantine/`, which nothing reads.

    Every path comes from a validated name and is checked to resolve inside `folder`, so no name can make this
    class read or write anywhere else. `png_compress_level` trades file size for speed (0-9; InvokeAI's
    default is 1, fast, as a generated image is written once and read rarely).
    """

    def __init__(self, folder: Path, png_compress_level: int = 1, thumbnail_size: int = THUMBNAIL_SIZE) -> None:
        self._folder = folder.resolve()
        self._thumbnails = self._folder / "thumbnails"
        self._thumbnails.mkdir(parents=True, exist_ok=True)
        self._quarantine = self._folder / "quarantine"
        self._png_compress_level = png_compress_level
        self._thumbnail_size = thumbnail_size

    @contextlib.contextmanager
    def saving(
        self,
        image: Image.Image,
        image_name: str,
        metadata: str | None = None,
        workflow: str | None = None,
        graph: str | None = None,
    ) -> Iterator[None]:
        image_path = self.get_path(image_name)
        thumbnail_path = self.get_path(image_name, thumbnail=True)
        texts = {
            key: text
            for key, text in (
                (EmbeddedText.metadata, metadata),
                (EmbeddedText.workflow, workflow),
                (EmbeddedText.graph, graph),
            )
            if text is not None
        }
        with contextlib.ExitStack() as held:
            try:
                # The thumbnail is written while the image is held: a thumbnail without its image is never a live
                # write's.
                held.enter_context(
                    written_atomically(
                        image_path, lambda file: encode_png(image, file, texts, self._png_compress_level)
                    )
                )
                write_atomically(thumbnail_path, lambda file: encode_thumbnail(image, file, self._thumbnail_size))
            except Exception as error:
                # An image without its thumbnail would be half-saved; the caller writes no record for either.
                for path in (image_path, thumbnail_path):
                    path.unlink(missing_ok=True)
                raise ImageFileSaveError(f"Could not save image '{image_name}': {error}") from error
            yield

    def get(self, image_name: str) -> Image.Image:
        path = self.get_path(image_name)
        try:
            with Image.open(path) as image:
                # Loaded while the file is open, so the file can be closed and the pixels still read.
                image.load()
        except FileNotFoundError:
            raise ImageFileNotFoundError(image_name) from None
        return image

    def get_text(self, image_name: str, key: EmbeddedText) -> str | None:
        path = self.get_path(image_name)
        try:
            # Opening reads the chunks before the pixel data, where Pillow writes text: no pixel is decoded.
            with Image.open(path) as image:
                texts = embedded_texts(image.info)
        except FileNotFoundError:
            raise ImageFileNotFoundError(image_name) from None
        return texts.get(key)

    def get_path(self, image_name: str, thumbnail: bool = False) -> Path:
        validate_image_name(image_name)
        stem = Path(image_name).stem
        path = self._thumbnails / f"{stem}{_THUMBNAIL_SUFFIX}" if thumbnail else self._folder / image_name
        # A symbolic link placed in the folder must not lead a valid name out of it.
        if not path.resolve().is_relative_to(self._folder):
            raise InvalidImageNameError(image_name)
        return path

    def delete(self, image_name: str) -> bool:
        existed = False
        for path in (self.get_path(image_name), self.get_path(image_name, thumbnail=True)):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            existed = True
        return existed

    def list_names(self) -> set[str]:
        with os.scandir(self._folder) as entries:
            return {entry.name for entry in entries if is_image_name(entry.name) and entry.is_file()}

    def list_thumbnail_names(self) -> set[str]:
        with os.scandir(self._thumbnails) as entries:
            names = {
                f"{entry.name.removesuffix(_THUMBNAIL_SUFFIX)}{IMAGE_EXTENSION}"
                for entry in entries
                if entry.name.endswith(_THUMBNAIL_SUFFIX) and entry.is_file()
            }
        return {name for name in names if is_image_name(name)}

    @contextlib.contextmanager
    def abandoned(self, image_name: str) -> Iterator[bool]:
        image_path = self.get_path(image_name)
        with abandoned(image_path) as left:
            yield left or (not image_path.exists() and self.get_path(image_name, thumbnail=True).exists())

    def remove_temporary_files(self) -> int:
        return remove_temporary_files(self._folder) + remove_temporary_files(self._thumbnails)

    def quarantine(self, image_name: str) -> None:
        self._quarantine.mkdir(exist_ok=True)
        for path in (self.get_path(image_name), self.get_path(image_name, thumbnail=True)):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, self._quarantine / path.name)
