from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import pytest
from PIL import Image, ImageChops
from PIL.PngImagePlugin import PngInfo
from tests.app.services.image_writer import ImageWriter

from nodeloom.app.services.image_files import image_files_disk
from nodeloom.app.services.image_files.image_files_common import (
    EmbeddedText,
    ImageFileNotFoundError,
    ImageFileSaveError,
)
from nodeloom.app.services.image_files.image_files_disk import DiskImageFileStorage
from nodeloom.app.services.names.names_common import InvalidImageNameError
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.shared.atomic_files import write_atomically

NAMES = SimpleNameService()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "images"


@pytest.fixture
def files(folder: Path) -> DiskImageFileStorage:
    return DiskImageFileStorage(folder)


def save(files: DiskImageFileStorage, image: Image.Image, name: str, **texts: str) -> None:
    """Writes the image and its thumbnail, and is done with them at once (no record follows)."""
    with files.saving(image, name, **texts):
        pass


def gradient(mode: str = "RGB", size: tuple[int, int] = (8, 8)) -> Image.Image:
    image = Image.new("RGBA", size)
    image.putdata(
        [(x * 30 % 256, y * 30 % 256, (x + y) * 15 % 256, 255 - x * 10) for y in range(size[1]) for x in range(size[0])]
    )
    return image.convert(mode)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and ImageChops.difference(a, b).getbbox() is None


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "1", "P"])
def test_pixels_round_trip(files: DiskImageFileStorage, folder: Path, mode: str) -> None:
    image = gradient(mode)
    name = NAMES.create_image_name()
    save(files, image, name)
    loaded = files.get(name)
    assert same_pixels(loaded, image)
    with Image.open(folder / name) as on_disk:
        assert on_disk.format == "PNG"


def test_embedded_texts_round_trip(files: DiskImageFileStorage) -> None:
    name = NAMES.create_image_name()
    metadata = json.dumps({"seed": 42, "prompt": "a café at dusk, 夕暮れ"})
    workflow = json.dumps({"name": "wf", "nodes": [], "notes": "ünïcödé"})
    graph = json.dumps({"id": "g", "nodes": {"n": {"type": "blank_image"}}, "edges": []})
    save(files, gradient(), name, metadata=metadata, workflow=workflow, graph=graph)
    assert files.get_text(name, EmbeddedText.metadata) == metadata
    assert files.get_text(name, EmbeddedText.workflow) == workflow
    assert files.get_text(name, EmbeddedText.graph) == graph
    with Image.open(files.get_path(name)) as image:
        assert set(image.info) >= {"invokeai_metadata", "invokeai_workflow", "invokeai_graph"}


def test_texts_under_the_former_nodeloom_keys_are_still_read(files: DiskImageFileStorage) -> None:
    name = NAMES.create_image_name()
    info = PngInfo()
    info.add_text("nodeloom_metadata", '{"seed": 1}')
    info.add_text("nodeloom_graph", '{"nodes": {}}')
    gradient().save(files.get_path(name), format="PNG", pnginfo=info)
    assert files.get_text(name, EmbeddedText.metadata) == '{"seed": 1}'
    assert files.get_text(name, EmbeddedText.graph) == '{"nodes": {}}'
    assert files.get_text(name, EmbeddedText.workflow) is None


def test_absent_texts_are_none(files: DiskImageFileStorage) -> None:
    name = NAMES.create_image_name()
    save(files, gradient(), name, metadata="{}")
    assert files.get_text(name, EmbeddedText.metadata) == "{}"
    assert files.get_text(name, EmbeddedText.workflow) is None
    assert files.get_text(name, EmbeddedText.graph) is None


@pytest.mark.parametrize(
    ("size", "expected"),
    [((600, 300), (256, 128)), ((300, 600), (128, 256)), ((512, 512), (256, 256)), ((4, 4), (4, 4))],
)
def test_thumbnail_is_webp_within_256_px(
    files: DiskImageFileStorage, folder: Path, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    name = NAMES.create_image_name()
    save(files, gradient(size=size), name)
    thumbnail_path = files.get_path(name, thumbnail=True)
    assert thumbnail_path == folder / "thumbnails" / f"{name.removesuffix('.png')}.webp"
    with Image.open(thumbnail_path) as thumbnail:
        assert thumbnail.format == "WEBP"
        assert thumbnail.size == expected
        assert max(thumbnail.size) <= 256


@pytest.mark.parametrize(
    ("mode", "stored_mode"),
    [("CMYK", "RGB"), ("YCbCr", "RGB"), ("HSV", "RGB"), ("LAB", "RGB"), ("I", "I;16"), ("F", "I;16"), ("PA", "RGBA")],
)
def test_modes_a_png_cannot_hold_are_stored_in_the_nearest_one(
    files: DiskImageFileStorage, mode: str, stored_mode: str
) -> None:
    image = gradient().convert("RGBA" if mode == "PA" else "RGB").convert(mode)
    name = NAMES.create_image_name()
    save(files, image, name)
    loaded = files.get(name)
    assert loaded.mode == stored_mode
    assert loaded.size == image.size
    with Image.open(files.get_path(name, thumbnail=True)) as thumbnail:
        assert thumbnail.mode in ("RGB", "RGBA")


def test_stored_16_bit_grey_keeps_its_values(files: DiskImageFileStorage) -> None:
    image = Image.new("I", (2, 1))
    image.putdata([300, 65535])
    name = NAMES.create_image_name()
    save(files, image, name)
    loaded = files.get(name)
    assert [loaded.getpixel((0, 0)), loaded.getpixel((1, 0))] == [300, 65535]


def test_a_failing_png_write_leaves_no_file(
    files: DiskImageFileStorage, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = gradient()

    def save_half(file: BinaryIO, **kwargs: object) -> None:
        file.write(b"\x89PNG\r\n\x1a\n half an image")
        raise OSError("disk full")

    monkeypatch.setattr(image, "save", save_half)
    name = NAMES.create_image_name()
    with pytest.raises(ImageFileSaveError, match="disk full"):
        save(files, image, name)
    assert [path for path in folder.rglob("*") if path.is_file()] == []


def test_a_failing_thumbnail_write_removes_the_image_too(
    files: DiskImageFileStorage, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(image: Image.Image, size: int = 256) -> Image.Image:
        raise OSError("no space left for the thumbnail")

    monkeypatch.setattr(image_files_disk, "make_thumbnail", fail)
    with pytest.raises(ImageFileSaveError, match="no space left"):
        save(files, gradient(), NAMES.create_image_name())
    assert [path for path in folder.rglob("*") if path.is_file()] == []


def test_atomic_write_keeps_the_old_file_when_the_new_one_fails(tmp_path: Path) -> None:
    path = tmp_path / "object.bin"
    write_atomically(path, lambda file: file.write(b"old"))

    def fail_halfway(file: BinaryIO) -> None:
        file.write(b"new but")
        raise RuntimeError("crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        write_atomically(path, fail_halfway)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["object.bin"]


def test_get_of_a_missing_image_is_not_found(files: DiskImageFileStorage) -> None:
    name = NAMES.create_image_name()
    with pytest.raises(ImageFileNotFoundError):
        files.get(name)
    with pytest.raises(ImageFileNotFoundError):
        files.get_text(name, EmbeddedText.metadata)


def test_delete_removes_the_image_and_its_thumbnail(files: DiskImageFileStorage, folder: Path) -> None:
    name = NAMES.create_image_name()
    save(files, gradient(), name)
    assert files.delete(name) is True
    assert [path for path in folder.rglob("*") if path.is_file()] == []
    assert files.delete(name) is False


def test_list_names_holds_only_stored_images(files: DiskImageFileStorage, folder: Path) -> None:
    names = {NAMES.create_image_name() for _ in range(3)}
    for name in names:
        save(files, gradient(), name)
    (folder / "notes.txt").write_text("not an image")
    (folder / f".{next(iter(names))}.abc.tmp").write_bytes(b"a write that died")
    (folder / "subfolder.png").mkdir()
    assert files.list_names() == names


def test_list_thumbnail_names_holds_every_stored_thumbnail(files: DiskImageFileStorage, folder: Path) -> None:
    names = {NAMES.create_image_name() for _ in range(2)}
    for name in names:
        save(files, gradient(), name)
    alone = next(iter(names))
    files.get_path(alone).unlink()
    (folder / "thumbnails" / "notes.webp").write_text("not a thumbnail")
    (folder / "thumbnails" / alone.removesuffix(".png")).write_text("no suffix")
    assert files.list_thumbnail_names() == names
    assert files.list_names() == names - {alone}


# A child process that dies inside a write, as a process killed with SIGKILL would: no cleanup code runs.
_DIE_WHILE_WRITING = """
import os, sys
from pathlib import Path
from nodeloom.app.services.shared.atomic_files import write_atomically

def die(file):
    file.write(b"half an image")
    file.flush()
    os._exit(0)

write_atomically(Path(sys.argv[1]), die)
"""


def test_temporary_files_of_writes_that_died_are_removed(files: DiskImageFileStorage, folder: Path) -> None:
    name = NAMES.create_image_name()
    save(files, gradient(), name)
    for path in (folder / NAMES.create_image_name(), folder / "thumbnails" / "x.webp"):
        subprocess.run([sys.executable, "-c", _DIE_WHILE_WRITING, str(path)], check=True)
    leftovers = [path.name for path in folder.rglob("*.tmp")]
    assert len(leftovers) == 2
    (folder / ".hidden").write_text("not ours to remove")

    assert files.remove_temporary_files() == 2
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()) == sorted(
        [".hidden", name, f"thumbnails/{name.removesuffix('.png')}.webp"]
    )
    assert files.remove_temporary_files() == 0


def test_quarantine_moves_the_image_and_its_thumbnail_aside(files: DiskImageFileStorage, folder: Path) -> None:
    whole, thumbnail_only, kept = (NAMES.create_image_name() for _ in range(3))
    for name in (whole, thumbnail_only, kept):
        save(files, gradient(), name)
    files.get_path(thumbnail_only).unlink()

    files.quarantine(whole)
    files.quarantine(thumbnail_only)
    files.quarantine(NAMES.create_image_name())  # nothing stored: nothing to move

    assert files.list_names() == {kept}
    assert files.list_thumbnail_names() == {kept}
    stem = whole.removesuffix(".png")
    assert sorted(os.listdir(folder / "quarantine")) == sorted(
        [whole, f"{stem}.webp", f"{thumbnail_only.removesuffix('.png')}.webp"]
    )
    with Image.open(folder / "quarantine" / whole) as moved:
        assert same_pixels(moved.convert("RGB"), gradient())


BAD_NAMES = [
    "../outside.png",
    "../../outside.png",
    "/tmp/outside.png",
    "thumbnails/../../outside.png",
    "outside.png\x00.png",
    "..",
    "0b5b2c2e-3f4a-4b6c-8d7e-9f0a1b2c3d4e.png/../../outside.png",
    "0B5B2C2E-3F4A-4B6C-8D7E-9F0A1B2C3D4E.png",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_never_reach_the_disk(files: DiskImageFileStorage, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside.png"
    gradient().save(outside)
    before = outside.read_bytes()
    everything_before = sorted(tmp_path.rglob("*"))
    for attempt in (
        lambda: save(files, gradient(), name),
        lambda: files.get(name),
        lambda: files.get_text(name, EmbeddedText.metadata),
        lambda: files.get_path(name),
        lambda: files.get_path(name, thumbnail=True),
        lambda: files.delete(name),
    ):
        with pytest.raises(InvalidImageNameError):
            attempt()
    assert outside.read_bytes() == before
    assert sorted(tmp_path.rglob("*")) == everything_before


def test_a_link_leading_out_of_the_folder_is_refused(files: DiskImageFileStorage, folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    gradient().save(secret)
    name = NAMES.create_image_name()
    (folder / name).symlink_to(secret)
    with pytest.raises(InvalidImageNameError):
        files.get(name)
    with pytest.raises(InvalidImageNameError):
        files.delete(name)
    assert secret.exists()


def test_a_write_under_way_in_another_process_keeps_its_temporary_file(
    files: DiskImageFileStorage, folder: Path
) -> None:
    name = NAMES.create_image_name()
    writer = ImageWriter(folder, name, "file")

    assert files.remove_temporary_files() == 0

    assert writer.go_on() == "done"
    assert files.get_path(name).read_bytes() == b"half an image"
    assert not list(folder.glob("*.tmp"))


def test_an_image_is_abandoned_once_its_writer_is_done_or_dead(files: DiskImageFileStorage, folder: Path) -> None:
    done, dead, thumbnail_only = (NAMES.create_image_name() for _ in range(3))
    writer = ImageWriter(folder, done, "record")
    with files.abandoned(done) as left:
        assert not left
    assert writer.go_on() == "done"
    ImageWriter(folder, dead, "record").kill()
    save(files, gradient(), thumbnail_only)
    files.get_path(thumbnail_only).unlink()

    for name in (done, dead, thumbnail_only):
        with files.abandoned(name) as left:
            assert left, name
    with files.abandoned(NAMES.create_image_name()) as left:
        assert not left  # nothing stored
